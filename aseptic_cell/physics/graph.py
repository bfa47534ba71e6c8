"""The arm on a physics engine in the cell's graph (``cellctl demo --arm mujoco``, ``cellctl run --arm``):
the arm node's ``hardware`` becomes the engine, and for MuJoCo the ``mujoco_arm`` process is added
before the device nodes. ``sim_world`` keeps modelling the robot controller and the other devices."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

ARM_ENGINES = ("mujoco", "gazebo")
MAX_TIME_SCALE = 10.0
"""Physics time per wall second when the sim runs faster (MuJoCo here: ~60-90k steps per CPU-s at
1 ms with the per-step checks; 10x takes about a quarter of a core and leaves the rest to the graph)."""


def physics_time_scale(speed: float) -> float:
    return MAX_TIME_SCALE if not math.isfinite(speed) or speed <= 0 else min(float(speed), MAX_TIME_SCALE)


def with_arm_engine(specs: list[Any], config_dir: str, engine: str, *, speed: float) -> list[Any]:
    """``specs`` with the arm on ``engine``. Gazebo is started by launch/gazebo.launch.py, not here."""
    from ..nodes.graph import KIND_SIM, NodeSpec

    if engine not in ARM_ENGINES:
        raise ValueError(f"arm engine must be one of {ARM_ENGINES}, got {engine!r}")
    out = [replace(s, params={**s.params, "hardware": engine}) if s.name == "arm" else s for s in specs]
    if engine == "mujoco":
        node = NodeSpec(
            "mujoco_arm",
            "aseptic_cell.nodes.mujoco_arm",
            {"config_dir": str(config_dir), "time_scale": physics_time_scale(speed)},
            (),
            False,
            KIND_SIM,
        )
        first_device = next((i for i, s in enumerate(out) if s.lifecycle), len(out))
        out.insert(first_device, node)
    return out
