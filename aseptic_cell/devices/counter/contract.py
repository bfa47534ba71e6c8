"""The cell counter's contract: ``count(sample_id)`` → viable cells/mL and viability %."""

from __future__ import annotations

from typing import Any

from ..catalogue import REASON, Arg, CommandSpec, command
from ..process_equipment import RunReadings
from ..values import Refusal, num_or_none

COMMANDS: tuple[CommandSpec, ...] = (
    command("count", Arg("sample_id", "str"), Arg("run_id", "str", required=False),
            description="count a sample: viable cells/mL, total cells/mL, viability %"),
    command("get_result", moves=False),
    command("safe_state", REASON, moves=False, description="stop a count in progress (result FAIL)"),
)


def hard_interlock(name: str, args: dict[str, Any], r: RunReadings, cfg: Any) -> Refusal:
    if name == "count" and r.busy is not False:
        return ("COUNTER_BUSY", "the counter is running (or does not say it is idle)")
    return None


def signals(r: RunReadings, cfg: Any) -> dict[str, Any]:
    v = r.values
    return {"counter.busy": r.busy, "counter.phase": r.phase, "counter.last_result": r.last_result,
            "counter.last_viable_per_ml": num_or_none(v.get("last_viable_per_ml")),
            "counter.last_viability_pct": num_or_none(v.get("last_viability_pct"))}


FUNCTIONAL_UNITS: tuple[tuple[str, tuple[str, ...]], ...] = (("Count", ("",)),)
DEVICE_CLASS = "Cell counter (LADS Device)"
MODEL = "Emulated cell counter"

Readings = RunReadings
