"""The tube sealer's contract: ``seal(container_id)`` with a seal quality result."""

from __future__ import annotations

from typing import Any

from ..catalogue import REASON, Arg, CommandSpec, command
from ..process_equipment import RunReadings
from ..values import Refusal

COMMANDS: tuple[CommandSpec, ...] = (
    command("seal", Arg("container_id", "str"), Arg("run_id", "str", required=False),
            description="heat-seal the container's tube"),
    command("get_result", moves=False),
    command("safe_state", REASON, moves=False, description="stop a seal in progress (result FAIL)"),
)


def hard_interlock(name: str, args: dict[str, Any], r: RunReadings, cfg: Any) -> Refusal:
    if name == "seal" and r.busy is not False:
        return ("SEALER_BUSY", "the sealer is running (or does not say it is idle)")
    return None


def signals(r: RunReadings, cfg: Any) -> dict[str, Any]:
    return {"sealer.busy": r.busy, "sealer.phase": r.phase, "sealer.last_result": r.last_result,
            "sealer.last_score": r.last_score}


FUNCTIONAL_UNITS: tuple[tuple[str, tuple[str, ...]], ...] = (("Seal", ("",)),)
DEVICE_CLASS = "Tube sealer (LADS Device)"
MODEL = "Emulated tube sealer"

Readings = RunReadings
