"""The arm on a physics engine in the cell's graph (``cellctl demo --arm ENGINE``, ``cellctl run --arm``):
the arm node's ``hardware`` becomes the engine, and for MuJoCo the ``mujoco_arm`` process is added
before the device nodes. ``sim_world`` keeps modelling the robot controller and the other devices.

Gazebo (``--arm gazebo``): Gazebo is started outside the cell's graph (``ros2 launch aseptic_cell
gazebo.launch.py`` on a ROS machine) and owns ``/clock``; ``sim_world`` gets ``clock_source: ros``
(it publishes no clock and steps the other devices on Gazebo's ROS time) and every node keeps
``use_sim_time``. ``gazebo_standin=True`` adds the MuJoCo node publishing ``/clock`` in Gazebo's place
(the same topics as Gazebo's joint_trajectory_controller and bridge): the mode can be run where no
Gazebo is installed."""

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


def mujoco_arm_spec(config_dir: str, *, time_scale: float, publish_clock: bool = False) -> Any:
    """The ``mujoco_arm`` process (``publish_clock``: as Gazebo's stand-in, owning ``/clock``)."""
    from ..nodes.graph import KIND_SIM, NodeSpec

    return NodeSpec(
        "mujoco_arm",
        "aseptic_cell.nodes.mujoco_arm",
        {"config_dir": str(config_dir), "time_scale": float(time_scale), "publish_clock": publish_clock},
        (),
        False,
        KIND_SIM,
    )


def with_arm_engine(specs: list[Any], config_dir: str, engine: str, *, speed: float,
                    gazebo_standin: bool = False) -> list[Any]:
    """``specs`` with the arm on ``engine``. Gazebo is started by launch/gazebo.launch.py, not here
    (unless ``gazebo_standin``: the MuJoCo node in its place, publishing /clock at ``speed``)."""
    from ..nodes.graph import SIM_WORLD

    if engine not in ARM_ENGINES:
        raise ValueError(f"arm engine must be one of {ARM_ENGINES}, got {engine!r}")
    out = [replace(s, params={**s.params, "hardware": engine}) if s.name == "arm" else s for s in specs]
    node = None
    if engine == "gazebo":  # Gazebo owns /clock: sim_world follows it
        out = [replace(s, params={**s.params, "clock_source": "ros"}) if s.name == SIM_WORLD else s for s in out]
        if gazebo_standin:
            node = mujoco_arm_spec(config_dir, time_scale=physics_time_scale(speed), publish_clock=True)
    elif engine == "mujoco":
        node = mujoco_arm_spec(config_dir, time_scale=physics_time_scale(speed))
    if node is not None:
        first_device = next((i for i, s in enumerate(out) if s.lifecycle), len(out))
        out.insert(first_device, node)
    return out
