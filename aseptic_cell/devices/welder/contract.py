"""The sterile tube welder's contract. Its hard interlock never connects two COIs (SEG-03,
COI-10): a weld of two containers of different COI is refused before the blades move."""

from __future__ import annotations

from typing import Any

from ..catalogue import REASON, Arg, CommandSpec, command
from ..process_equipment import RunReadings
from ..values import Refusal

COMMANDS: tuple[CommandSpec, ...] = (
    command("weld", Arg("container_a", "str"), Arg("coi_a", "str"), Arg("container_b", "str"), Arg("coi_b", "str"),
            Arg("run_id", "str", required=False), description="sterile-weld the tubes of two containers"),
    command("get_result", moves=False),
    command("safe_state", REASON, moves=False, description="stop a weld in progress (result FAIL)"),
)


def hard_interlock(name: str, args: dict[str, Any], r: RunReadings, cfg: Any) -> Refusal:
    if name == "weld":
        if args["coi_a"] != args["coi_b"]:
            return ("WELD_COI_MISMATCH", f"never connect two COIs (SEG-03): {args['container_a']} is of COI "
                                         f"{args['coi_a']}, {args['container_b']} of COI {args['coi_b']}")
        if r.busy is not False:
            return ("WELDER_BUSY", "the welder is running (or does not say it is idle)")
    return None


def signals(r: RunReadings, cfg: Any) -> dict[str, Any]:
    return {"welder.busy": r.busy, "welder.phase": r.phase, "welder.last_result": r.last_result,
            "welder.last_score": r.last_score, "welder.misaligned": "misalignment" in r.faults}


FUNCTIONAL_UNITS: tuple[tuple[str, tuple[str, ...]], ...] = (("Weld", ("",)),)
DEVICE_CLASS = "Sterile tube welder (LADS Device)"
MODEL = "Emulated tube welder"

Readings = RunReadings
