"""The operator's view of the patient batches (issue 14 item 7): plain JSON for ``/cell/batches``.

:func:`build_batch_view` reads a :class:`~.patients.PatientCell` (its public attributes, the
arbiter's requests and the executives) and returns, read-only:

* ``batches``: per batch its id, COI, DIN, ISA-88 state, active phase(s), incubator slot, the
  next action, the time-to-vein slack (when known), the held reason, the COI-30 stop, the
  IMPACTED flag (SEG-06 / COI-30) and the resources it holds now;
* ``zone_owner``: the batch owning ``GRADE_A_OPEN_ZONE`` (dirty until its line clearance), the
  line clearance in progress and the end of the purge wait (SEG-04/05);
* ``queue``: the arbiter's waiting requests in arbitration order, each with why it waits
  (:meth:`~aseptic_cell.scheduling.arbiter.Arbiter.why`; "ranked behind others" when nothing
  blocks it but the policy puts others first);
* ``timeline``: per batch its phase intervals (start, end or None while running, the resources,
  the wait before the grant), from the arbiter's requests and, for incubation phases (which
  file no request), from the end of the phase before to the phase's own end.

Time-to-vein slack follows the arbiter's ranking key (``due - remaining processing - now``) with
the batch's due date taken as the planning model's (``scheduling.simulate``): admission time +
``admission.target_time_to_vein_days`` - ``admission.release_lead_days`` (``scheduling.yaml``).
The admission time is the start of the batch's admission plan, so the slack is known while the
batch holds its slot and None after it left the cell.

Nothing here writes to the cell: the view is built from what the supervisor already holds.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from ..scheduling.arbiter import LINE_CLEARANCE, RequestState
from ..scheduling.resources import OPEN_ZONE

if TYPE_CHECKING:
    from .executive import BatchExecutive
    from .patients import PatientCell

MAX_INTERVALS = 200
"""Timeline intervals kept per batch (the newest); a long run's earlier ones are dropped."""

DAY = 86400.0


def _num(v: float | None) -> float | None:
    """JSON has no inf/nan: those become None (unknown)."""
    if v is None or not math.isfinite(v):
        return None
    return round(float(v), 1)


def _phase_id(path: str | None) -> str:
    return (path or "").rsplit("/", 1)[-1]


def _run_phases(ex: BatchExecutive) -> list[Any]:
    if ex.process is None:
        return []
    return list(ex.process.run_phases())


def _slack(cell: PatientCell, ex: BatchExecutive, now: float) -> float | None:
    plan = cell.admission.plans.get(ex.batch_id)
    if plan is None or ex.process is None:
        return None
    adm = cell.arbiter.cfg.admission
    due = plan.start + (adm.target_time_to_vein_days - adm.release_lead_days) * DAY
    phases = _run_phases(ex)
    ids = [p.id for p in phases]
    active = _phase_id(ex.active_phase)
    done = set(ex.phase_ends)
    if active in ids:
        rest = phases[ids.index(active):]
    else:
        rest = [p for p in phases if p.id not in done]
    return float(due - sum(p.duration for p in rest) - now)


def _next_action(cell: PatientCell, ex: BatchExecutive, now: float) -> str:
    state = ex.sm.state.value
    if ex.coi_stop:
        return "QA disposition (COI-30: no operator restart)"
    if state == "Held":
        return "signed restart after the cause is dealt with"
    if ex.sm.state.final:
        return "none (ended)" if state != "Complete" else "record review and QA disposition"
    if state == "Idle":
        return "start"
    ids = [p.id for p in _run_phases(ex)]
    active = _phase_id(ex.active_phase)
    rid = ex.requests.get(active)
    if rid is not None:
        req = cell.arbiter.requests.get(rid)
        if req is not None and req.state is RequestState.WAITING:
            return f"{active}: waiting for {', '.join(sorted(req.needs))}"
    if active in ids:
        i = ids.index(active)
        nxt = ids[i + 1] if i + 1 < len(ids) else ""
        return f"finish {active}" + (f", then {nxt}" if nxt else ", then end of run")
    return state.lower()


def _held_resources(cell: PatientCell, ex: BatchExecutive) -> list[str]:
    arb = cell.arbiter
    out: set[str] = set()
    for r in arb.running():
        if r.batch == ex.batch_id:
            out |= r.needs
    slot = arb.slot_of.get(ex.batch_id)
    if slot:
        out.add(slot)
    if arb.zone_owner == ex.batch_id:
        out.add(OPEN_ZONE)
    return sorted(out)


def _timeline(cell: PatientCell, ex: BatchExecutive, now: float) -> list[dict[str, Any]]:
    arb = cell.arbiter
    kinds = {_phase_id(p): ex.phase_kind(p) for p in ex.phase_order}
    rows: list[dict[str, Any]] = []
    for r in arb.requests.values():
        if r.batch != ex.batch_id or r.state is RequestState.CANCELLED and r.granted_at is None:
            continue
        if r.state is RequestState.WAITING:
            rows.append({"phase": r.phase, "kind": "wait", "start": _num(r.requested_at), "end": None,
                         "resources": sorted(r.needs), "waited_s": _num(now - r.requested_at)})
            continue
        if r.granted_at is None:
            continue
        kind = "line_clearance" if r.phase == LINE_CLEARANCE else kinds.get(r.phase, "open" if r.open else "closed")
        rows.append({"phase": r.phase, "kind": kind, "start": _num(r.granted_at), "requested": _num(r.requested_at),
                     "end": _num(r.released_at) if r.released_at is not None else None,
                     "resources": sorted(r.needs), "waited_s": _num(r.granted_at - r.requested_at)})
    # incubation phases file no request: from the end of the phase before to their own end
    prev_end: float | None = None
    plan = cell.admission.plans.get(ex.batch_id)
    if plan is not None:
        prev_end = plan.start
    active = _phase_id(ex.active_phase)
    for p in _run_phases(ex):
        end = ex.phase_ends.get(p.id)
        if p.kind.value == "incubation" and prev_end is not None and (end is not None or p.id == active):
            rows.append({"phase": p.id, "kind": "incubation", "start": _num(prev_end),
                         "end": _num(end) if end is not None else None,
                         "resources": [ex.slot] if ex.slot else [], "waited_s": None})
        if end is not None:
            prev_end = end
    rows.sort(key=lambda x: (x["start"] if x["start"] is not None else -math.inf, x["phase"]))
    return rows[-MAX_INTERVALS:]


def build_batch_view(cell: PatientCell) -> dict[str, Any]:
    """The JSON-able view (see the module docstring)."""
    sup, arb = cell.sup, cell.arbiter
    now = sup.now()
    batches: list[dict[str, Any]] = []
    timeline: dict[str, list[dict[str, Any]]] = {}
    for ex in sup.patients.values():
        active = _phase_id(ex.active_phase)
        running = sorted({r.phase for r in arb.running() if r.batch == ex.batch_id} | ({active} if active else set()))
        batches.append({
            "batch_id": ex.batch_id, "coi": ex.coi, "din": ex.din, "state": ex.sm.state.value,
            "active_phases": running, "slot": ex.slot or "",
            "next_action": _next_action(cell, ex, now),
            "slack_s": _num(_slack(cell, ex, now)),
            "held_reason": ex.held_reason, "coi_stop": ex.coi_stop, "impacted": bool(ex.impacted),
            "resources_held": _held_resources(cell, ex),
            "phases_done": len(ex.phase_ends), "phases_total": len(ex.phase_order),
        })
        timeline[ex.batch_id] = _timeline(cell, ex, now)
    queue = []
    for pos, r in enumerate(arb.order(now), 1):
        why = [{"resource": w.resource, "holders": list(w.holders), "why": w.why} for w in arb.why(r, now)]
        queue.append({"position": pos, "request": r.id, "batch": r.batch, "phase": r.phase,
                      "needs": sorted(r.needs), "since": _num(r.requested_at), "waited_s": _num(now - r.requested_at),
                      "safety": r.safety, "latest_start": _num(r.latest_start),
                      "why": why or [{"resource": "", "holders": [], "why": "ranked behind others (policy order)"}]})
    lc = arb.requests.get(arb.zone_lc) if arb.zone_lc is not None else None
    return {
        "t": _num(now),
        "batches": batches,
        "zone_owner": arb.zone_owner,
        "zone": {"owner": arb.zone_owner, "consecutive_open": arb.zone_consecutive,
                 "line_clearance": ({"batch": lc.batch, "state": lc.state.value} if lc is not None else None),
                 "purge_until": _num(arb.zone_ready_at) if arb.zone_ready_at > now else None,
                 "faulted": {k: v for k, v in arb.faults.items()}},
        "queue": queue,
        "timeline": timeline,
        "violations": list(cell.violations[-20:]),
    }


def batch_view_json(cell: PatientCell | None) -> str:
    """The ``/cell/batches`` payload; a cell without patient batches gives an empty view."""
    if cell is None:
        return json.dumps({"t": None, "batches": [], "zone_owner": None, "zone": None, "queue": [],
                           "timeline": {}, "violations": []})
    return json.dumps(build_batch_view(cell), allow_nan=False, default=str)


__all__ = ["MAX_INTERVALS", "batch_view_json", "build_batch_view"]
