"""Checks of the arm's trajectory-controller interface, shared by the pytest tests here (against
the MuJoCo node) and the launch_testing files beside the launch files (against Gazebo or the
MuJoCo node on a ROS machine). Each check returns a list of problems (empty = passed), so either
test framework can assert on it and print the reasons."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

NAMESPACE = "/arm_hw"
JOINT_STATES = f"{NAMESPACE}/joint_states"
TRAJECTORY = f"{NAMESPACE}/joint_trajectory_controller/joint_trajectory"
EXPECTED_TYPES = {JOINT_STATES: "sensor_msgs/msg/JointState", TRAJECTORY: "trajectory_msgs/msg/JointTrajectory"}


def check_interface_types(topics: list[tuple[str, list[str]]]) -> list[str]:
    """The graph offers the controller's topics with their types (``get_topic_names_and_types``)."""
    have = dict(topics)
    return [
        f"{t}: expected {ty}, graph has {have.get(t)}" for t, ty in EXPECTED_TYPES.items() if ty not in have.get(t, [])
    ]


def check_joint_state(msg: Any, arm: Any) -> list[str]:
    """Names of the configured joints, finite positions within the joint limits."""
    names = [j.name for j in arm.joints]
    problems = []
    if sorted(msg.name) != sorted(names):
        return [f"joint names {list(msg.name)} != configured {names}"]
    for j in arm.joints:
        v = msg.position[list(msg.name).index(j.name)]
        if not math.isfinite(v) or not j.min <= v <= j.max:
            problems.append(f"{j.name} = {v} outside [{j.min}, {j.max}]")
    return problems


def check_arrival(msg: Any, arm: Any, goal: list[float], tolerance: float) -> list[str]:
    names = list(msg.name)
    q = np.array([msg.position[names.index(j.name)] for j in arm.joints])
    err = float(np.max(np.abs(q - np.asarray(goal))))
    return [] if err <= tolerance else [f"arm {err:.4f} rad from the goal (tolerance {tolerance} rad)"]


class JtcProbe:
    """A subscriber to the joint states and a publisher of trajectories on an rclpy node."""

    def __init__(self, node: Any) -> None:
        from sensor_msgs.msg import JointState
        from trajectory_msgs.msg import JointTrajectory

        self.node = node
        self.latest: Any = None
        self.count = 0
        node.create_subscription(JointState, JOINT_STATES, self._on_js, 10)
        self.pub = node.create_publisher(JointTrajectory, TRAJECTORY, 10)

    def _on_js(self, msg: Any) -> None:
        self.latest, self.count = msg, self.count + 1

    def wait(self, spin: Any, predicate: Any, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            spin(0.05)
            if predicate():
                return True
        return False

    def send(self, arm: Any, goal: list[float], duration_s: float) -> None:
        from builtin_interfaces.msg import Duration
        from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

        sec = int(duration_s)
        msg = JointTrajectory(
            joint_names=[j.name for j in arm.joints],
            points=[
                JointTrajectoryPoint(
                    positions=[float(v) for v in goal],
                    time_from_start=Duration(sec=sec, nanosec=int((duration_s - sec) * 1e9)),
                )
            ],
        )
        self.pub.publish(msg)


def run_interface_checks(
    node: Any, spin: Any, arm: Any, *, goal_pose: str = "decon", duration_s: float = 2.0, settle_s: float = 30.0
) -> list[str]:
    """The whole sequence: topics and types, a valid joint state, a move to ``goal_pose`` arrives."""
    probe = JtcProbe(node)
    if not probe.wait(spin, lambda: probe.count > 0 and probe.pub.get_subscription_count() > 0, 30.0):
        return [f"no joint states on {JOINT_STATES} or no subscriber on {TRAJECTORY} within 30 s"]
    problems = check_interface_types(node.get_topic_names_and_types())
    problems += check_joint_state(probe.latest, arm)
    goal = list(arm.poses[goal_pose])
    probe.send(arm, goal, duration_s)
    tol = float(arm.pose_tolerance_rad)
    probe.wait(spin, lambda: not check_arrival(probe.latest, arm, goal, tol), duration_s + settle_s)
    problems += check_arrival(probe.latest, arm, goal, tol)
    return problems
