"""The centrifuge's contract: ``run(program, container_id, load_g, counterweight_g)``. Its hard
interlock refuses a declared load/counterweight difference over the rotor's tolerance; the
controller also trips a run whose measured imbalance exceeds it (the ``imbalance`` fault)."""

from __future__ import annotations

from typing import Any

from ..catalogue import REASON, Arg, CommandSpec, command
from ..process_equipment import RunReadings, equipment
from ..values import Refusal, bool_or_none, num_or_none

COMMANDS: tuple[CommandSpec, ...] = (
    command("run", Arg("program", "str"), Arg("container_id", "str"), Arg("load_g", "float"),
            Arg("counterweight_g", "float"), Arg("run_id", "str", required=False),
            description="spin one container against its counterweight with a configured program"),
    command("get_result", moves=False),
    command("safe_state", REASON, moves=False, description="stop the rotor (result FAIL)"),
)


def hard_interlock(name: str, args: dict[str, Any], r: RunReadings, cfg: Any) -> Refusal:
    if name == "run":
        c = equipment(cfg).centrifuge
        load, cw = args["load_g"], args["counterweight_g"]
        if abs(load - cw) > c.imbalance_tolerance_g:
            return ("CFG_IMBALANCE", f"load {load:g} g vs counterweight {cw:g} g: difference "
                                     f"{abs(load - cw):g} g over the tolerance {c.imbalance_tolerance_g:g} g")
        if r.busy is not False:
            return ("CENTRIFUGE_BUSY", "the centrifuge is running (or does not say it is idle)")
    return None


def signals(r: RunReadings, cfg: Any) -> dict[str, Any]:
    v = r.values
    return {"centrifuge.busy": r.busy, "centrifuge.phase": r.phase, "centrifuge.last_result": r.last_result,
            "centrifuge.rcf_g": num_or_none(v.get("rcf_g")), "centrifuge.imbalance": bool_or_none(v.get("imbalance")),
            "centrifuge.lid_locked": bool_or_none(v.get("lid_locked"))}


FUNCTIONAL_UNITS: tuple[tuple[str, tuple[str, ...]], ...] = (("Rotor", ("",)),)
DEVICE_CLASS = "Centrifuge (LADS Device)"
MODEL = "Emulated centrifuge"

Readings = RunReadings
