"""The double-ended steam autoclave's contract: its commands, the interlock signals it publishes, its own hard
interlock (like its PLC's) and its OPC UA mapping. Its configuration model is ``config.py``,
its ROS node ``node.py``; its process model is in ``sim/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...config import CellConfig
from ..catalogue import REASON, Arg, CommandSpec, command
from ..values import ATMOSPHERIC_KPA, Refusal, bool_or_none, num_or_nan, num_or_none

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


# --------------------------------------------------------------------------- hard interlock
def hard_interlock(name: str, args: dict[str, Any], v: Mapping[str, Any], cfg: CellConfig) -> Refusal:
    ac = cfg.layout.autoclave
    if name == "open_door":
        side = args["side"]
        other = "unload" if side == "load" else "load"
        if v.get("cycle_running"):
            return ("AC_CYCLE_RUNNING", f"{side} door cannot open while a cycle runs (IL-11)")
        if not v.get(f"{other}_door_closed"):
            return ("AC_OTHER_DOOR_OPEN", f"{side} door cannot open: the {other} door is open (EN 285 §4.3.2)")
        t = num_or_nan(v.get("chamber_t_c"))
        if not t < ac.door_open_max_temp_c:
            return ("AC_HOT", f"{side} door cannot open: chamber {t:.1f} C >= {ac.door_open_max_temp_c:g} C (IL-11)")
        gauge = abs(num_or_nan(v.get("chamber_p_kpa")) - ATMOSPHERIC_KPA)
        if not gauge <= ac.door_open_max_gauge_kpa:
            return ("AC_PRESSURISED", f"{side} door cannot open: chamber {gauge:.1f} kPa from atmospheric "
                    f"> {ac.door_open_max_gauge_kpa:g} kPa (IL-11)")
        if side == "unload" and not (v.get("unload_released") or v.get("unload_override")):
            return ("AC_UNLOAD_NOT_RELEASED", "clean-side door opens only after a successful sterilisation "
                    "cycle (IL-10, Annex 1 §8.50)")
    elif name == "start_program":
        for side in ("load", "unload"):
            if not v.get(f"{side}_door_gasket_ok"):
                return ("AC_DOOR_NOT_SEALED", f"{side} door is not closed, locked and gasket-sealed (IL-11)")
    return None


# --------------------------------------------------------------------------- signals
def signals(v: Mapping[str, Any], cfg: CellConfig) -> dict[str, Any]:
    p = num_or_none(v.get("chamber_p_kpa"))
    phase = v.get("phase")
    s = {
        "autoclave.cycle_active": bool_or_none(v.get("cycle_running")),
        "autoclave.last_result": ("PASS" if phase == "COMPLETE" else "FAIL" if phase == "FAILED" else "NONE")
        if isinstance(phase, str) else None,
        "autoclave.sterile_load_available": bool_or_none(v.get("unload_released")),
        "autoclave.door_load.closed": bool_or_none(v.get("load_door_closed")),
        "autoclave.door_unload.closed": bool_or_none(v.get("unload_door_closed")),
        "autoclave.gaskets_ok": (None if v.get("load_door_gasket_ok") is None or v.get("unload_door_gasket_ok") is None
                                 else bool(v.get("load_door_gasket_ok") and v.get("unload_door_gasket_ok"))),
        "autoclave.chamber_gauge_abs_kpa": None if p is None else abs(p - ATMOSPHERIC_KPA),
        "autoclave.chamber_t_c": num_or_none(v.get("chamber_t_c")),
    }
    for side in ("load", "unload"):
        st = v.get(f"{side}_door_state")
        s[f"door.autoclave_{side}.open"] = None if st is None else st == "OPEN"
        s[f"door.autoclave_{side}.locked"] = None if st is None else st in ("OPEN", "SEALED")
    return s


# --------------------------------------------------------------------------- OPC UA mapping
FUNCTIONAL_UNITS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("DoorLoad", ("load_door_",)),
    ("DoorUnload", ("unload_door_",)),
    ("Sterilizer", ("",)),
)
"""LADS functional units: (FU name, reading-key prefixes); first match wins."""
DEVICE_CLASS = "Steam autoclave (LADS Device)"
MODEL = "Emulated steam sterilizer"
