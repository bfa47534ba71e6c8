"""The double-ended steam autoclave's contract: its commands, the interlock signals it publishes, its own hard
interlock (like its PLC's) and its OPC UA mapping. Its configuration model is ``config.py``,
its ROS node ``node.py``; its process model is in ``sim/``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...config import CellConfig
from ..catalogue import REASON, Arg, CommandSpec, command
from ..values import ATMOSPHERIC_KPA, Refusal, bool_or_none, num_or_none, str_or_none

COMMANDS: tuple[CommandSpec, ...] = (
    command("open_door", Arg("side", "str", choices=("load", "unload"))),
    command("close_door", Arg("side", "str", choices=("load", "unload"))),
    command("start_program", Arg("program_id", "str"), Arg("load_id", "str", required=False),
       Arg("operator", "str", required=False), Arg("run_id", "str", required=False)),
    command("abort", Arg("user", "str"), Arg("reason", "str"), moves=False),
    command("override_unload", Arg("user", "str"), Arg("reason", "str")),
    command("get_result", moves=False),
    command("safe_state", REASON, moves=False, description="abort an active program (chamber vented)"),
)


# --------------------------------------------------------------------------- typed readings
@dataclass(frozen=True)
class AutoclaveDoor:
    closed: bool | None
    gasket_ok: bool | None
    state: str | None
    """``OPEN``, ``SEALED`` (end positions, locked there) or a travelling state."""


@dataclass(frozen=True)
class AutoclaveReadings:
    """What the steriliser's controller reports, typed; None = missing or malformed (unknown)."""

    cycle_running: bool | None
    phase: str | None
    chamber_t_c: float | None
    chamber_p_kpa: float | None
    unload_released: bool | None
    unload_override: bool | None
    doors: dict[str, AutoclaveDoor]

    @classmethod
    def parse(cls, v: Mapping[str, Any], cfg: CellConfig) -> AutoclaveReadings:
        return cls(
            cycle_running=bool_or_none(v.get("cycle_running")),
            phase=str_or_none(v.get("phase")),
            chamber_t_c=num_or_none(v.get("chamber_t_c")),
            chamber_p_kpa=num_or_none(v.get("chamber_p_kpa")),
            unload_released=bool_or_none(v.get("unload_released")),
            unload_override=bool_or_none(v.get("unload_override")),
            doors={side: AutoclaveDoor(bool_or_none(v.get(f"{side}_door_closed")),
                                       bool_or_none(v.get(f"{side}_door_gasket_ok")),
                                       str_or_none(v.get(f"{side}_door_state"))) for side in ("load", "unload")},
        )


# --------------------------------------------------------------------------- hard interlock
def hard_interlock(name: str, args: dict[str, Any], r: AutoclaveReadings, cfg: CellConfig) -> Refusal:
    """Unknown is unsafe: a door opens only on readings that show it may."""
    ac = cfg.layout.autoclave
    if name == "open_door":
        side = args["side"]
        other = "unload" if side == "load" else "load"
        if r.cycle_running is not False:
            return ("AC_CYCLE_RUNNING", f"{side} door cannot open while a cycle runs (IL-11)")
        if r.doors[other].closed is not True:
            return ("AC_OTHER_DOOR_OPEN", f"{side} door cannot open: the {other} door is open (EN 285 §4.3.2)")
        t = math.nan if r.chamber_t_c is None else r.chamber_t_c
        if not t < ac.door_open_max_temp_c:
            return ("AC_HOT", f"{side} door cannot open: chamber {t:.1f} C >= {ac.door_open_max_temp_c:g} C (IL-11)")
        gauge = math.nan if r.chamber_p_kpa is None else abs(r.chamber_p_kpa - ATMOSPHERIC_KPA)
        if not gauge <= ac.door_open_max_gauge_kpa:
            return ("AC_PRESSURISED", f"{side} door cannot open: chamber {gauge:.1f} kPa from atmospheric "
                    f"> {ac.door_open_max_gauge_kpa:g} kPa (IL-11)")
        if side == "unload" and not (r.unload_released is True or r.unload_override is True):
            return ("AC_UNLOAD_NOT_RELEASED", "clean-side door opens only after a successful sterilisation "
                    "cycle (IL-10, Annex 1 §8.50)")
    elif name == "start_program":
        for side in ("load", "unload"):
            if r.doors[side].gasket_ok is not True:
                return ("AC_DOOR_NOT_SEALED", f"{side} door is not closed, locked and gasket-sealed (IL-11)")
    return None


# --------------------------------------------------------------------------- signals
def signals(r: AutoclaveReadings, cfg: CellConfig) -> dict[str, Any]:
    p, phase = r.chamber_p_kpa, r.phase
    load, unload = r.doors["load"], r.doors["unload"]
    s: dict[str, Any] = {
        "autoclave.cycle_active": r.cycle_running,
        "autoclave.last_result": (None if phase is None else
                                  "PASS" if phase == "COMPLETE" else "FAIL" if phase == "FAILED" else "NONE"),
        "autoclave.sterile_load_available": r.unload_released,
        "autoclave.door_load.closed": load.closed,
        "autoclave.door_unload.closed": unload.closed,
        "autoclave.gaskets_ok": (None if load.gasket_ok is None or unload.gasket_ok is None
                                 else load.gasket_ok and unload.gasket_ok),
        "autoclave.chamber_gauge_abs_kpa": None if p is None else abs(p - ATMOSPHERIC_KPA),
        "autoclave.chamber_t_c": r.chamber_t_c,
    }
    for side, door in r.doors.items():
        s[f"door.autoclave_{side}.open"] = None if door.state is None else door.state == "OPEN"
        s[f"door.autoclave_{side}.locked"] = None if door.state is None else door.state in ("OPEN", "SEALED")
    return s


# --------------------------------------------------------------------------- OPC UA mapping
FUNCTIONAL_UNITS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("DoorLoad", ("load_door_",)),
    ("DoorUnload", ("unload_door_",)),
    ("Sterilizer", ("",)),
)
"""LADS functional units: (FU name, reading-key prefixes); first match wins."""
LADS_PROGRAMS: dict[str, Any] = {
    "unit": "Sterilizer",
    "templates": "autoclave_programs",  # CellConfig attribute (.programs: id, description)
    "start": "start_program",
    "template_arg": "program_id",
    "operator_arg": "operator",
    "run_id_arg": "run_id",
    "property_args": {"LoadId": "load_id"},
    "abort": "abort",                   # the chamber vents on (Stopping/Aborting)
    "active": "cycle_running",
}
"""LADS program manager and FunctionalUnitStateMachine of the ``unit`` (aseptic_cell/opcua/lads.py)."""
DEVICE_CLASS = "Steam autoclave (LADS Device)"
MODEL = "Emulated steam sterilizer"

Readings = AutoclaveReadings
"""This kind's typed readings (the name the aggregators use)."""
