"""The VHP bio-decontamination unit's contract: its commands, the interlock signals it publishes, its own hard
interlock (like its PLC's) and its OPC UA mapping. Its configuration model is ``config.py``,
its ROS node ``node.py``; its process model is in ``sim/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...config import CellConfig
from ..catalogue import REASON, Arg, CommandSpec, command
from ..values import Refusal, bool_or_none, num_or_none

COMMANDS: tuple[CommandSpec, ...] = (
    command("start_cycle", Arg("cycle_id", "str"), Arg("operator", "str"), Arg("run_id", "str", required=False)),
    command("abort", Arg("user", "str"), Arg("reason", "str"), moves=False),
    command("refill_reservoir", Arg("solution_g", "float")),
    command("get_result", moves=False),
    command("safe_state", REASON, moves=False, description="abort an active cycle (aeration runs on)"),
)


# --------------------------------------------------------------------------- hard interlock
def hard_interlock(name: str, args: dict[str, Any], v: Mapping[str, Any], cfg: CellConfig) -> Refusal:
    if name == "start_cycle" and v.get("cycle_active"):
        return ("VHP_CYCLE_ACTIVE", "a VHP cycle is already active")
    return None


# --------------------------------------------------------------------------- signals
def signals(v: Mapping[str, Any], cfg: CellConfig) -> dict[str, Any]:
    a, b = num_or_none(v.get("h2o2_ppm")), num_or_none(v.get("h2o2_ppm_b"))
    # redundant sensors: the worse (higher) of the two counts for release
    ppm = None if a is None and b is None else max(x for x in (a, b) if x is not None)
    return {
        "vhp.cycle_active": bool_or_none(v.get("cycle_active")),
        "vhp.h2o2_ppm": ppm,
        "vhp.phase": v.get("phase") if isinstance(v.get("phase"), str) else None,
    }


# --------------------------------------------------------------------------- OPC UA mapping
FUNCTIONAL_UNITS: tuple[tuple[str, tuple[str, ...]], ...] = (("Decon", ("",)),)
"""LADS functional units: (FU name, reading-key prefixes); first match wins."""
DEVICE_CLASS = "VHP generator (LADS Device)"
MODEL = "Emulated VHP unit"
