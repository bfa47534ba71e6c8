"""ISA-88 allocation and arbitration of the cell's common resources among patient batches.

Allocation: a phase acquires everything it needs at once before it starts and releases it all
after (all-or-nothing, so no batch ever holds one resource while it waits for another: no
hold-and-wait, no deadlock). The incubator slot is allocated at admission for the whole run
(:meth:`Arbiter.allocate_slot`). ``GRADE_A_OPEN_ZONE`` is owned by a batch from its first open
phase of an open block until the line clearance that follows it: after the owner's open phase
the zone stays *dirty* with its owner; when another batch needs it the arbiter raises a
line-clearance request (a safety phase, on behalf of the owner) and after it completes the zone
is ready again only after the purge wait ``t_purge + t_stable`` (SEG-04/05).

Arbitration [ISA88] [DELTAV] orders the waiting requests, first to last:

1. safety / containment phases (line clearance, spill cleanup, glove test, VHP);
2. hard time-window phases whose latest start is within ``t_warn`` (at risk), earliest first;
3. *urgent* requests by earliest deadline: the other hard time-window phases by their latest
   start, and every request that has waited ``t_age`` (ageing) with the deadline
   ``request time + t_age``;
4. the rest by smallest time-to-vein slack (``due - remaining processing - now``); the open
   zone's current owner continuing its open work is favoured by one changeover's cost
   (changeover minimisation) while it has had fewer than ``max_consecutive_open`` open phases
   or no other batch waits for the zone;
5. FIFO by request time, then request id.

A request is granted when every resource it needs is free, not faulted and not reserved: a
waiting urgent request (tiers 1-2) reserves the resources it needs against later-ranked ones
(except behind a faulted resource, so a batch-local fault stops other batches only through the
resources it blocks). Starvation-freedom: every request's rank deadline is at most
``request time + t_age`` and a later request's deadline is never earlier than its own request
time, so once aged a request can be overtaken only by the finitely many requests made before
its deadline, by safety phases and by at-risk window phases (a batch has a bounded number of
windowed phases per run). Deterministic: no wall clock, no randomness; ``now`` is
always passed in (seconds).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from .resources import OPEN_ZONE, ResourceKind, ResourceSet, SchedulingConfig

LINE_CLEARANCE = "line_clearance"
VHP_PHASE = "vhp"


class RequestState(StrEnum):
    WAITING = "waiting"
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"


@dataclass
class Request:
    """One phase's acquire request."""

    id: int
    batch: str
    phase: str
    needs: frozenset[str]
    requested_at: float
    open: bool = False
    safety: bool = False
    latest_start: float | None = None
    due: float | None = None
    remaining: float = 0.0
    start_when_free: frozenset[str] = frozenset()
    state: RequestState = RequestState.WAITING
    granted_at: float | None = None
    released_at: float | None = None
    warned: bool = False
    missed: bool = False

    @property
    def waited(self) -> float:
        return (self.granted_at if self.granted_at is not None else math.nan) - self.requested_at


@dataclass(frozen=True)
class Grant:
    request: Request
    at: float


class EventKind(StrEnum):
    WINDOW_AT_RISK = "window_at_risk"      # look-ahead t_warn: the executive raises a deviation now
    WINDOW_MISSED = "window_missed"
    LINE_CLEARANCE_REQUESTED = "line_clearance_requested"


@dataclass(frozen=True)
class Event:
    kind: EventKind
    at: float
    batch: str
    phase: str
    request_id: int
    detail: str


@dataclass(frozen=True)
class WaitReason:
    """Why a request waits: the resource, who holds it, and a sentence."""

    resource: str
    holders: tuple[str, ...]
    why: str

    def __str__(self) -> str:
        return f"{self.resource}: {self.why}"


@dataclass
class Decision:
    grants: list[Grant] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


class ArbiterError(Exception):
    pass


class Arbiter:
    """The allocation and arbitration state of one cell (see the module docstring)."""

    def __init__(self, resources: ResourceSet, cfg: SchedulingConfig) -> None:
        self.resources = resources
        self.cfg = cfg
        a, c = cfg.arbitration, cfg.changeover
        self.t_warn = a.t_warn_min * 60.0
        self.t_age = a.t_age_min * 60.0
        self.max_consecutive_open = a.max_consecutive_open
        self.t_lc = c.t_line_clearance_min * 60.0
        self.t_purge = (c.t_purge_min + c.t_stable_min) * 60.0
        self.lc_needs = frozenset([*c.line_clearance_resources, OPEN_ZONE])
        self.changeover_cost = self.t_lc + self.t_purge
        self.slot_turnaround = resources.config.incubator.slot_turnaround_h * 3600.0
        self.requests: dict[int, Request] = {}
        self._active: dict[int, Request] = {}   # waiting or running
        self._next_id = 1
        self.holders: dict[str, list[int]] = {r: [] for r in resources.by_id}
        self.faults: dict[str, str] = {}  # resource -> why it is blocked (every source's reason)
        self._blocks: dict[str, dict[str, str]] = {}  # resource -> source -> reason
        # open zone (batch-level ownership between open phases until line clearance)
        self.zone_owner: str | None = None
        self.zone_consecutive = 0
        self.zone_ready_at = -math.inf
        self.zone_lc: int | None = None
        # incubator slots
        self.slot_of: dict[str, str] = {}
        self.slot_free_at: dict[str, float] = {s: -math.inf for s in resources.slots}

    # ------------------------------------------------------------------ slots (admission)
    def free_slot(self, now: float) -> str | None:
        """The slot longest out of use among the free, clean ones (or None)."""
        taken = set(self.slot_of.values())
        free = [s for s in self.resources.slots
                if s not in taken and s not in self.faults and self.slot_free_at[s] <= now]
        if not free:
            return None
        return min(free, key=lambda s: (self.slot_free_at[s], s))

    def allocate_slot(self, batch: str, now: float) -> str:
        if batch in self.slot_of:
            raise ArbiterError(f"batch {batch} already holds slot {self.slot_of[batch]}")
        slot = self.free_slot(now)
        if slot is None:
            raise ArbiterError("no free incubator slot")
        self.slot_of[batch] = slot
        self.holders[slot] = [0]
        return slot

    def release_slot(self, batch: str, now: float) -> None:
        """The batch's slot returns after ``slot_turnaround`` (cleaning; DIRTY until then, SEG-10)."""
        slot = self.slot_of.pop(batch)
        self.holders[slot] = []
        self.slot_free_at[slot] = now + self.slot_turnaround

    # ------------------------------------------------------------------ requests
    def request(self, batch: str, phase: str, needs: Iterable[str], now: float, *, open: bool = False,
                safety: bool = False, latest_start: float | None = None, due: float | None = None,
                remaining: float = 0.0, start_when_free: Iterable[str] = ()) -> Request:
        """File an acquire request for one phase; :meth:`arbitrate` grants it."""
        need = frozenset(needs)
        for r in need:
            if r not in self.resources or self.resources[r].kind is ResourceKind.INCUBATOR_SLOT:
                raise ArbiterError(f"unknown or non-requestable resource {r!r}")
        if open != (OPEN_ZONE in need):
            raise ArbiterError(f"open={open} but {OPEN_ZONE} {'not ' if open else ''}in needs")
        req = Request(self._next_id, batch, phase, need, now, open=open,
                      safety=safety or phase in self.cfg.arbitration.safety_phases,
                      latest_start=latest_start, due=due, remaining=remaining,
                      start_when_free=frozenset(start_when_free))
        self._next_id += 1
        self.requests[req.id] = req
        self._active[req.id] = req
        return req

    def cancel(self, rid: int) -> None:
        req = self.requests[rid]
        if req.state is not RequestState.WAITING:
            raise ArbiterError(f"request {rid} is {req.state.value}, only a waiting request is cancelled")
        req.state = RequestState.CANCELLED
        del self._active[rid]
        if rid == self.zone_lc:
            self.zone_lc = None

    def release(self, rid: int, now: float) -> None:
        """The phase is over: every resource it holds is released at once."""
        req = self.requests[rid]
        if req.state is not RequestState.RUNNING:
            raise ArbiterError(f"request {rid} is {req.state.value}, not running")
        req.state = RequestState.DONE
        req.released_at = now
        del self._active[rid]
        for r in req.needs:
            self.holders[r].remove(rid)
        if rid == self.zone_lc:
            self.zone_lc = None
            self.zone_owner = None
            self.zone_consecutive = 0
            self.zone_ready_at = now + self.t_purge
        elif req.phase == VHP_PHASE and req.safety and self.resources.vhp in req.needs:
            self.zone_owner = None  # bio-decontaminated; aeration is part of the VHP phase
            self.zone_consecutive = 0

    def block(self, resource: str, reason: str, source: str = "") -> None:
        """A fault: nothing new is allocated on ``resource`` until :meth:`unblock` by the same
        ``source``. Blocks of different sources add up (a cell-wide trip and a SEG-07 containment
        both block the arm: leaving one does not free it while the other holds)."""
        if resource not in self.resources:
            raise ArbiterError(f"unknown resource {resource!r}")
        self._blocks.setdefault(resource, {})[source] = reason
        self._faults_of(resource)

    def unblock(self, resource: str, source: str = "") -> None:
        """Lift ``source``'s block of ``resource``; the resource stays faulted while another holds."""
        self._blocks.get(resource, {}).pop(source, None)
        self._faults_of(resource)

    def _faults_of(self, resource: str) -> None:
        reasons = self._blocks.get(resource) or {}
        if reasons:
            self.faults[resource] = "; ".join(reasons.values())
        else:
            self._blocks.pop(resource, None)
            self.faults.pop(resource, None)

    # ------------------------------------------------------------------ views
    def waiting(self) -> list[Request]:
        return [r for r in self._active.values() if r.state is RequestState.WAITING]

    def running(self) -> list[Request]:
        return [r for r in self._active.values() if r.state is RequestState.RUNNING]

    def owners(self, resource: str) -> list[str]:
        """Batches holding ``resource`` now (slot: its batch)."""
        return [self.requests[i].batch if i else self._slot_batch(resource) for i in self.holders[resource]]

    def _slot_batch(self, slot: str) -> str:
        return next(b for b, s in self.slot_of.items() if s == slot)

    def order(self, now: float) -> list[Request]:
        """The waiting requests in arbitration order."""
        return sorted(self.waiting(), key=lambda r: self._key(r, now))

    def _key(self, r: Request, now: float) -> tuple[int, float, int, float, int]:
        if r.safety:
            return (0, r.requested_at, 0, 0.0, r.id)
        deadline = math.inf
        if r.latest_start is not None:
            deadline = max(r.latest_start, r.requested_at)
            if now >= r.latest_start - self.t_warn:
                return (1, deadline, 0, r.requested_at, r.id)   # window at risk: before aged requests
        if now >= r.requested_at + self.t_age:
            deadline = min(deadline, r.requested_at + self.t_age)
        if deadline < math.inf:
            return (2, deadline, 0, r.requested_at, r.id)
        slack = (r.due - r.remaining) if r.due is not None else math.inf
        continues = r.open and self._continues_zone(r)
        if continues:
            slack -= self.changeover_cost
        return (3, slack, 0 if continues else 1, r.requested_at, r.id)

    def _urgent(self, r: Request, now: float) -> bool:
        return r.safety or r.latest_start is not None or now >= r.requested_at + self.t_age

    def _continues_zone(self, r: Request) -> bool:
        return self.zone_owner == r.batch and self.zone_consecutive < self.max_consecutive_open

    def _others_want_zone(self, batch: str) -> bool:
        return any(w.open and w.batch != batch for w in self.waiting())

    def why(self, r: Request, now: float) -> list[WaitReason]:
        """Why ``r`` cannot start now (empty: it could; ranking may still put others first)."""
        out: list[WaitReason] = []
        vhp = self.resources.vhp
        vhp_running = [i for i in self.holders[vhp]]
        if vhp_running and vhp not in r.needs:
            out.append(WaitReason(vhp, tuple(self.owners(vhp)), "VHP bio-decontamination in progress"))
        if vhp in r.needs:
            busy = [q for q in self.running()]
            if busy:
                out.append(WaitReason(vhp, tuple(sorted({q.batch for q in busy})),
                                      "VHP waits for every running phase to end"))
            if not self.resources.config.vhp.with_product_inside and self.slot_of:
                out.append(WaitReason(vhp, tuple(sorted(self.slot_of)),
                                      "VHP with product inside is not validated: incubator must be empty"))
        for res in sorted(r.needs):
            if res in self.faults:
                out.append(WaitReason(res, (), f"faulted: {self.faults[res]}"))
            held = self.holders[res]
            if len(held) >= self.resources.capacity(res):
                out.append(WaitReason(res, tuple(self.owners(res)), "held"))
        for res in sorted(r.start_when_free - r.needs):
            if res in self.faults or len(self.holders[res]) >= self.resources.capacity(res):
                out.append(WaitReason(res, tuple(self.owners(res)),
                                      "must be free for this phase to start (a later phase's window)"))
        if OPEN_ZONE in r.needs and r.id != self.zone_lc:
            if self.zone_lc is not None:
                lc = self.requests[self.zone_lc]
                out.append(WaitReason(OPEN_ZONE, (lc.batch,),
                                      f"line clearance after {lc.batch} {lc.state.value}"))
            elif self.zone_owner is not None and self.zone_owner != r.batch:
                out.append(WaitReason(OPEN_ZONE, (self.zone_owner,),
                                      f"dirty after {self.zone_owner}: line clearance needed"))
            elif (self.zone_owner == r.batch and self.zone_consecutive >= self.max_consecutive_open
                  and self._others_want_zone(r.batch)):
                out.append(WaitReason(OPEN_ZONE, (r.batch,),
                                      f"max_consecutive_open {self.max_consecutive_open} reached: changeover"))
            if now < self.zone_ready_at:
                out.append(WaitReason(OPEN_ZONE, (), f"purge wait until t={self.zone_ready_at:.0f} s"))
        return out

    # ------------------------------------------------------------------ arbitration
    def arbitrate(self, now: float) -> Decision:
        """Grant what can start now, in policy order; report window risks and line clearances."""
        d = Decision()
        self._maybe_line_clearance(now, d)
        reserved: set[str] = set()
        for r in self.order(now):
            if r.latest_start is not None:
                if not r.warned and now >= r.latest_start - self.t_warn:
                    r.warned = True
                    d.events.append(Event(EventKind.WINDOW_AT_RISK, now, r.batch, r.phase, r.id,
                                          f"latest start t={r.latest_start:.0f} s within t_warn; waiting on: "
                                          + "; ".join(str(w) for w in self.why(r, now))))
                if not r.missed and now > r.latest_start:
                    r.missed = True
                    d.events.append(Event(EventKind.WINDOW_MISSED, now, r.batch, r.phase, r.id,
                                          f"latest start t={r.latest_start:.0f} s passed"))
            blockers = self.why(r, now)
            if not blockers and not (r.needs & reserved):
                self._grant(r, now)
                d.grants.append(Grant(r, now))
                if self.resources.vhp in r.needs:
                    break
                continue
            if self._urgent(r, now) and not any(b.resource in self.faults for b in blockers):
                reserved |= r.needs
                if self.resources.vhp in r.needs:
                    reserved |= set(self.resources.requestable())
        return d

    def _grant(self, r: Request, now: float) -> None:
        r.state = RequestState.RUNNING
        r.granted_at = now
        for res in r.needs:
            self.holders[res].append(r.id)
        if r.open and r.id != self.zone_lc:
            if self.zone_owner == r.batch:
                self.zone_consecutive += 1
            else:
                self.zone_owner = r.batch
                self.zone_consecutive = 1

    def _maybe_line_clearance(self, now: float, d: Decision) -> None:
        """Raise the owner's line clearance when the top-ranked open request is another batch's."""
        if self.zone_owner is None or self.zone_lc is not None or self.holders[OPEN_ZONE]:
            return
        opens = [r for r in self.order(now) if r.open]
        if not opens:
            return
        top = opens[0]
        owner = self.zone_owner
        if top.batch == owner:
            if self.zone_consecutive < self.max_consecutive_open or not self._others_want_zone(owner):
                return
        lc = self.request(owner, LINE_CLEARANCE, self.lc_needs, now, open=True, safety=True)
        self.zone_lc = lc.id
        d.events.append(Event(EventKind.LINE_CLEARANCE_REQUESTED, now, owner, LINE_CLEARANCE, lc.id,
                              f"open zone dirty after {owner}; {top.batch} {top.phase} waits for it"))

    # ------------------------------------------------------------------ analysis helpers
    def next_change(self, now: float) -> float:
        """The earliest future time at which arbitration may change without a release or request
        (purge end, a request ageing, a window warning or a missed window)."""
        t = math.inf
        if self.zone_ready_at > now:
            t = min(t, self.zone_ready_at)
        for r in self.waiting():
            if now < r.requested_at + self.t_age:
                t = min(t, r.requested_at + self.t_age)
            if r.latest_start is not None:
                if not r.warned:
                    t = min(t, max(now, r.latest_start - self.t_warn))
                if not r.missed:
                    t = min(t, math.nextafter(r.latest_start, math.inf))
        for _s, free_at in self.slot_free_at.items():
            if free_at > now:
                t = min(t, free_at)
        return t

    def wait_for_graph(self, now: float) -> dict[str, set[str]]:
        """Batch → batches it waits on (holders of what it needs, the dirty zone's owner)."""
        g: dict[str, set[str]] = {}
        for r in self.waiting():
            for w in self.why(r, now):
                for h in w.holders:
                    if h != r.batch:
                        g.setdefault(r.batch, set()).add(h)
        return g

    def check_invariants(self) -> list[str]:
        """Violations of capacity and all-or-nothing allocation (empty when sound)."""
        out: list[str] = []
        for res, held in self.holders.items():
            if len(held) > self.resources.capacity(res):
                out.append(f"{res} has {len(held)} owners > capacity {self.resources.capacity(res)}")
        # who holds what, from the holders (a request no holder names holds nothing): the check costs
        # the live allocations, not every request ever made (a long run files thousands)
        holding_of: dict[int, set[str]] = {}
        for res, held in self.holders.items():
            for rid in held:
                if rid:  # 0: an incubator slot bound to its batch (assign_slot), not a request
                    holding_of.setdefault(rid, set()).add(res)
        for rid in sorted(set(holding_of) | {q.id for q in self._active.values()}):
            q = self.requests.get(rid)
            holding = holding_of.get(rid, set())
            if q is None:
                out.append(f"unknown request {rid} holds {sorted(holding)}")
            elif q.state is RequestState.RUNNING and holding != q.needs:
                out.append(f"request {q.id} runs holding {sorted(holding)} of {sorted(q.needs)}")
            elif q.state is not RequestState.RUNNING and holding:
                out.append(f"request {q.id} is {q.state.value} but holds {sorted(holding)}")
        if self.holders[self.resources.vhp] and len(self.running()) > 1:
            out.append("VHP runs together with another phase")
        zone_phases = [self.requests[i] for i in self.holders[OPEN_ZONE]]
        for q in zone_phases:
            if q.id != self.zone_lc and q.batch != self.zone_owner:
                out.append(f"{q.batch} holds the open zone owned by {self.zone_owner}")
        return out
