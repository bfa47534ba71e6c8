"""A discrete-event model of the cell over days, driven by the arbiter and the process durations.

Patients arrive (apheresis), wait for admission (:mod:`.admission`), and each admitted batch
walks its master recipe (:mod:`.process`): an incubation phase just takes its time in the
batch's slot; every other phase files an acquire request with its window (latest start), due
date and remaining processing time, runs for its duration once the arbiter grants it, and
releases. Line clearances the arbiter raises run for ``t_line_clearance``; the purge wait
follows inside the arbiter. A VHP campaign cycle runs every ``campaign_max_days``; ARM, CFG and
WLD fail at random (``resource_mtbf_h``/``resource_mttr_h``: no new allocation while blocked;
a running phase is assumed to finish) and a fraction ``failure_rate`` of batches fails at a
random phase (its slot is released). Time-to-vein = end of freezing - apheresis arrival +
``release_lead_days``.

This is a model of the *arbiter and the process durations*, not of the supervisor: it does not
run the supervisor, its trees or the device models (the future ``cellctl twin`` must).

    python -m aseptic_cell.scheduling.simulate --patients 60 --days 60 --json
    python -m aseptic_cell.scheduling.simulate --saturate --days 180 --purge-min 3
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import statistics
import sys
import time as _time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.loader import default_config_dir
from .admission import AdmissionControl
from .arbiter import LINE_CLEARANCE, VHP_PHASE, Arbiter, EventKind, Request
from .process import Phase, PhaseKind, ProcessDefinition, load_process
from .resources import OPEN_ZONE, ResourceSet, SchedulingConfig, load_scheduling

DAY = 86400.0
FAULTY = ("ARM", "CFG", "WLD")


@dataclass
class _Batch:
    id: str
    arrival: float
    phases: list[Phase]
    due: float
    fail_at: int | None
    idx: int = 0
    ends: dict[str, float] = field(default_factory=dict)
    admitted_at: float | None = None
    finished_at: float | None = None
    failed: bool = False


@dataclass
class SimResult:
    days: float
    patients: int
    admitted: int
    completed: int
    failed: int
    waiting_admission: int
    batches_per_year: float
    time_to_vein_days: dict[str, float]
    utilisation: dict[str, float]
    bottleneck: str
    admission_limited_by: str
    max_concurrent_batches: int
    phases_granted: int
    line_clearances: int
    window_at_risk: int
    window_missed: int
    mean_wait_min: float
    max_wait_min: float
    refusals: dict[str, int]
    parameters: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class CellSimulation:
    """One run: ``CellSimulation(cfg, process, ...).run()``."""

    def __init__(self, cfg: SchedulingConfig, process: ProcessDefinition, *, days: float,
                 patients: int = 0, saturate: bool = False, seed: int = 1,
                 faults: bool = True, vhp: bool = True, check: bool = False) -> None:
        self.cfg = cfg
        self.process = process
        self.horizon = days * DAY
        self.rng = random.Random(seed)
        self.resources = ResourceSet(cfg.resources)
        self.arb = Arbiter(self.resources, cfg)
        self.adm = AdmissionControl(self.arb)
        self.saturate = saturate
        self.patients = patients
        self.faults = faults
        self.vhp = vhp
        self.check = check
        self.violations: list[str] = []
        self._q: list[tuple[float, int, str, Any]] = []
        self._seq = 0
        self.batches: dict[str, _Batch] = {}
        self.queue: list[_Batch] = []
        self.req_of: dict[int, _Batch | None] = {}
        self.busy: dict[str, float] = defaultdict(float)
        self.zone_changeover = 0.0
        self.slot_busy = 0.0
        self.events: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()
        self.waits: list[float] = []
        self.max_concurrent = 0
        self._wakes: set[float] = set()
        self._admit_due = True
        self.now = 0.0
        adm = cfg.admission
        self.release_lead = adm.release_lead_days * DAY
        self.target = adm.target_time_to_vein_days * DAY

    # -------------------------------------------------------------- event queue
    def _at(self, t: float, kind: str, payload: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self._q, (t, self._seq, kind, payload))

    def _new_patient(self, t: float) -> None:
        n = len(self.batches) + len(self.queue) + 1
        cryo = False
        phases = self.process.run_phases(cryopreserved=cryo)
        fail_at = self.rng.randrange(len(phases)) if self.rng.random() < self.cfg.simulation.failure_rate else None
        b = _Batch(f"B{n:04d}", t, phases, t + self.target - self.release_lead, fail_at)
        self.queue.append(b)

    def run(self) -> SimResult:
        sim = self.cfg.simulation
        if self.saturate:
            self._new_patient(0.0)
        else:
            times = sorted(self.rng.uniform(0, self.horizon) for _ in range(self.patients))
            for t in times:
                self._at(t, "arrival")
        if self.vhp and sim.vhp_duration_h > 0:
            self._at(sim.campaign_max_days * DAY, "vhp")
        if self.faults:
            for r in FAULTY:
                self._at(self.rng.expovariate(1 / (sim.resource_mtbf_h * 3600)), "fault", r)
        self.tick = min(3600.0, self.adm.bucket / 4)
        self._at(self.tick, "tick")
        wall0 = _time.perf_counter()
        while self._q:
            t, _, kind, payload = heapq.heappop(self._q)
            if t > self.horizon:
                break
            self._advance(t)
            self._handle(kind, payload)
            while self._q and self._q[0][0] == t:
                _, _, k2, p2 = heapq.heappop(self._q)
                self._handle(k2, p2)
            self._step()
        self._advance(self.horizon)
        self.wall_s = _time.perf_counter() - wall0
        return self._result()

    def _advance(self, t: float) -> None:
        dt = t - self.now
        if dt > 0:
            for q in self.arb.running():
                for r in q.needs:
                    self.busy[r] += dt
            if self.arb.zone_ready_at > self.now:
                self.zone_changeover += min(t, self.arb.zone_ready_at) - self.now  # purge wait
            self.slot_busy += dt * len(self.arb.slot_of)
        self.now = t

    # -------------------------------------------------------------- handlers
    def _handle(self, kind: str, payload: Any) -> None:
        now = self.now
        sim = self.cfg.simulation
        if kind in ("arrival", "tick", "admit"):
            self._admit_due = True
        if kind == "arrival":
            self._new_patient(now)
        elif kind == "ready":
            self._start_phase(payload)
        elif kind == "done":
            req: Request = payload
            self.arb.release(req.id, now)
            b = self.req_of.pop(req.id)
            if b is not None:
                self._phase_done(b)
        elif kind == "incubated":
            self._phase_done(payload)
        elif kind == "vhp":
            self.arb.request("CELL", VHP_PHASE, [self.resources.vhp], now, safety=True)
            self._at(now + sim.campaign_max_days * DAY, "vhp")
        elif kind == "fault":
            self.arb.block(payload, "simulated fault")
            self.events["resource_fault"] += 1
            self._at(now + self.rng.expovariate(1 / max(sim.resource_mttr_h * 3600, 1.0)), "repair", payload)
        elif kind == "repair":
            self.arb.unblock(payload)
            self._at(now + self.rng.expovariate(1 / (sim.resource_mtbf_h * 3600)), "fault", payload)
        elif kind == "tick":
            self._at(now + self.tick, "tick")
        # "wake", "admit": nothing to do but arbitrate / admit

    def _leave(self, b: _Batch) -> None:
        b.finished_at = self.now
        self.adm.finish(b.id, self.now)
        self._admit_due = True
        self._at(self.now + self.arb.slot_turnaround, "admit")

    def _phase_done(self, b: _Batch) -> None:
        ph = b.phases[b.idx]
        b.ends[ph.id] = self.now
        b.idx += 1
        if b.idx >= len(b.phases):
            self._leave(b)
            return
        self._next_phase(b)

    def _next_phase(self, b: _Batch) -> None:
        if b.fail_at is not None and b.idx == b.fail_at:
            b.failed = True
            self._leave(b)
            return
        ph = b.phases[b.idx]
        ready = self.now
        if ph.window is not None and ph.window.after in b.ends:
            ready = max(ready, b.ends[ph.window.after] + ph.window.earliest)
        if ready > self.now:
            self._at(ready, "ready", b)
        else:
            self._start_phase(b)

    def _start_phase(self, b: _Batch) -> None:
        ph = b.phases[b.idx]
        if ph.kind is PhaseKind.INCUBATION:
            self._at(self.now + ph.duration, "incubated", b)
            return
        latest = self.process.latest_start(b.phases, b.idx, b.ends)
        remaining = sum(p.duration for p in b.phases[b.idx:])
        req = self.arb.request(b.id, ph.id, ph.resources, self.now, open=ph.open,
                               safety=ph.kind is PhaseKind.SAFETY, latest_start=latest, due=b.due,
                               remaining=remaining, start_when_free=ph.start_when_free)
        self.req_of[req.id] = b

    def _duration(self, req: Request) -> float:
        sim = self.cfg.simulation
        if req.phase == LINE_CLEARANCE:
            return self.arb.t_lc
        if req.phase == VHP_PHASE:
            return sim.vhp_duration_h * 3600
        b = self.req_of[req.id]
        assert b is not None
        d = b.phases[b.idx].duration
        j = sim.duration_jitter
        return d * (1 + self.rng.uniform(-j, j)) if j else d

    def _step(self) -> None:
        now = self.now
        if self._admit_due:
            self._admit_due = False
            self._admit(now)
        for _ in range(4):
            decision = self.arb.arbitrate(now)
            for ev in decision.events:
                self.events[ev.kind.value] += 1
            for g in decision.grants:
                req = g.request
                self.waits.append(now - req.requested_at)
                if req.id not in self.req_of:
                    self.req_of[req.id] = None
                self._at(now + self._duration(req), "done", req)
            if not decision.events or all(e.kind is not EventKind.LINE_CLEARANCE_REQUESTED
                                          for e in decision.events):
                break
        self.max_concurrent = max(self.max_concurrent, len(self.arb.slot_of))
        if self.check:
            self.violations += self.arb.check_invariants()
        nxt = self.arb.next_change(now)
        if math.isfinite(nxt) and nxt > now and nxt not in self._wakes and nxt <= self.horizon:
            self._wakes.add(nxt)
            self._at(nxt, "wake")

    def _admit(self, now: float) -> None:
        while self.queue:
            b = self.queue[0]
            res = self.adm.admit(b.id, self.process, now)
            if not res.admitted:
                self.refusals[res.reason.split(" (")[0].split(" load")[0]] += 1
                return
            self.queue.pop(0)
            b.admitted_at = now
            b.due = b.arrival + self.target - self.release_lead
            self.batches[b.id] = b
            self._next_phase(b)
            if self.saturate and not self.queue:
                self._new_patient(now)

    # -------------------------------------------------------------- result
    def _result(self) -> SimResult:
        T = self.horizon
        done = [b for b in self.batches.values() if b.finished_at is not None and not b.failed]
        failed = [b for b in self.batches.values() if b.failed]
        ttv = sorted((b.finished_at - b.arrival + self.release_lead) / DAY for b in done
                     if b.finished_at is not None)
        run = self.process.nominal_duration()
        warm = min(run + DAY, T / 2)
        late = [b for b in done if b.finished_at is not None and b.finished_at >= warm]
        per_year = len(late) / ((T - warm) / DAY) * 365 if T > warm else 0.0
        util = {r: round(self.busy[r] / T, 4) for r in sorted(self.resources.requestable())
                if self.busy[r] > 0}
        util["GRADE_A_OPEN_ZONE_incl_changeover"] = round((self.busy[OPEN_ZONE] + self.zone_changeover) / T, 4)
        util["INCUBATOR_slots"] = round(self.slot_busy / (T * len(self.resources.slots)), 4)
        candidates = {k: v for k, v in util.items() if k not in (OPEN_ZONE, self.resources.vhp)}
        bottleneck = max(candidates, key=lambda k: candidates[k]) if candidates else ""
        waits = self.waits or [0.0]

        def q(p: float) -> float:
            return round(ttv[min(len(ttv) - 1, int(p * len(ttv)))], 2) if ttv else math.nan

        return SimResult(
            days=T / DAY,
            patients=len(self.batches) + len(self.queue),
            admitted=len(self.batches),
            completed=len(done),
            failed=len(failed),
            waiting_admission=len(self.queue),
            batches_per_year=round(per_year, 1),
            time_to_vein_days={"n": len(ttv), "min": round(ttv[0], 2) if ttv else math.nan,
                               "p50": q(0.5), "p90": q(0.9), "max": round(ttv[-1], 2) if ttv else math.nan,
                               "mean": round(statistics.fmean(ttv), 2) if ttv else math.nan,
                               "share_within_target": round(sum(t <= self.target / DAY for t in ttv)
                                                            / len(ttv), 3) if ttv else math.nan},
            utilisation=util,
            bottleneck=bottleneck,
            admission_limited_by=self.refusals.most_common(1)[0][0] if self.refusals else "",
            max_concurrent_batches=self.max_concurrent,
            phases_granted=len(self.waits),
            line_clearances=sum(1 for r in self.arb.requests.values() if r.phase == LINE_CLEARANCE),
            window_at_risk=self.events[EventKind.WINDOW_AT_RISK.value],
            window_missed=self.events[EventKind.WINDOW_MISSED.value],
            mean_wait_min=round(statistics.fmean(waits) / 60, 2),
            max_wait_min=round(max(waits) / 60, 2),
            refusals=dict(self.refusals),
            parameters={"process": self.process.id, "slots": len(self.resources.slots),
                        "t_purge_min": self.cfg.changeover.t_purge_min,
                        "t_line_clearance_min": self.cfg.changeover.t_line_clearance_min,
                        "saturate": self.saturate, "faults": self.faults, "vhp": self.vhp,
                        "wall_s": round(self.wall_s, 3)},
        )


def build(config_dir: Path, process_file: str, *, purge_min: float | None = None,
          lc_min: float | None = None, slots: int | None = None) -> tuple[SchedulingConfig, ProcessDefinition]:
    cfg = load_scheduling(config_dir)
    if purge_min is not None:
        cfg.changeover.t_purge_min = purge_min
    if lc_min is not None:
        cfg.changeover.t_line_clearance_min = lc_min
    if slots is not None:
        cfg.resources.incubator.slots = int(slots)
    proc = load_process(config_dir / "processes" / process_file, ResourceSet(cfg.resources))
    return cfg, proc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m aseptic_cell.scheduling.simulate", description=__doc__.split("\n")[0])
    ap.add_argument("--patients", type=int, default=0, help="patients arriving uniformly over the days")
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--saturate", action="store_true", help="a patient always waits for admission (capacity)")
    ap.add_argument("--process", default="cart-autologous.yaml", help="file in config/processes/")
    ap.add_argument("--purge-min", type=float, default=None, help="SEG-05 purge wait (default: scheduling.yaml)")
    ap.add_argument("--lc-min", type=float, default=None, help="SEG-04 line clearance (default: scheduling.yaml)")
    ap.add_argument("--slots", type=int, default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-faults", action="store_true")
    ap.add_argument("--no-vhp", action="store_true")
    ap.add_argument("--config", type=Path, default=None)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if a.patients <= 0 and not a.saturate:
        ap.error("give --patients N or --saturate")
    cfg, proc = build(a.config or default_config_dir(), a.process, purge_min=a.purge_min,
                      lc_min=a.lc_min, slots=a.slots)
    res = CellSimulation(cfg, proc, days=a.days, patients=a.patients, saturate=a.saturate, seed=a.seed,
                         faults=not a.no_faults, vhp=not a.no_vhp).run()
    if a.json:
        print(json.dumps(res.as_dict(), indent=2))
    else:
        d = res.as_dict()
        for k, v in d.items():
            print(f"{k:24s} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
