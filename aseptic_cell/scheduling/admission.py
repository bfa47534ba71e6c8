"""Admission control: a batch is admitted only if its whole run fits, else refused with the reason.

A batch fits when (1) an incubator slot is free now — the slot is then allocated for the whole
run (SCH-P1: slots bound capacity) — and (2) the projected load of every exclusive resource (the arm, the open zone, the
closed processor, ...) stays within ``availability × bucket_h`` in every period of ``bucket_h`` (default 24 h)
of its run, counting the nominal plan of every admitted batch (from its admission) plus this one, with one changeover
(line clearance + purge wait, SEG-04/05) per open block (capacity model of the
reference process [ZHU-2018] [CCI-2018]; parameters are site values [M]). No batch is admitted
while a VHP that needs an empty incubator waits.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from .arbiter import VHP_PHASE, Arbiter
from .process import ProcessDefinition
from .resources import OPEN_ZONE, ResourceKind

DAY = 86400.0


@dataclass(frozen=True)
class AdmissionResult:
    admitted: bool
    batch: str
    reason: str
    slot: str | None = None
    projected_peak_min_per_day: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Plan:
    start: float
    process: ProcessDefinition
    cryopreserved: bool


class AdmissionControl:
    """Admits batches onto an :class:`Arbiter`'s cell; :meth:`finish` returns the slot."""

    def __init__(self, arbiter: Arbiter) -> None:
        self.arbiter = arbiter
        adm = arbiter.cfg.admission
        self.bucket = adm.bucket_h * 3600.0
        self.capacity_per_day = self.bucket * adm.availability
        self.plans: dict[str, _Plan] = {}

    def _load(self, plans: list[_Plan], horizon: tuple[float, float]) -> dict[str, dict[int, float]]:
        """Seconds of ARM and open-zone use per day index (from ``horizon[0]``)."""
        t0, t1 = horizon
        exclusive = {r for r, v in self.arbiter.resources.by_id.items() if v.kind is ResourceKind.EXCLUSIVE}
        load: dict[str, dict[int, float]] = {r: defaultdict(float) for r in sorted(exclusive)}
        cost = self.arbiter.changeover_cost
        for plan in plans:
            prev_open = False
            for pp in plan.process.nominal_plan(cryopreserved=plan.cryopreserved):
                s, e = plan.start + pp.start, plan.start + pp.end
                if e <= t0 or s >= t1:
                    prev_open = pp.phase.open
                    continue
                for res in pp.phase.resources:
                    if res in exclusive:
                        _spread(load[res], s, e, t0, self.bucket)
                if pp.phase.open and not prev_open:  # one changeover per open block
                    _spread(load[OPEN_ZONE], e, e + cost, t0, self.bucket)
                prev_open = pp.phase.open
        return load

    def admit(self, batch: str, process: ProcessDefinition, now: float, *,
              cryopreserved: bool = False) -> AdmissionResult:
        arb = self.arbiter
        if batch in self.plans:
            return AdmissionResult(False, batch, f"batch {batch} is already admitted")
        unknown = sorted({r for p in process.phases for r in p.resources} - arb.resources.requestable())
        if unknown:
            return AdmissionResult(False, batch, f"process {process.id} needs resources this cell lacks: {unknown}")
        if not arb.resources.config.vhp.with_product_inside and any(
                r.phase == VHP_PHASE for r in arb.waiting()):
            return AdmissionResult(False, batch, "a VHP cycle waits for an empty incubator")
        slot = arb.free_slot(now)
        if slot is None:
            held = len(arb.slot_of)
            turnaround = [t for t in arb.slot_free_at.values() if t > now]
            nxt = f"; next slot back from cleaning at t={min(turnaround):.0f} s" if turnaround else ""
            return AdmissionResult(False, batch,
                                   f"no free incubator slot ({held} of {len(arb.resources.slots)} held{nxt})")
        new = _Plan(now, process, cryopreserved)
        horizon = (now, now + process.nominal_duration(cryopreserved=cryopreserved))
        load = self._load([*self.plans.values(), new], horizon)
        peaks = {res: max(days.values(), default=0.0) / 60.0 for res, days in load.items() if days}
        for res, days in load.items():
            for day, used in sorted(days.items()):
                if used > self.capacity_per_day:
                    return AdmissionResult(
                        False, batch,
                        f"projected {res} load in period {day} of the run is {used / 60:.0f} min > "
                        f"{self.capacity_per_day / 60:.0f} min available per {self.bucket / 3600:g} h", None, peaks)
        arb.allocate_slot(batch, now)
        self.plans[batch] = new
        return AdmissionResult(True, batch, "admitted", slot, peaks)

    def finish(self, batch: str, now: float) -> None:
        """The batch left the cell (completed or failed): its slot goes to cleaning."""
        self.plans.pop(batch, None)
        if batch in self.arbiter.slot_of:
            self.arbiter.release_slot(batch, now)


def _spread(days: dict[int, float], s: float, e: float, t0: float, bucket: float) -> None:
    """Add the interval [s, e) to buckets of ``bucket`` seconds counted from t0."""
    s = max(s, t0)
    d = math.floor((s - t0) / bucket)
    while s < e:
        boundary = t0 + (d + 1) * bucket
        if boundary > s:
            days[d] += min(e, boundary) - s
            s = min(e, boundary)
        d += 1
