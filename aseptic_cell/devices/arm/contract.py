"""The robot arm's contract: its commands, the interlock signals it publishes, its own hard
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


# --------------------------------------------------------------------------- typed readings
@dataclass(frozen=True)
class ArmReadings:
    """What the robot controller reports for the interlocks, typed; None = missing or malformed."""

    protective_stop: bool | None
    protective_stop_reason: str | None
    drives_enabled: bool | None
    moving: bool | None
    at_park: bool | None
    at_decon: bool | None
    speed_class: str | None
    tcp_speed_m_s: float | None

    @classmethod
    def parse(cls, v: Mapping[str, Any], cfg: CellConfig) -> ArmReadings:
        return cls(bool_or_none(v.get("protective_stop")), str_or_none(v.get("protective_stop_reason")),
                   bool_or_none(v.get("drives_enabled")), bool_or_none(v.get("moving")),
                   bool_or_none(v.get("at_park")), bool_or_none(v.get("at_decon")),
                   str_or_none(v.get("speed_class")), num_or_none(v.get("tcp_speed_m_s")))


# --------------------------------------------------------------------------- hard interlock
def hard_interlock(name: str, args: dict[str, Any], r: ArmReadings, cfg: CellConfig) -> Refusal:
    if name in ("move_to_pose", "execute_trajectory", "enable_drives") and r.protective_stop is not False:
        return ("PROTECTIVE_STOP", f"protective stop active: {r.protective_stop_reason}; reset it first")
    if name in ("move_to_pose", "execute_trajectory") and r.drives_enabled is not True:
        return ("DRIVES_OFF", "drives are off (safe torque off): enable them first")
    return None


# --------------------------------------------------------------------------- signals
def signals(r: ArmReadings, cfg: CellConfig) -> dict[str, Any]:
    return {
        "arm.at_decon": r.at_decon,
        "arm.at_park": r.at_park,
        "arm.drives_enabled": r.drives_enabled,
        "arm.moving": r.moving,
        "arm.protective_stop": r.protective_stop,
        "arm.speed_class": r.speed_class,
        "arm.tcp_speed_m_s": r.tcp_speed_m_s,
    }


# --------------------------------------------------------------------------- OPC UA mapping
FUNCTIONAL_UNITS: tuple[tuple[str, tuple[str, ...]], ...] = ()
"""LADS functional units: (FU name, reading-key prefixes); first match wins."""
DEVICE_CLASS = "Robot (OPC 40010 MotionDeviceSystem)"
MODEL = "UR5e (emulated controller)"

Readings = ArmReadings
"""This kind's typed readings (the name the aggregators use)."""
