"""Arm backend for ``hardware: mujoco`` and ``hardware: gazebo``: the arm's motion is executed by a
physics engine behind the joint_trajectory_controller's topic interface.

* Motion: an accepted trajectory is published on ``<ns>/joint_trajectory_controller/joint_trajectory``
  (trajectory_msgs/JointTrajectory; control_msgs' action is not among the ROS wheels) and its
  execution is confirmed from ``<ns>/joint_states``: the arm is *moving* until the physics clock
  (the joint states' stamps) has passed the trajectory's end and the arm has settled at the goal.
  ``<ns>`` is ``/arm_hw`` (the cell's own ``/joint_states`` stays the arm node's).
* The robot controller's safety layer (drives / safe torque off, protective stop, operational mode,
  faults) stays the cell's controller model in ``sim_world``: every command goes there first, and
  a trajectory reaches the physics only once the controller accepted it. A protective stop or
  drives off holds the physics arm where it is.
* Readings are the controller model's, with the measured joint positions and velocities, TCP and
  the pose flags from the physics, plus ``physics.*`` figures (tracking error, contacts, real-time
  factor; the MuJoCo node's ``<ns>/mujoco/status``). Silence on ``<ns>/joint_states`` makes the
  readings stale, so the arm node latches as for any lost connection.

The arm node's own motion check still runs before any command reaches this backend.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import uuid
from typing import Any

import numpy as np

from .backend import BackendError, CommandOutcome, Readings

NAMESPACE = "/arm_hw"
SETTLED_VELOCITY_RAD_S = 0.05
"""Joint speed below which a finished trajectory counts as settled [M]."""


def dh_frames(arm: Any, q: np.ndarray) -> list[np.ndarray]:
    """Frames 0..6 (standard DH, T = Rz(theta) Tz(d) Tx(a) Rx(alpha)) in the isolator frame."""
    from ..assets.numbers import rpy_matrix

    t = np.eye(4)
    t[:3, :3], t[:3, 3] = rpy_matrix(arm.base.rpy), arm.base.xyz
    out = [t]
    for th, row in zip(q, arm.dh, strict=True):
        ct, st, ca, sa = math.cos(th), math.sin(th), math.cos(row.alpha), math.sin(row.alpha)
        t = t @ np.array(
            [
                [ct, -st * ca, st * sa, row.a * ct],
                [st, ct * ca, -ct * sa, row.a * st],
                [0.0, sa, ca, row.d],
                [0.0, 0.0, 0.0, 1.0],
            ]
        )
        out.append(t)
    return out


def _fk_tcp(arm: Any, q: np.ndarray) -> np.ndarray:
    """Flange position in the isolator frame."""
    return dh_frames(arm, q)[-1][:3, 3].copy()


class JtcArmBackend:
    """See the module docstring. ``controller`` is the backend of the controller model
    (default: the ``sim_world`` arm through :class:`~.sim_backend.SimBackend`)."""

    def __init__(
        self,
        *,
        device_id: str,
        kind: str,
        engine: str,
        config_dir: str | None = None,
        namespace: str = NAMESPACE,
        domain_id: int | None = None,
        controller: Any = None,
    ) -> None:
        from ..config import default_config_dir, load_config

        if kind != "arm":
            raise ValueError(f"hardware {engine!r} is for the arm only, not {kind!r}")
        self.device_id, self.kind, self.engine = device_id, kind, engine
        cfg_dir = config_dir or os.environ.get("ASEPTIC_CELL_CONFIG_DIR") or str(default_config_dir())
        self.arm = load_config(cfg_dir).arm
        self.names = [j.name for j in self.arm.joints]
        self.ns = namespace.rstrip("/")
        self._domain_id = domain_id
        if controller is None:
            from .sim_backend import SimBackend

            controller = SimBackend(device_id=device_id, kind=kind, domain_id=domain_id)
        self.controller = controller
        self._lock = threading.Lock()
        self._js: tuple[np.ndarray, np.ndarray, float, float] | None = None  # q, qd, stamp, wall
        self._status: dict[str, Any] = {}
        self._goal: np.ndarray | None = None
        self._t_end = 0.0  # physics time the trajectory ends
        self._duration = 0.0
        self._t_start = 0.0
        self._holding = False
        self._ros: Any = None
        self._pub: Any = None

    # ------------------------------------------------------------------ lifecycle
    def connect(self, timeout_s: float) -> None:
        from sensor_msgs.msg import JointState
        from std_msgs.msg import String
        from trajectory_msgs.msg import JointTrajectory

        from ..nodes.background import BackgroundRos

        if self._ros is not None:
            return
        t0 = time.monotonic()
        self.controller.connect(timeout_s)
        self._ros = BackgroundRos(f"jtc_driver_{self.device_id.lower()}_{uuid.uuid4().hex[:6]}",
                                  domain_id=self._domain_id, thread_name=f"jtc-backend-{self.device_id}",
                                  spin_timeout_s=0.02, start_parameter_services=False)
        node = self._ros.node
        node.create_subscription(JointState, f"{self.ns}/joint_states", self._on_joint_states, 10)
        node.create_subscription(String, f"{self.ns}/mujoco/status", self._on_status, 10)
        self._pub = node.create_publisher(
            JointTrajectory, f"{self.ns}/joint_trajectory_controller/joint_trajectory", 10
        )
        self._ros.every(0.02, self._watch_controller)
        self._ros.start()
        deadline = t0 + timeout_s
        while time.monotonic() < deadline:
            if self._js is not None and self._pub.get_subscription_count() > 0:
                return
            time.sleep(0.02)
        self.close()
        raise BackendError(
            f"no {self.engine} arm: nothing on {self.ns}/joint_states or no subscriber on the "
            f"trajectory topic within {timeout_s:.1f} s"
        )

    def close(self) -> None:
        if self._ros is not None:
            self._ros.close()
            self._ros = None
        self.controller.close()

    def connected(self) -> bool:
        return self._ros is not None and self.controller.connected()

    # ------------------------------------------------------------------ physics side
    def _on_joint_states(self, msg: Any) -> None:
        try:
            idx = [list(msg.name).index(n) for n in self.names]
        except ValueError:
            return
        q = np.array([msg.position[i] for i in idx], dtype=np.float64)
        qd = (
            np.array([msg.velocity[i] for i in idx], dtype=np.float64)
            if len(msg.velocity) == len(msg.name)
            else np.zeros(len(idx))
        )
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        with self._lock:
            self._js = (q, qd, stamp, time.monotonic())

    def _on_status(self, msg: Any) -> None:
        try:
            status = json.loads(msg.data)
        except ValueError:
            return
        with self._lock:
            self._status = status

    def _publish(self, q: np.ndarray | None, dt: float) -> None:
        """A trajectory through the samples q[1:] (q[0] is where the arm is), or a hold (empty)."""
        from builtin_interfaces.msg import Duration
        from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

        msg = JointTrajectory()
        msg.joint_names = list(self.names)
        if q is not None:
            for k in range(1, len(q)):
                t = k * dt
                sec = int(math.floor(t))
                msg.points.append(
                    JointTrajectoryPoint(
                        positions=[float(v) for v in q[k]],
                        time_from_start=Duration(sec=sec, nanosec=int(round((t - sec) * 1e9))),
                    )
                )
        self._pub.publish(msg)

    def _hold(self) -> None:
        with self._lock:
            self._goal = None
            self._holding = True
        if self._pub is not None:
            self._publish(None, 0.0)

    def _watch_controller(self) -> None:
        """A protective stop or safe torque off in the controller stops the physics arm."""
        r = self.controller.latest()
        if r is None or self._goal is None:
            return
        if r.get("protective_stop") or r.get("drives_enabled") is False:
            self._hold()

    def _moving(self, q: np.ndarray, qd: np.ndarray, stamp: float) -> bool:
        if self._goal is None:
            return self._holding and float(np.max(np.abs(qd))) > SETTLED_VELOCITY_RAD_S
        settled = (
            float(np.max(np.abs(q - self._goal))) <= self.arm.pose_tolerance_rad
            and float(np.max(np.abs(qd))) <= SETTLED_VELOCITY_RAD_S
        )
        if stamp >= self._t_end and settled:
            self._goal = None
            return False
        return True

    # ------------------------------------------------------------------ DeviceBackend
    def latest(self) -> Readings | None:
        r = self.controller.latest()
        with self._lock:
            js, status = self._js, dict(self._status)
            if r is None or js is None:
                return None
            q, qd, stamp, wall = js
            moving = self._moving(q, qd, stamp)
            progress = min(max(stamp - self._t_start, 0.0), self._duration) if moving else None
        values = dict(r.values)
        for n, qi, vi in zip(self.names, q, qd, strict=True):
            values[f"joint.{n}.position_rad"] = float(qi)
            values[f"joint.{n}.velocity_rad_s"] = float(vi)
        p = _fk_tcp(self.arm, q)
        h = 1e-6
        v = (_fk_tcp(self.arm, q + qd * h) - p) / h
        values.update(
            {
                "tcp_x_m": float(p[0]),
                "tcp_y_m": float(p[1]),
                "tcp_z_m": float(p[2]),
                "tcp_speed_m_s": float(np.linalg.norm(v)),
                "moving": moving,
            }
        )
        tol = self.arm.pose_tolerance_rad
        values["at_park"] = bool(np.max(np.abs(q - np.array(self.arm.poses["park"]))) <= tol) and not moving
        values["at_decon"] = bool(np.max(np.abs(q - np.array(self.arm.poses["decon"]))) <= tol) and not moving
        values["status.moving"] = moving
        values["status.trajectory_progress_s"] = progress
        values["status.trajectory_duration_s"] = self._duration if moving else None
        values["physics.engine"] = self.engine
        values["physics.time_s"] = stamp
        for key in ("tracking_error_rad", "max_tracking_error_rad", "contact_steps", "real_time_factor"):
            if key in status:
                values[f"physics.{key}"] = status[key]
        return Readings(values=values, device_time=r.device_time, received_wall=min(r.received_wall, wall))

    def command(
        self, name: str, args: dict[str, Any], *, user: str = "", reason: str = "", timeout_s: float = 5.0
    ) -> CommandOutcome:
        if name == "execute_trajectory":
            return self._execute_trajectory(args, user, reason, timeout_s)
        if name == "move_to_pose":  # the arm node plans it and sends execute_trajectory
            return CommandOutcome(
                False, "INVALID", "move_to_pose is planned by the arm node; send a trajectory"
            )
        out = self.controller.command(name, args, user=user, reason=reason, timeout_s=timeout_s)
        if name in ("protective_stop", "safe_state", "disable_drives") and out.accepted:
            self._hold()
        return out

    def _execute_trajectory(
        self, args: dict[str, Any], user: str, reason: str, timeout_s: float
    ) -> CommandOutcome:
        with self._lock:
            js = self._js
        if js is None:
            return CommandOutcome(False, "COMM_LOST", f"no joint states from the {self.engine} arm")
        try:
            q = np.asarray(args["q"], dtype=np.float64)
            dt = float(args["dt"])
        except (KeyError, TypeError, ValueError) as exc:
            return CommandOutcome(False, "INVALID", f"execute_trajectory needs q (N, 6) and dt: {exc}")
        if (
            q.ndim != 2
            or q.shape[1] != len(self.names)
            or len(q) < 2
            or not np.all(np.isfinite(q))
            or not (math.isfinite(dt) and dt > 0)
        ):
            return CommandOutcome(False, "INVALID", "q must be (N >= 2, 6) finite samples and dt > 0")
        with self._lock:
            if self._goal is not None and self._moving(*js[:3]):
                return CommandOutcome(
                    False, "ARM_MOVING", f"the {self.engine} arm is still executing a trajectory"
                )
        dev = float(np.max(np.abs(q[0] - js[0])))
        if dev > self.arm.pose_tolerance_rad:
            return CommandOutcome(
                False,
                "TRAJECTORY_START_MISMATCH",
                f"first sample is {dev:.4f} rad from the {self.engine} arm's measured position",
            )
        out = self.controller.command(
            "execute_trajectory", args, user=user, reason=reason, timeout_s=timeout_s
        )
        if not out.accepted:
            return out
        with self._lock:
            stamp = self._js[2] if self._js is not None else js[2]
            self._goal = q[-1].copy()
            self._duration = dt * (len(q) - 1)
            self._t_start = stamp
            self._t_end = stamp + self._duration
            self._holding = False
        self._publish(q, dt)
        return CommandOutcome(True, out.code, out.reason, {**out.payload, "engine": self.engine})


def make_jtc_backend(hardware: str, *, device_id: str, kind: str, **options: Any) -> JtcArmBackend:
    return JtcArmBackend(device_id=device_id, kind=kind, engine=hardware, **options)
