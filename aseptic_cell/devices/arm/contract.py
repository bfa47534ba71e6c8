"""The robot arm's contract: its commands, the interlock signals it publishes, its own hard
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
    command("enable_drives"),
    command("disable_drives", moves=False),
    command("move_to_pose", Arg("pose", "str"), Arg("duration_s", "float", required=False),
       Arg("speed_class", "str", required=False, choices=("near_product", "transit"))),
    command("execute_trajectory", Arg("q", "matrix"), Arg("dt", "float"),
       Arg("speed_class", "str", required=False, choices=("near_product", "transit"))),
    command("protective_stop", REASON, moves=False),
    command("reset_protective_stop", moves=False),
    command("set_mode", Arg("mode", "str", choices=(
        "MANUAL_REDUCED_SPEED", "MANUAL_HIGH_SPEED", "AUTOMATIC", "AUTOMATIC_EXTERNAL"))),
    command("safe_state", REASON, moves=False, description="protective stop"),
)


# --------------------------------------------------------------------------- hard interlock
def hard_interlock(name: str, args: dict[str, Any], v: Mapping[str, Any], cfg: CellConfig) -> Refusal:
    if name in ("move_to_pose", "execute_trajectory", "enable_drives") and v.get("protective_stop"):
        return ("PROTECTIVE_STOP", f"protective stop active: {v.get('protective_stop_reason')}; reset it first")
    if name in ("move_to_pose", "execute_trajectory") and not v.get("drives_enabled"):
        return ("DRIVES_OFF", "drives are off (safe torque off): enable them first")
    return None


# --------------------------------------------------------------------------- signals
def signals(v: Mapping[str, Any], cfg: CellConfig) -> dict[str, Any]:
    return {
        "arm.at_decon": bool_or_none(v.get("at_decon")),
        "arm.at_park": bool_or_none(v.get("at_park")),
        "arm.drives_enabled": bool_or_none(v.get("drives_enabled")),
        "arm.moving": bool_or_none(v.get("moving")),
        "arm.protective_stop": bool_or_none(v.get("protective_stop")),
        "arm.speed_class": v.get("speed_class") if isinstance(v.get("speed_class"), str) else None,
        "arm.tcp_speed_m_s": num_or_none(v.get("tcp_speed_m_s")),
    }


# --------------------------------------------------------------------------- OPC UA mapping
FUNCTIONAL_UNITS: tuple[tuple[str, tuple[str, ...]], ...] = ()
"""LADS functional units: (FU name, reading-key prefixes); first match wins."""
DEVICE_CLASS = "Robot (OPC 40010 MotionDeviceSystem)"
MODEL = "UR5e (emulated controller)"
