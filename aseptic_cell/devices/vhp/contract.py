"""The VHP bio-decontamination unit's contract: its commands, the interlock signals it publishes, its own hard
interlock (like its PLC's) and its OPC UA mapping. Its configuration model is ``config.py``,
its ROS node ``node.py``; its process model is in ``sim/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...config import CellConfig
from ..catalogue import REASON, Arg, CommandSpec, command
from ..values import Refusal, bool_or_none, num_or_none, str_or_none

COMMANDS: tuple[CommandSpec, ...] = (
    command("start_cycle", Arg("cycle_id", "str"), Arg("operator", "str"), Arg("run_id", "str", required=False)),
    command("abort", Arg("user", "str"), Arg("reason", "str"), moves=False),
    command("refill_reservoir", Arg("solution_g", "float")),
    command("get_result", moves=False),
    command("safe_state", REASON, moves=False, description="abort an active cycle (aeration runs on)"),
)


# --------------------------------------------------------------------------- typed readings
@dataclass(frozen=True)
class VhpReadings:
    """What the VHP unit's controller reports, typed; None = missing or malformed (unknown)."""

    cycle_active: bool | None
    phase: str | None
    h2o2_ppm: float | None
    h2o2_ppm_b: float | None
    """The redundant H2O2 sensor."""
    h2o2_residual_ppm: float | None = None
    """The low-range residual sensor (0..``residual_sensor_range_ppm``): the release sensor."""
    residual_range_ppm: float = 10.0
    residual_fault: bool = False
    """the unit has a residual sensor but it gives no valid reading: the low concentration is unknown"""

    @classmethod
    def parse(cls, v: Mapping[str, Any], cfg: CellConfig) -> VhpReadings:
        return cls(bool_or_none(v.get("cycle_active")), str_or_none(v.get("phase")),
                   num_or_none(v.get("h2o2_ppm")), num_or_none(v.get("h2o2_ppm_b")),
                   num_or_none(v.get("h2o2_residual_ppm")), cfg.layout.vhp_unit.residual_sensor_range_ppm,
                   "h2o2_residual_ppm" in v and num_or_none(v.get("h2o2_residual_ppm")) is None)


# --------------------------------------------------------------------------- hard interlock
def hard_interlock(name: str, args: dict[str, Any], r: VhpReadings, cfg: CellConfig) -> Refusal:
    if name == "start_cycle" and r.cycle_active is not False:
        return ("VHP_CYCLE_ACTIVE", "a VHP cycle is already active (or the unit does not say it is idle)")
    return None


# --------------------------------------------------------------------------- signals
def signals(r: VhpReadings, cfg: CellConfig) -> dict[str, Any]:
    a, b, res = r.h2o2_ppm, r.h2o2_ppm_b, r.h2o2_residual_ppm
    # the 0-2000 ppm process sensors cannot decide 1 ppm: below its full scale the low-range
    # residual sensor decides; at or over it (or without it) the worse of the redundant process
    # sensors counts
    if r.residual_fault:
        ppm: float | None = None  # unknown denies (IL-08)
    elif res is not None and 0.0 <= res < r.residual_range_ppm:
        ppm = res
    else:
        ppm = None if a is None and b is None else max(x for x in (a, b) if x is not None)
    return {"vhp.cycle_active": r.cycle_active, "vhp.h2o2_ppm": ppm, "vhp.phase": r.phase}


# --------------------------------------------------------------------------- OPC UA mapping
FUNCTIONAL_UNITS: tuple[tuple[str, tuple[str, ...]], ...] = (("Decon", ("",)),)
"""LADS functional units: (FU name, reading-key prefixes); first match wins."""
LADS_PROGRAMS: dict[str, Any] = {
    "unit": "Decon",                 # the functional unit that runs the programs
    "templates": "vhp_cycles",       # CellConfig attribute holding them (.cycles: id, version, description)
    "start": "start_cycle",          # LADS StartProgram/Start -> this command
    "template_arg": "cycle_id",
    "operator_arg": "operator",
    "run_id_arg": "run_id",
    "property_args": {},             # LADS Properties key -> further command argument
    "abort": "abort",                # LADS Stop/Abort -> this command (aeration runs on: Stopping/Aborting)
    "active": "cycle_active",        # reading: a program runs
}
"""LADS program manager and FunctionalUnitStateMachine of the ``unit`` (aseptic_cell/opcua/lads.py)."""
DEVICE_CLASS = "VHP generator (LADS Device)"
MODEL = "Emulated VHP unit"

Readings = VhpReadings
"""This kind's typed readings (the name the aggregators use)."""
