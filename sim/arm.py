"""Process model of the 6-axis robot arm inside the isolator (UR5e per ``config/arm.yaml``).

Plain, deterministic Python stepped on an injected clock; no ROS, no threads.

* Joint-space trajectories ``q (N, 6)`` sampled every ``dt`` seconds are validated
  (shape, dtype, finite; position, velocity and acceleration limits from the samples;
  TCP speed against the speed class; first sample at the current position; the injected
  collision ``checker``) before ANY motion, then followed in sim time: the command is the
  linear interpolation of the samples, the measured position tracks it with a first-order
  lag (``tracking_time_constant_s``), integrated exactly per linear segment so results do
  not depend on the step size.
* Drives on/off (off = safe torque off, STO), a latched protective stop that never
  auto-resumes and re-seeds the command from the measured position on reset
  (HABITS.md 6), operational modes per ISO 10218-1 §5.7 [ISO10218-1] (OPC 40010 OperationalMode
  [OPC40010]).
* Forward kinematics from the standard DH table (T_i = Rz(theta) Tz(d) Tx(a) Rx(alpha)).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..devices.codes import RefusalCode
from .common import CommandRefused, FaultHooks, InvalidCommand, SensorChannel, read_sensors, require_finite

REDUCED_SPEED_M_S = 0.25
"""TCP speed limit in MANUAL_REDUCED_SPEED: 250 mm/s, ISO 10218-1 reduced speed [ISO10218-1]
[V] [GT-ENG]."""

PLAN_SAMPLE_DT_S = 0.02
"""Sample period of trajectories planned by :meth:`ArmModel.move_to_pose` (s). Planner
resolution only; the limits are checked on the samples."""

_QUINTIC_PEAK_VEL = 1.875  # max of d/ds (10 s^3 - 15 s^4 + 6 s^5), at s = 1/2
_QUINTIC_PEAK_ACC = 10.0 / math.sqrt(3.0)  # max |d2/ds2|, at s = 1/2 -/+ sqrt(3)/6
_PLAN_ITERATIONS = 8  # duration stretches tried to meet the TCP speed limit

N_JOINTS = 6


class OperationalMode(enum.StrEnum):
    """ISO 10218-1 §5.7 operational modes [ISO10218-1] (OPC 40010 OperationalMode [OPC40010])."""

    MANUAL_REDUCED_SPEED = "MANUAL_REDUCED_SPEED"
    MANUAL_HIGH_SPEED = "MANUAL_HIGH_SPEED"
    AUTOMATIC = "AUTOMATIC"
    AUTOMATIC_EXTERNAL = "AUTOMATIC_EXTERNAL"


def _rpy_matrix(rpy: tuple[float, float, float]) -> np.ndarray:
    r, p, y = rpy
    cr, sr, cp, sp, cy, sy = math.cos(r), math.sin(r), math.cos(p), math.sin(p), math.cos(y), math.sin(y)
    # R = Rz(yaw) Ry(pitch) Rx(roll) (URDF convention)
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


def dh_frames(cfg: Any, q: np.ndarray) -> list[np.ndarray]:
    """Homogeneous transforms of frames 0..6 in the isolator frame for joint vector ``q``.

    Frame 0 is the arm base (``cfg.base``); frame k is after joint k (standard DH).
    """
    base = np.eye(4)
    base[:3, :3] = _rpy_matrix(tuple(cfg.base.rpy))
    base[:3, 3] = cfg.base.xyz
    frames = [base]
    t = base
    for theta, row in zip(q, cfg.dh, strict=True):
        ct, st = math.cos(theta), math.sin(theta)
        ca, sa = math.cos(row.alpha), math.sin(row.alpha)
        a = np.array(
            [
                [ct, -st * ca, st * sa, row.a * ct],
                [st, ct * ca, -ct * sa, row.a * st],
                [0.0, sa, ca, row.d],
                [0.0, 0.0, 0.0, 1.0],
            ]
        )
        t = t @ a
        frames.append(t)
    return frames


def fk_position(cfg: Any, q: np.ndarray) -> np.ndarray:
    """TCP (flange, frame 6) position in the isolator frame (m)."""
    return dh_frames(cfg, q)[-1][:3, 3].copy()


def tcp_velocity(cfg: Any, q: np.ndarray, qd: np.ndarray) -> np.ndarray:
    """TCP linear velocity (m/s): sum_i z_{i-1} x (p_tcp - p_{i-1}) qd_i (revolute joints)."""
    frames = dh_frames(cfg, q)
    p_e = frames[-1][:3, 3]
    v = np.zeros(3)
    for i in range(N_JOINTS):
        z = frames[i][:3, 2]
        v += np.cross(z, p_e - frames[i][:3, 3]) * qd[i]
    return v


class _Trajectory:
    def __init__(self, q: np.ndarray, dt: float, speed_class: str) -> None:
        self.q = q
        self.dt = dt
        self.speed_class = speed_class
        self.t = 0.0
        self.duration = dt * (len(q) - 1)

    def segment(self) -> tuple[np.ndarray, np.ndarray, float]:
        """Command now, its slope, and the time left in the current linear segment."""
        n = len(self.q)
        if n == 1 or self.t >= self.duration - 1e-12:
            return self.q[-1], np.zeros(N_JOINTS), math.inf
        k = min(int(self.t / self.dt + 1e-9), n - 2)  # on a sample boundary, take the next segment
        slope = (self.q[k + 1] - self.q[k]) / self.dt
        left = max((k + 1) * self.dt - self.t, 1e-12)
        return self.q[k] + slope * (self.t - k * self.dt), slope, left


class ArmModel:
    """Simulated robot arm.

    Args:
        cfg: :class:`aseptic_cell.config.robot.ArmConfig`.
        clock: injected clock (timestamps).
        checker: optional collision check ``checker(q, dt, speed_class)`` returning an object
            with ``.ok``, ``.first_failing_index`` and ``.reason``; it must pass before motion.
        q0: initial joint position (default: the ``park`` pose).
    """

    def __init__(
        self,
        cfg: Any,
        clock: Any,
        checker: Callable[[np.ndarray, float, str], Any] | None = None,
        q0: np.ndarray | None = None,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.checker = checker
        self.names = [j.name for j in cfg.joints]
        self._qmin = np.array([j.min for j in cfg.joints])
        self._qmax = np.array([j.max for j in cfg.joints])
        self._vmax = np.array([j.max_velocity for j in cfg.joints])
        self._amax = np.array([j.max_acceleration for j in cfg.joints])
        start = np.array(cfg.poses["park"] if q0 is None else q0, dtype=np.float64)
        if start.shape != (N_JOINTS,) or not np.all(np.isfinite(start)):
            raise InvalidCommand("q0 must be 6 finite joint values")
        self._q = start.copy()  # measured joint positions (rad)
        self._qd = np.zeros(N_JOINTS)  # measured joint velocities (rad/s)
        self._hold = start.copy()  # command when no trajectory runs
        self._traj: _Trajectory | None = None
        self._speed_class = "transit"
        self._drives = False
        self._pstop = False
        self._pstop_reason = ""
        self._mode = OperationalMode.AUTOMATIC
        self._t = float(clock.now())
        self.faults = FaultHooks(known={"arm_fault", "encoder_stuck"})
        self._channels: dict[str, SensorChannel] = {}
        self._held: dict[str, Any] = {}
        self._encoder_hold: np.ndarray | None = None
        self._sensor_faults_seen = False
        self.events: list[dict[str, Any]] = []

    # ================================================================== physics
    def step(self, dt: float) -> None:
        """Advance by ``dt`` sim seconds."""
        dt = require_finite("dt", dt)
        if dt < 0:
            raise InvalidCommand(f"dt must be >= 0, got {dt}")
        f = self.faults.active("arm_fault")
        if f is not None and not self._pstop:
            self.protective_stop(f"arm_fault: {f.get('reason', 'drive fault')}")
        tau = self.cfg.tracking_time_constant_s
        rem = dt
        while rem > 0.0:
            if self._traj is None:
                r0, v, left = self._hold, np.zeros(N_JOINTS), math.inf
            else:
                r0, v, left = self._traj.segment()
            h = min(rem, left)
            # exact solution of q' = (r(t) - q) / tau for a linear command r(t) = r0 + v t over h
            e = math.exp(-h / tau)
            r1 = r0 + v * h
            self._q = r1 - v * tau + (self._q - r0 + v * tau) * e
            self._qd = (r1 - self._q) / tau
            if self._traj is not None:
                self._traj.t += h
            rem -= h
        if self._traj is not None and self._traj.t >= self._traj.duration - 1e-12:
            self._hold = self._traj.q[-1].copy()
            if float(np.max(np.abs(self._q - self._hold))) <= self.cfg.pose_tolerance_rad:
                self._traj = None  # arrived (within the pose tolerance); keeps tracking the hold
        self._t += dt
        self._latch_encoder()
        active = any(n.startswith("sensor:") for n in self.faults.names())
        if active or self._sensor_faults_seen:
            self.sensors()  # latch stuck values at injection time; reset channels on clear
        self._sensor_faults_seen = active

    def _latch_encoder(self) -> None:
        if "encoder_stuck" in self.faults:
            if self._encoder_hold is None:
                self._encoder_hold = self._q.copy()
        else:
            self._encoder_hold = None

    # ================================================================== validation
    def _speed_limit(self, speed_class: str) -> float:
        if speed_class not in self.cfg.speed_classes:
            raise InvalidCommand(
                f"unknown speed_class {speed_class!r}; known: {sorted(self.cfg.speed_classes)}"
            )
        limit = self.cfg.speed_classes[speed_class].max_tcp_speed_m_s
        if self._mode == OperationalMode.MANUAL_REDUCED_SPEED:
            limit = min(limit, REDUCED_SPEED_M_S)
        return limit

    def _validate(self, q: Any, dt: Any, speed_class: str) -> tuple[np.ndarray, float]:
        """All checks of a trajectory; raises and changes nothing on failure."""
        if not isinstance(q, np.ndarray):
            raise InvalidCommand(f"trajectory must be a numpy array, got {type(q).__name__}")
        if q.dtype != np.float64:
            raise InvalidCommand(f"trajectory dtype must be float64, got {q.dtype}")
        if q.ndim != 2 or q.shape[1] != N_JOINTS or q.shape[0] < 1:
            raise InvalidCommand(f"trajectory shape must be (N, {N_JOINTS}) with N >= 1, got {q.shape}")
        if not np.all(np.isfinite(q)):
            k, j = np.argwhere(~np.isfinite(q))[0]
            raise InvalidCommand(f"trajectory sample {k} joint {self.names[j]} is not finite ({q[k, j]})")
        dt = require_finite("dt", dt)
        if dt <= 0.0:
            raise InvalidCommand(f"dt must be > 0, got {dt}")
        tcp_limit = self._speed_limit(speed_class)

        if self._pstop:
            raise CommandRefused(
                RefusalCode.PROTECTIVE_STOP, f"protective stop latched: {self._pstop_reason}"
            )
        if not self._drives:
            raise CommandRefused(
                RefusalCode.DRIVES_OFF, "drives are off (safe torque off); enable drives first"
            )
        if self._traj is not None:
            raise CommandRefused(RefusalCode.ARM_MOVING, "a trajectory is still being executed")

        # first sample must be where the arm is (no jumps)
        dev = np.abs(q[0] - self._q)
        j = int(np.argmax(dev))
        if dev[j] > self.cfg.pose_tolerance_rad:
            raise CommandRefused(
                RefusalCode.TRAJECTORY_START_MISMATCH,
                f"first sample joint {self.names[j]} = {q[0, j]:.4f} rad is {dev[j]:.4f} rad from the "
                f"current position {self._q[j]:.4f} rad (tolerance {self.cfg.pose_tolerance_rad} rad)",
            )
        # position limits
        for k, j in np.argwhere((q < self._qmin) | (q > self._qmax))[:1]:
            raise CommandRefused(
                RefusalCode.JOINT_POSITION_LIMIT,
                f"sample {k}: joint {self.names[j]} = {q[k, j]:.4f} rad outside "
                f"[{self._qmin[j]:.4f}, {self._qmax[j]:.4f}] rad",
            )
        # velocity and acceleration from the samples; the arm starts and ends at rest
        padded = np.vstack([q[:1], q, q[-1:]])
        vel = np.diff(padded, axis=0) / dt
        acc = np.diff(vel, axis=0) / dt
        for k, j in np.argwhere(np.abs(vel) > self._vmax * (1.0 + 1e-9))[:1]:
            raise CommandRefused(
                RefusalCode.JOINT_VELOCITY_LIMIT,
                f"segment {k - 1}->{k}: joint {self.names[j]} velocity {vel[k, j]:.4f} rad/s exceeds "
                f"{self._vmax[j]:.4f} rad/s",
            )
        for k, j in np.argwhere(np.abs(acc) > self._amax * (1.0 + 1e-9))[:1]:
            raise CommandRefused(
                RefusalCode.JOINT_ACCELERATION_LIMIT,
                f"sample {k}: joint {self.names[j]} acceleration {acc[k, j]:.4f} rad/s^2 exceeds "
                f"{self._amax[j]:.4f} rad/s^2",
            )
        # TCP speed of the speed class (and the reduced-speed mode)
        if len(q) > 1:
            p = np.array([fk_position(self.cfg, qk) for qk in q])
            speed = np.linalg.norm(np.diff(p, axis=0), axis=1) / dt
            k = int(np.argmax(speed))
            if speed[k] > tcp_limit * (1.0 + 1e-9):
                raise CommandRefused(
                    RefusalCode.TCP_SPEED_LIMIT,
                    f"segment {k}->{k + 1}: TCP speed {speed[k]:.3f} m/s exceeds the {speed_class!r} "
                    f"limit {tcp_limit:.3f} m/s (mode {self._mode.value})",
                )
        # collision check (another engineer's C checker), before any motion
        if self.checker is not None:
            res = self.checker(q, dt, speed_class)
            if not res.ok:
                raise CommandRefused(
                    RefusalCode.COLLISION_CHECK_FAILED,
                    f"collision check failed at sample {res.first_failing_index}: {res.reason}",
                )
        return q, dt

    # ================================================================== motion commands
    def execute_trajectory(self, q: np.ndarray, dt: float, speed_class: str = "transit") -> None:
        """Validate and start following a joint trajectory sampled every ``dt`` s.

        Raises:
            InvalidCommand: bad shape/dtype, non-finite values, bad dt, unknown speed class.
            CommandRefused: drives off, protective stop, already moving, first sample away from
                the current position, joint/TCP limits, or the collision checker refused.
        """
        q, dt = self._validate(q, dt, speed_class)
        self._traj = _Trajectory(q.copy(), dt, speed_class)
        self._speed_class = speed_class
        self.events.append({"t": self.clock.now(), "event": "trajectory started", "samples": len(q),
                            "duration_s": self._traj.duration, "speed_class": speed_class})

    def plan_to(self, goal: np.ndarray, duration_s: float | None = None,
                speed_class: str = "transit") -> tuple[np.ndarray, float]:
        """Joint-space quintic from the current position to ``goal`` within the joint limits.

        The duration is the shortest meeting every joint's velocity and acceleration limit
        (or ``duration_s`` if given), stretched until the TCP speed limit is met.
        """
        goal = np.asarray(goal, dtype=np.float64)
        limit = self._speed_limit(speed_class)
        start = self._q.copy()
        delta = goal - start
        if duration_s is None:
            t_v = np.max(_QUINTIC_PEAK_VEL * np.abs(delta) / self._vmax)
            t_a = np.max(np.sqrt(_QUINTIC_PEAK_ACC * np.abs(delta) / self._amax))
            duration = max(float(t_v), float(t_a), PLAN_SAMPLE_DT_S)
            stretch = True
        else:
            duration = require_finite("duration_s", duration_s)
            if duration <= 0.0:
                raise InvalidCommand(f"duration_s must be > 0, got {duration_s}")
            stretch = False
        for _ in range(_PLAN_ITERATIONS):
            n = max(2, math.ceil(duration / PLAN_SAMPLE_DT_S - 1e-9) + 1)
            s = np.linspace(0.0, 1.0, n)
            blend = 10 * s**3 - 15 * s**4 + 6 * s**5
            q = start + np.outer(blend, delta)
            q[-1] = goal
            dt = duration / (n - 1)
            if not stretch:
                break
            p = np.array([fk_position(self.cfg, qk) for qk in q])
            peak = float(np.max(np.linalg.norm(np.diff(p, axis=0), axis=1)) / dt)
            if peak <= limit:
                break
            duration *= peak / limit * (1.0 + 1e-3)
        return q, dt

    def move_to_pose(self, pose: str, duration_s: float | None = None, speed_class: str = "transit") -> None:
        """Plan (quintic, joint space) and execute a move to the named pose (same checks)."""
        if pose not in self.cfg.poses:
            raise InvalidCommand(f"unknown pose {pose!r}; known: {sorted(self.cfg.poses)}")
        q, dt = self.plan_to(np.array(self.cfg.poses[pose]), duration_s, speed_class)
        self.execute_trajectory(q, dt, speed_class)

    def enable_drives(self) -> None:
        if self._drives:
            return
        if self._pstop:
            raise CommandRefused(
                RefusalCode.PROTECTIVE_STOP, f"protective stop latched: {self._pstop_reason}"
            )
        self._hold = self._q.copy()
        self._drives = True

    def disable_drives(self) -> None:
        """Safe torque off: motion stops, the trajectory is dropped. Always accepted."""
        self._halt()
        self._drives = False

    def protective_stop(self, reason: str = "protective stop requested") -> None:
        """Halt now (velocity zero) and latch until :meth:`reset_protective_stop`."""
        self._halt()
        if not self._pstop:
            self._pstop = True
            self._pstop_reason = str(reason)
            self.events.append(
                {"t": self.clock.now(), "event": "protective stop", "reason": self._pstop_reason}
            )

    def reset_protective_stop(self) -> None:
        """Explicit operator reset. Never resumes motion; the command is re-seeded from the
        measured position so nothing jumps."""
        if not self._pstop:
            return
        if "arm_fault" in self.faults:
            raise CommandRefused(
                RefusalCode.ARM_FAULT_ACTIVE, "arm fault still present; clear it before reset"
            )
        self._halt()
        self._pstop = False
        self._pstop_reason = ""
        self.events.append({"t": self.clock.now(), "event": "protective stop reset"})

    def _halt(self) -> None:
        self._traj = None
        self._hold = self._q.copy()
        self._qd = np.zeros(N_JOINTS)

    def set_mode(self, mode: OperationalMode | str) -> None:
        try:
            m = OperationalMode(mode)
        except ValueError as exc:
            raise InvalidCommand(f"unknown operational mode {mode!r}") from exc
        if m == self._mode:
            return
        if self._traj is not None:
            raise CommandRefused(RefusalCode.ARM_MOVING, "operational mode cannot change while moving")
        self._mode = m

    # ================================================================== queries
    @property
    def mode(self) -> OperationalMode:
        return self._mode

    @property
    def moving(self) -> bool:
        return self._traj is not None

    def joint_positions(self) -> np.ndarray:
        return self._q.copy()

    def joint_velocities(self) -> np.ndarray:
        return self._qd.copy()

    def tcp_position(self) -> np.ndarray:
        return fk_position(self.cfg, self._q)

    def tcp_speed(self) -> float:
        return float(np.linalg.norm(tcp_velocity(self.cfg, self._q, self._qd)))

    def at_pose(self, name: str) -> bool:
        if name not in self.cfg.poses:
            raise InvalidCommand(f"unknown pose {name!r}; known: {sorted(self.cfg.poses)}")
        return bool(np.max(np.abs(self._q - np.array(self.cfg.poses[name]))) <= self.cfg.pose_tolerance_rad)

    def safe_for_vhp(self) -> tuple[bool, str]:
        """IL-07 (engineering rule, config/interlocks.yaml): at the decon pose, not moving,
        drives off (STO)."""
        reasons = []
        if not self.at_pose("decon"):
            dev = np.abs(self._q - np.array(self.cfg.poses["decon"]))
            j = int(np.argmax(dev))
            reasons.append(f"not at decon pose (joint {self.names[j]} off by {dev[j]:.3f} rad)")
        if self.moving:
            reasons.append("moving")
        if self._drives:
            reasons.append("drives enabled (not in safe torque off)")
        return (not reasons, "; ".join(reasons))

    def _raw_sensors(self) -> dict[str, float | bool | str]:
        q = self._q if self._encoder_hold is None else self._encoder_hold
        qd = self._qd if self._encoder_hold is None else np.zeros(N_JOINTS)
        s: dict[str, float | bool | str] = {}
        for name, qi, vi in zip(self.names, q, qd, strict=True):
            s[f"joint.{name}.position_rad"] = float(qi)
            s[f"joint.{name}.velocity_rad_s"] = float(vi)
        p = fk_position(self.cfg, q)
        s["tcp_x_m"], s["tcp_y_m"], s["tcp_z_m"] = (float(v) for v in p)
        s["tcp_speed_m_s"] = float(np.linalg.norm(tcp_velocity(self.cfg, q, qd)))
        s["speed_class"] = self._speed_class
        s["moving"] = self.moving
        s["drives_enabled"] = self._drives
        s["protective_stop"] = self._pstop
        s["protective_stop_reason"] = self._pstop_reason
        s["mode"] = self._mode.value
        tol = self.cfg.pose_tolerance_rad
        s["at_park"] = bool(np.max(np.abs(q - np.array(self.cfg.poses["park"]))) <= tol)
        s["at_decon"] = bool(np.max(np.abs(q - np.array(self.cfg.poses["decon"]))) <= tol)
        return s

    def sensors(self) -> dict[str, float | bool | str]:
        """What the robot controller reports, with ``sensor:<key>`` faults applied."""
        return read_sensors(self._raw_sensors(), self._t, self.faults, self._channels, self._held)

    def truth(self) -> dict[str, Any]:
        return {
            "t": self._t,
            "q": self._q.copy(),
            "qd": self._qd.copy(),
            "command": (self._hold.copy() if self._traj is None else self._traj.segment()[0].copy()),
            "tcp": self.tcp_position(),
        }

    def status(self) -> dict[str, Any]:
        return {
            "model": self.cfg.model,
            "t": self.clock.now(),
            "mode": self._mode.value,
            "drives_enabled": self._drives,
            "protective_stop": self._pstop,
            "protective_stop_reason": self._pstop_reason,
            "moving": self.moving,
            "speed_class": self._speed_class,
            "trajectory_progress_s": None if self._traj is None else self._traj.t,
            "trajectory_duration_s": None if self._traj is None else self._traj.duration,
            "safe_for_vhp": self.safe_for_vhp()[0],
            "faults": self.faults.names(),
        }
