"""``mujoco_arm``: the arm's physics in MuJoCo, behind the joint_trajectory_controller's topic
interface (``hardware: mujoco``; the same interface Gazebo's ros2_control offers).

Subscribes ``<ns>/joint_trajectory_controller/joint_trajectory`` (trajectory_msgs/JointTrajectory),
publishes ``<ns>/joint_states`` (sensor_msgs/JointState) and ``<ns>/mujoco/status`` (std_msgs/String,
JSON: physics time, steps/s, real-time factor, current contacts, contact events, tracking error).
``<ns>`` defaults to ``/arm_hw``. Physics time runs at ``time_scale`` x wall time (it lags if the
machine cannot keep up; the real-time factor is reported). Wall-clock node: not on /clock.

``publish_clock`` (default false): also publish ``/clock`` (rosgraph_msgs/Clock) from the physics
time every ``clock_period_s`` wall seconds, as Gazebo's bridge does: the node then stands in for
Gazebo in the cell's ``--arm gazebo`` mode (sim_world and every node on that clock).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np


class MujocoArm:
    def __init__(
        self,
        node: Any,
        physics: Any,
        q0: np.ndarray,
        *,
        ns: str,
        time_scale: float,
        publish_period_s: float,
        status_period_s: float = 0.1,
        publish_clock: bool = False,
        clock_period_s: float = 0.005,
    ) -> None:
        from sensor_msgs.msg import JointState
        from std_msgs.msg import String
        from trajectory_msgs.msg import JointTrajectory

        self.node, self.physics = node, physics
        self.names = list(physics.joint_names)
        self.time_scale = float(time_scale)
        self.publish_period_s, self.status_period_s = float(publish_period_s), float(status_period_s)
        physics.set_q(q0)
        self.cmd = np.asarray(q0, dtype=np.float64).copy()
        self.traj: Any = None
        self.tracking_error = 0.0
        self.max_tracking_error = 0.0
        self.trajectories = 0
        self.rejected = 0
        self.contact_steps = 0
        self.contact_events: list[dict[str, Any]] = []
        self._in_contact = False
        self._js_type, self._string = JointState, String
        self.js_pub = node.create_publisher(JointState, f"{ns}/joint_states", 10)
        self.status_pub = node.create_publisher(String, f"{ns}/mujoco/status", 10)
        node.create_subscription(
            JointTrajectory, f"{ns}/joint_trajectory_controller/joint_trajectory", self.on_trajectory, 10
        )
        self.clock_pub: Any = None
        self.clock_period_s = float(clock_period_s)
        self._next_clock = 0.0
        if publish_clock:
            from rosgraph_msgs.msg import Clock

            self._clock_type = Clock
            self.clock_pub = node.create_publisher(Clock, "/clock", 10)
        self.wall0 = time.monotonic()
        self.phys0 = physics.time
        self._next_pub = self._next_status = 0.0
        self._cpu0 = time.process_time()
        self._steps0 = physics.steps

    def on_trajectory(self, msg: Any) -> None:
        from ..physics.jtc import TrajectoryRejected, from_message

        try:
            self.traj = from_message(msg, self.names, self.physics.time, self.cmd)
        except TrajectoryRejected as exc:
            self.rejected += 1
            self.node.get_logger().error(f"trajectory rejected: {exc}")
            return
        self.trajectories += 1

    def advance(self, max_steps: int = 250) -> None:
        """Step the physics up to the scaled wall time (at most ``max_steps`` per call)."""
        p = self.physics
        dt = p.model.opt.timestep
        target = self.phys0 + (time.monotonic() - self.wall0) * self.time_scale
        n = min(int((target - p.time) / dt), max_steps)
        for _ in range(max(n, 0)):
            if self.traj is not None:
                q_ref, qd_ref, done = self.traj.sample(p.time + dt)
                self.cmd = q_ref
                p.command(q_ref, qd_ref)
                if done and self.traj.duration > 1e-6:
                    self.traj = None
            p.step(1)
            err = float(np.max(np.abs(p.q() - self.cmd)))
            self.tracking_error = err
            self.max_tracking_error = max(self.max_tracking_error, err)
            touching = p.data.ncon > 0 and bool(np.any(p.data.contact.dist < 0.0))
            if touching:
                self.contact_steps += 1
                if not self._in_contact and len(self.contact_events) < 50:
                    c = p.contacts()
                    if c:
                        self.contact_events.append(
                            {
                                "t": round(p.time, 4),
                                "link": c[0].link,
                                "other": c[0].other,
                                "depth_m": -c[0].distance,
                                "q": p.q().tolist(),
                            }
                        )
            self._in_contact = touching

    def publish(self) -> None:
        now = time.monotonic()
        if self.clock_pub is not None and now >= self._next_clock:
            self._next_clock = now + self.clock_period_s
            t = self.physics.time
            c = self._clock_type()
            c.clock.sec = int(t)
            c.clock.nanosec = int((t - int(t)) * 1e9)
            self.clock_pub.publish(c)
        if now >= self._next_pub:
            self._next_pub = now + self.publish_period_s
            js = self._js_type()
            t = self.physics.time  # physics time, as Gazebo's joint_state_broadcaster stamps sim time
            js.header.stamp.sec = int(t)
            js.header.stamp.nanosec = int((t - int(t)) * 1e9)
            js.name = list(self.names)
            js.position = [float(v) for v in self.physics.q()]
            js.velocity = [float(v) for v in self.physics.qd()]
            self.js_pub.publish(js)
        if now >= self._next_status:
            self._next_status = now + self.status_period_s
            self.status_pub.publish(self._string(data=json.dumps(self.status())))

    def status(self) -> dict[str, Any]:
        p = self.physics
        wall = max(time.monotonic() - self.wall0, 1e-9)
        cpu = max(time.process_time() - self._cpu0, 1e-9)
        return {
            "t": p.time,
            "steps": p.steps,
            "steps_per_cpu_s": (p.steps - self._steps0) / cpu,
            "real_time_factor": (p.time - self.phys0) / wall,
            "time_scale": self.time_scale,
            "trajectory_active": self.traj is not None,
            "trajectories": self.trajectories,
            "rejected": self.rejected,
            "tracking_error_rad": self.tracking_error,
            "max_tracking_error_rad": self.max_tracking_error,
            "contacts": [c.__dict__ for c in p.contacts()],
            "contact_steps": self.contact_steps,
            "contact_events": self.contact_events,
        }


def main(argv: list[str] | None = None) -> int:
    import rclpy

    from ..config import ConfigError, default_config_dir, load_config
    from ..physics.mujoco_arm import DEFAULT_KP, DEFAULT_KV, DEFAULT_TIMESTEP_S, ArmPhysics
    from .rosutil import init_ros, shutdown_requested

    init_ros(argv)  # SIGTERM/SIGINT set the shutdown flag
    node = rclpy.create_node("mujoco_arm")
    try:
        config_dir = node.declare_parameter("config_dir", "").value or str(default_config_dir())
        ns = str(node.declare_parameter("namespace", "/arm_hw").value).rstrip("/")
        time_scale = float(node.declare_parameter("time_scale", 1.0).value)
        period = float(node.declare_parameter("publish_period_s", 0.01).value)
        urdf_path = str(node.declare_parameter("urdf_path", "").value)
        initial_pose = str(node.declare_parameter("initial_pose", "park").value)
        kp = float(node.declare_parameter("kp", DEFAULT_KP).value)
        kv = float(node.declare_parameter("kv", DEFAULT_KV).value)
        step_s = float(node.declare_parameter("timestep_s", DEFAULT_TIMESTEP_S).value)
        publish_clock = bool(node.declare_parameter("publish_clock", False).value)
        try:
            cfg = load_config(config_dir)
        except ConfigError as exc:
            node.get_logger().error(f"invalid configuration in {config_dir}:\n{exc}")
            return 2
        if not (time_scale > 0 and period > 0) or initial_pose not in cfg.arm.poses:
            node.get_logger().error(
                "time_scale and publish_period_s must be > 0 and initial_pose a configured pose"
            )
            return 2
        urdf = open(urdf_path, encoding="utf-8").read() if urdf_path else None
        physics = ArmPhysics(cfg.arm, cfg.geometry, urdf, kp=kp, kv=kv, timestep_s=step_s)
        arm = MujocoArm(
            node,
            physics,
            np.array(cfg.arm.poses[initial_pose]),
            ns=ns,
            time_scale=time_scale,
            publish_period_s=period,
            publish_clock=publish_clock,
        )
        node.get_logger().info(
            f"MuJoCo arm: {physics.model.npair} contact pairs, step {step_s:g} s, "
            f"time scale {time_scale:g}; interface under {ns or '/'}"
            + ("; publishing /clock (Gazebo stand-in)" if publish_clock else "")
        )
        while not shutdown_requested() and rclpy.ok():
            rclpy.spin_once(node, timeout_sec=0.001)
            arm.advance()
            arm.publish()
        return 0
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    sys.exit(main())
