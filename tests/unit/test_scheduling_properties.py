"""No deadlock, no starvation: random arrivals, phase durations, faults, holds and releases
against the arbiter, checking after every arbitration that

- no resource has more owners than its capacity, and a running phase holds exactly what it
  needs while a waiting one holds nothing (all-or-nothing);
- the wait-for graph between batches has no cycle;
- a waiting request whose resources are free is granted unless a higher-ranked urgent request
  reserves one of them (work-conserving);
- every request is granted within the ageing bound
  ``t_age + d_max + n_batches * (d_max + t_line_clearance + t_purge)`` when no fault was
  active while it waited (faults only delay by their own duration), and every request is
  eventually granted once faults clear (drain).

It reports what it reached (phases granted, line clearances, concurrent running phases, max
wait vs the bound).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aseptic_cell.scheduling.arbiter import Arbiter, Request, RequestState
from aseptic_cell.scheduling.resources import OPEN_ZONE, ResourceSet, load_scheduling

CONFIG = Path(__file__).resolve().parents[2] / "config"
BATCHES = ("A", "B", "C", "D", "E", "F")
CLOSED = ("CFG", "WLD", "CC", "SEP", "RTP")
D_MAX = 40 * 60.0

_cfg = load_scheduling(CONFIG)
_rs = ResourceSet(_cfg.resources)


@dataclass
class Reached:
    examples: int = 0
    granted: int = 0
    line_clearances: int = 0
    max_running: int = 0
    max_waiting: int = 0
    faults: int = 0
    window_events: int = 0
    max_wait_s: float = 0.0
    bounded_checked: int = 0


req = st.tuples(st.just("req"), st.sampled_from(BATCHES), st.sets(st.sampled_from(CLOSED), max_size=2),
                st.sampled_from([False, False, False, True]), st.sampled_from([False, False, True]),
                st.sampled_from([None, None, 600.0, 7200.0]),
                st.sampled_from([None, 3600.0, 86400.0]), st.floats(60.0, D_MAX))
op = st.one_of(
    req, req, req, req,
    st.tuples(st.just("adv"), st.floats(1.0, 1800.0)),
    st.tuples(st.just("adv"), st.floats(1.0, 1800.0)),
    st.tuples(st.just("fault"), st.sampled_from((*CLOSED, "ARM", "WS", OPEN_ZONE)), st.floats(60.0, 3600.0)),
)


def _acyclic(g: dict[str, set[str]]) -> bool:
    seen: dict[str, int] = {}

    def visit(n: str) -> bool:
        if seen.get(n) == 1:
            return False
        if seen.get(n) == 2:
            return True
        seen[n] = 1
        ok = all(visit(m) for m in g.get(n, ()))
        seen[n] = 2
        return ok

    return all(visit(n) for n in list(g))


class Driver:
    def __init__(self, reached: Reached) -> None:
        self.arb = Arbiter(_rs, _cfg)
        self.now = 0.0
        self.dur: dict[int, float] = {}
        self.faults: dict[str, float] = {}
        self.fault_seen: set[int] = set()
        self.reached = reached
        a = self.arb
        self.bound = a.t_age + D_MAX + len(BATCHES) * (D_MAX + a.t_lc + a.t_purge)

    def outstanding(self, batch: str) -> bool:
        return any(r.batch == batch and r.state in (RequestState.WAITING, RequestState.RUNNING)
                   and r.phase != "line_clearance" for r in self.arb.requests.values())

    def step(self) -> None:
        a = self.arb
        d = a.arbitrate(self.now)
        self.reached.window_events += sum(1 for e in d.events if e.kind.value.startswith("window"))
        for g in d.grants:
            r = g.request
            self.dur.setdefault(r.id, a.t_lc)
            self.reached.granted += 1
            self.reached.line_clearances += r.phase == "line_clearance"
            wait = self.now - r.requested_at
            self.reached.max_wait_s = max(self.reached.max_wait_s, wait)
            if r.id not in self.fault_seen:
                self.reached.bounded_checked += 1
                assert wait <= self.bound + 1e-6, (r, wait, self.bound)
        assert a.check_invariants() == []
        assert _acyclic(a.wait_for_graph(self.now)), a.wait_for_graph(self.now)
        self._work_conserving()
        self.reached.max_running = max(self.reached.max_running, len(a.running()))
        self.reached.max_waiting = max(self.reached.max_waiting, len(a.waiting()))
        if self.faults:
            for r in a.waiting():
                self.fault_seen.add(r.id)

    def _work_conserving(self) -> None:
        a = self.arb
        reserved: set[str] = set()
        for r in a.order(self.now):
            why = a.why(r, self.now)
            if not why:
                assert r.needs & reserved, f"request {r} could start but was not granted"
            if a._urgent(r, self.now) and not any(w.resource in a.faults for w in why):
                reserved |= r.needs

    def advance(self, dt: float) -> None:
        end = self.now + dt
        while True:
            times = [r.granted_at + self.dur[r.id] for r in self.arb.running() if r.granted_at is not None]
            times += list(self.faults.values())
            times.append(self.arb.next_change(self.now))
            t = min(times) if times else math.inf
            if t > end:
                break
            self.now = max(self.now, t)
            for r in list(self.arb.running()):
                if r.granted_at is not None and r.granted_at + self.dur[r.id] <= self.now:
                    self.arb.release(r.id, self.now)
            for res, until in list(self.faults.items()):
                if until <= self.now:
                    del self.faults[res]
                    self.arb.unblock(res)
            self.step()
        self.now = end
        self.step()

    def apply(self, o: tuple) -> None:  # type: ignore[type-arg]
        if o[0] == "req":
            _, batch, closed, is_open, arm, window, slack, dur = o
            if self.outstanding(batch):
                return
            needs = set(closed) | ({"WS", "ARM", OPEN_ZONE} if is_open else set()) | ({"ARM"} if arm else set())
            if not needs:
                needs = {"ARM"}
            r: Request = self.arb.request(batch, "p", needs, self.now, open=is_open,
                                          latest_start=None if window is None else self.now + window,
                                          due=None if slack is None else self.now + slack, remaining=0.0)
            self.dur[r.id] = dur
            if self.faults:
                self.fault_seen.add(r.id)
            self.step()
        elif o[0] == "adv":
            self.advance(o[1])
        else:
            _, res, dur = o
            if res not in self.faults:
                self.faults[res] = self.now + dur
                self.arb.block(res, "random fault")
                self.reached.faults += 1
                for r in self.arb.waiting():
                    self.fault_seen.add(r.id)
                self.step()

    def drain(self) -> None:
        for _ in range(10_000):
            if not self.arb.waiting() and not self.arb.running():
                return
            self.advance(3600.0)
        raise AssertionError("requests never granted after faults cleared")


def test_no_deadlock_no_starvation() -> None:
    reached = Reached()

    @settings(max_examples=70, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(st.lists(op, min_size=30, max_size=120))
    def run(ops: list[tuple]) -> None:  # type: ignore[type-arg]
        reached.examples += 1
        d = Driver(reached)
        for o in ops:
            d.apply(o)
        d.drain()
        assert all(r.state is RequestState.DONE for r in d.arb.requests.values())

    run()
    print(f"\nreached: {reached}")
    # the random runs must actually have exercised contention, changeovers and faults (a run alone
    # reaches 916 phases granted, 118 line clearances, 940 faults, 313 bounded checks; in the full
    # suite one CI run reached fewer, 681 granted: the floors leave room for that)
    assert reached.granted >= 400
    assert reached.line_clearances >= 25
    assert reached.max_running >= 3 and reached.max_waiting >= 3
    assert reached.faults >= 25 and reached.window_events >= 10
    assert reached.bounded_checked >= 100
