"""Read-only views of a supervisor for publishing: batch status, the behaviour tree, the
end-of-batch summary. Nothing here changes the supervisor."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..batch.states import PhaseState as S

if TYPE_CHECKING:
    from .core import Supervisor


def status(sup: Supervisor) -> dict[str, Any]:
    ph = sup.active_phase or ""
    up, op, name = (ph.split("/") + ["", "", ""])[:3] if ph else ("", "", "")
    done = sum(1 for p in sup.phases.values() if p.state is S.COMPLETE)
    return {"batch_id": sup.batch_id, "recipe_id": sup.recipe.id if sup.recipe else "",
            "recipe_version": sup.recipe.version if sup.recipe else 0,
            "state": sup.sm.state.value, "packml_state": sup.sm.packml_state.value,
            "unit_procedure": up, "operation": op, "phase": name,
            "phase_state": sup.phases[ph].state.value if ph in sup.phases else "",
            "progress": done / len(sup.phases) if sup.phases else 0.0, "held_reason": sup.held_reason}


def tree_snapshot(tree: Any) -> list[tuple[str, str, str, int, str]]:
    """(name, type, status, parent index, message) in depth-first order."""
    if tree is None:
        return []
    out: list[tuple[str, str, str, int, str]] = []

    def walk(node: Any, parent: int) -> None:
        idx = len(out)
        out.append((node.name, type(node).__name__, node.status.value, parent, node.feedback_message or ""))
        for c in node.children:
            walk(c, idx)

    walk(tree, -1)
    return out


def summary(sup: Supervisor) -> dict[str, Any]:
    j = sup.journal
    vhp = j.results.get("vhp") or {}
    ac = j.results.get("autoclave") or {}
    return {
        "result": "PASS" if sup.sm.state is S.COMPLETE else "FAIL",
        "batch_id": sup.batch_id, "recipe_id": sup.recipe.id if sup.recipe else "",
        "batch_state": sup.sm.state.value, "held_reason": sup.held_reason,
        "vhp": {"result": vhp.get("result"), "aeration_end_ppm": vhp.get("aeration_end_ppm"),
                "run_id": vhp.get("run_id")},
        "autoclave": {"result": ac.get("result"), "f0_min": ac.get("f0_min"), "run_id": ac.get("run_id")},
        "trips": list(j.trips), "refusals": list(j.refusals),
        "alarms": [a for a in j.alarm_log if a.get("event") in ("raised", "raised_hidden")],
        "timeline": list(j.timeline),
    }


def batches(sup: Supervisor) -> dict[str, Any]:
    """Every patient batch (COI, DIN, state, slot, phase, held reason, IMPACTED, record), the
    open-zone owner and the queue of waiting requests with why each waits (the operator's view)."""
    cell = sup.patient_cell
    if cell is None:
        return {"batches": [], "zone_owner": None, "queue": []}
    return {"batches": cell.status(), "zone_owner": cell.zone_owner(), "queue": cell.queue()}
