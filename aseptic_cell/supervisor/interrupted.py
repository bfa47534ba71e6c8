"""A batch interrupted by the loss of the supervisor, found again in the reopened record.

The supervisor records every ISA-88 batch and phase transition [ISA88] in the batch record. When
it starts and the record's last batch-level transition leaves a batch in progress (not Idle,
Complete, Stopped or Aborted), the supervisor that ran it was lost (killed, crashed, its host
restarted). :func:`hold_interrupted` reloads that batch's recipe and tree, marks the phases the
record shows Complete as complete, puts the interrupted phase and the batch in Held, records the
interruption (a ``trip`` entry and the batch's transition to Held) and raises
``CELL_SUPERVISOR_LOST``. Nothing resumes: the signed restart (``batch_command("restart")``)
recovers the devices the lifecycle manager latched and re-runs the interrupted phase from its
start (Part 11 §11.10(e) [CFR11]: the interruption is in the audit trail; ISO 10218-1 §5.4
[ISO10218-1]: resuming is a deliberate action).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from ..batch.states import PhaseState, PhaseStateMachine
from .recipes import RecipeError, resolve_recipe

if TYPE_CHECKING:
    from .core import Supervisor

S = PhaseState
NOT_IN_PROGRESS = {"Idle", "Complete", "Stopped", "Aborted"}


def find_interrupted(record: Any) -> dict[str, Any] | None:
    """The batch the record shows in progress, or None.

    Returns ``{"batch_id", "state" (its last batch state), "recipe_id", "user", "phases"
    (phase path -> last state), "seq" (of the last batch transition)}``.
    """
    last = None
    for e in record.entries(kinds=["phase_transition"]):
        if e.payload.get("level") == "batch" and e.batch_id:
            last = e
    if last is None or str(last.payload.get("to")) in NOT_IN_PROGRESS:
        return None
    batch_id = last.batch_id
    recipe_id, user = "", "system"
    phases: dict[str, str] = {}
    for e in record.entries(batch_id=batch_id, kinds=["phase_transition", "command"]):
        if e.kind == "command" and e.action == "batch.start" and e.payload.get("recipe_id"):
            recipe_id, user = str(e.payload["recipe_id"]), e.actor
        elif e.kind == "phase_transition" and e.payload.get("level") == "phase" and e.payload.get("phase"):
            phases[str(e.payload["phase"])] = str(e.payload.get("to"))
    return {"batch_id": batch_id, "state": str(last.payload.get("to")), "recipe_id": recipe_id, "user": user,
            "phases": phases, "seq": last.seq}


def hold_interrupted(sup: Supervisor) -> str:
    """Find an interrupted batch in ``sup.record`` and hold it (see the module). Returns the held
    reason ("" when no batch was interrupted)."""
    if sup.record is None or sup.sm.state is not S.IDLE:
        return ""
    info = find_interrupted(sup.record)
    if info is None:
        return ""
    batch_id, was = info["batch_id"], info["state"]
    sup.batch_id = batch_id
    try:
        recipe = resolve_recipe(info["recipe_id"], sup.cfg)
    except RecipeError as exc:
        why = (f"supervisor lost: batch {batch_id} was interrupted ({was}), but its recipe "
               f"{info['recipe_id']!r} cannot be loaded ({exc}); it cannot be restarted, only closed by QA")
        sup.journal.audit("trip", "system", "supervisor.lost", why, {"batch": batch_id, "last_state": was})
        sup.process_alarms.raise_("CELL_SUPERVISOR_LOST", why)
        return why
    sup.recipe, sup.batch_user = recipe, info["user"]
    sup.alarms.set_batch(batch_id)
    sup._load_tree()
    active = None
    for path in sup.phase_order:
        last = info["phases"].get(path)
        if last is None or last == "Idle":
            continue
        state = S.COMPLETE if last == "Complete" else (S(last) if last in ("Stopped", "Aborted") else S.HELD)
        sm = PhaseStateMachine(sup.clock, initial=state, name=path)
        sm.add_listener(functools.partial(sup._on_phase_transition, path))
        sup.phases[path] = sm
        if state is S.HELD:
            active = path
    sup.active_phase = active
    sup.sm = PhaseStateMachine(sup.clock, initial=S.HELD, name="batch")
    sup.sm.add_listener(lambda tr: sup._on_batch_transition(tr))
    where = f" in phase {active}" if active else ""
    why = (f"supervisor lost: batch {batch_id} was interrupted ({was}{where}); devices were put in their "
           "safe state by the lifecycle manager; held until a signed restart")
    sup.held_reason = why
    sup._hold_is_trip = True
    entry = {"t": sup.now(), "rule": "CELL_SUPERVISOR_LOST", "title": "supervisor lost", "reason": why,
             "reaction": "hold_batch", "batch_state": was}
    sup.journal.trips.append(entry)
    sup.journal.audit("trip", "system", "supervisor.lost", why,
                      {**entry, "batch": batch_id, "interrupted_phase": active or "", "last_seq": info["seq"]})
    if active and info["phases"].get(active) != "Held":
        sup.journal.audit("phase_transition", "system", "phase.hold", why,
                          {"level": "phase", "phase": active, "from": info["phases"][active], "to": "Held"})
    if was != "Held":
        sup.journal.audit("phase_transition", "system", "batch.hold", why,
                          {"level": "batch", "from": was, "to": "Held"})
    try:
        sup.alarms.set_design_state("batch_active", True)
    except KeyError:
        pass
    sup.process_alarms.raise_("CELL_SUPERVISOR_LOST", why)
    return why
