"""Robot arm node: every motion is proven safe before it starts (issue 6 hot path).

``/cell/arm/execute_trajectory`` (ExecuteTrajectory action) and the ``move_to_pose`` /
``execute_trajectory`` commands all go through :meth:`ArmNode.check_motion`: the C collision
and limit check (:mod:`aseptic_cell.motion`) on the whole trajectory, certified between
samples, with the keep-out zones that the live cell state activates (glove ports in use,
open doors). A refused motion returns the reason and is published on ``/cell/events``.
Publishes ``/cell/arm/state`` (ArmState) and ``/joint_states`` (sensor_msgs/JointState).
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import numpy as np
from rclpy.action import ActionServer

from cell_interfaces.action import ExecuteTrajectory
from cell_interfaces.msg import ArmState, AutoclaveState, IsolatorState

from ..devices.backend import CommandOutcome, Readings
from .device_node import DeviceNode, num as _f, run_device_node



class ArmNode(DeviceNode):
    KIND = "arm"
    STATE_TYPE = ArmState

    def __init__(self, node_name: str = "arm", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        from sensor_msgs.msg import JointState

        self.declare_parameter("check_mode", "certified")
        self.declare_parameter("plan_dt_s", 0.02)
        self._joint_pub = self.create_publisher(JointState, "/joint_states", 10)
        self._joint_state = JointState
        self.create_subscription(IsolatorState, "/cell/isolator/state", self._on_isolator, 10)
        self.create_subscription(AutoclaveState, "/cell/autoclave/state", self._on_autoclave, 10)
        self._isolator: IsolatorState | None = None
        self._autoclave: AutoclaveState | None = None
        self._isolator_wall = -math.inf
        self.scene = None
        self.joint_names: list[str] = []
        self._vmax = self._amax = None
        self._current_motion = ""
        self._action = ActionServer(self, ExecuteTrajectory, f"/cell/{node_name}/execute_trajectory",
                                    execute_callback=self._execute_trajectory, cancel_callback=self.accept_cancel)

    def default_device_id(self) -> str:
        return self.cfg.layout.robot.id

    def on_configured(self) -> None:
        from ..motion import Scene

        self.scene = Scene.from_config(self.cfg.arm, self.cfg.geometry)
        self.joint_names = [j.name for j in self.cfg.arm.joints]
        self._vmax = np.array([j.max_velocity for j in self.cfg.arm.joints])
        self._amax = np.array([j.max_acceleration for j in self.cfg.arm.joints])

    # ------------------------------------------------------------------ live keep-out zones
    def _on_isolator(self, msg: IsolatorState) -> None:
        self._isolator, self._isolator_wall = msg, time.monotonic()

    def _on_autoclave(self, msg: AutoclaveState) -> None:
        self._autoclave = msg

    def active_conditions(self) -> set[str] | None:
        """Scene conditions from the live cell state; None if the isolator state is stale."""
        iso = self._isolator
        if iso is None or time.monotonic() - self._isolator_wall > self.stale_after_s or not iso.comm_ok:
            return None
        cond = {f"glove_in_use:{g.port_id}" for g in iso.glove_ports if g.in_use}
        # A door's swept volume is a keep-out unless the door is confirmed fully open (and
        # locked open): domain spec §4.3 "the robot may enter a door's swept volume only when
        # that door is confirmed fully open and locked". Doors we cannot see count as closed.
        fully_open = {f"{r.rtp_id.lower()}_alpha" for r in iso.rtps if r.alpha_open and r.alpha_locked}
        if iso.hatch_door_b_open:
            fully_open.add("hatch_b")
        if self._autoclave is not None and self._autoclave.door_unload_open:  # OPEN = fully open
            fully_open.add("autoclave_unload")
        known = {b.active for b in self.cfg.geometry.boxes}
        cond |= {a for a in known if a.startswith("door_closed:") and a.split(":", 1)[1] not in fully_open}
        return {c for c in cond if c in known}

    def current_q(self, r: Readings) -> np.ndarray:
        return np.array([_f(r.get(f"joint.{n}.position_rad")) for n in self.joint_names])

    def check_motion(self, q: np.ndarray, dt: float, speed_class: str) -> CommandOutcome | None:
        """None if the motion is proven safe, else the refusal."""
        conditions = self.active_conditions()
        if conditions is None:
            return CommandOutcome(False, "NO_CELL_STATE", "isolator state unknown or stale: keep-out zones "
                                  "cannot be established, motion refused")
        try:
            res = self.scene.check_trajectory(q, dt, mode=self.get_parameter("check_mode").value,
                                              speed_class=speed_class, conditions=conditions)
        except ValueError as exc:
            return CommandOutcome(False, "INVALID", f"trajectory rejected: {exc}")
        if not res.ok:
            return CommandOutcome(False, f"MOTION_{res.kind.upper()}",
                                  f"{res.reason}; minimum clearance {res.clearance * 1000:.1f} mm",
                                  {"first_failing_index": res.first_failing_index, "clearance_m": res.clearance})
        return None

    # ------------------------------------------------------------------ command path
    def _execute(self, name: str, args: dict[str, Any], user: str, reason: str, timeout_s: float) -> CommandOutcome:
        if name not in ("move_to_pose", "execute_trajectory"):
            return super()._execute(name, args, user, reason, timeout_s)
        from ..devices.commands import InvalidArguments, validate

        try:
            typed = validate(self.KIND, name, args)
        except InvalidArguments as exc:
            return CommandOutcome(False, "INVALID", str(exc))
        if self.backend is None:
            return CommandOutcome(False, "NOT_CONFIGURED", f"{self.get_name()} is not configured")
        if name == "move_to_pose" and typed["pose"] not in self.cfg.arm.poses:
            return CommandOutcome(False, "INVALID", f"unknown pose {typed['pose']!r}; known: {sorted(self.cfg.arm.poses)}")
        if not self.active:
            return CommandOutcome(False, "NOT_ACTIVE", f"{self.get_name()} is {self._lifecycle_label}: nothing moves")
        if self.latched:
            return CommandOutcome(False, "LATCHED", f"{self.device_id} is held in its safe state ({self.latched}); "
                                  "recovery needs an operator action (recover)")
        r = self.fresh_readings()
        if r is None:
            return CommandOutcome(False, "COMM_STALE", f"no fresh data from {self.device_id}")
        refusal = self.precheck(name, typed, r)
        if refusal is not None:
            return CommandOutcome(False, *refusal)
        speed_class = typed.get("speed_class", "transit")
        q0 = self.current_q(r)
        if name == "move_to_pose":
            from ..motion.planning import plan_joint_move

            pose = typed["pose"]
            limit = self.cfg.arm.speed_classes[speed_class].max_tcp_speed_m_s
            q, dt = plan_joint_move(self.scene, q0, np.array(self.cfg.arm.poses[pose]), self._vmax, self._amax,
                                    speed_limit_m_s=limit, dt=float(self.get_parameter("plan_dt_s").value))
            q[0] = q0  # start exactly where the arm is (within the pose tolerance of the plan)
            task = f"to {pose}"
        else:
            q = np.asarray(typed["q"], dtype=np.float64)
            dt = typed["dt"]
            task = "trajectory"
        refusal = self.check_motion(q, dt, speed_class)
        if refusal is not None:
            return refusal
        self._current_motion = task
        out = self.backend.command("execute_trajectory", {"q": q.tolist(), "dt": dt, "speed_class": speed_class},
                                   user=user, reason=reason, timeout_s=timeout_s)
        if out.accepted:
            out = CommandOutcome(True, out.code, out.reason, {**out.payload, "samples": len(q),
                                                                 "duration_s": dt * (len(q) - 1)})
        return out

    # ------------------------------------------------------------------ action
    async def _execute_trajectory(self, goal_handle: Any) -> Any:
        goal = goal_handle.request
        result = ExecuteTrajectory.Result()
        pts = goal.trajectory.points
        names = list(goal.trajectory.joint_names)
        try:
            if names and names != self.joint_names:
                raise ValueError(f"joint_names must be {self.joint_names}, got {names}")
            if len(pts) < 2:
                raise ValueError("a trajectory needs at least two points")
            t = np.array([p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in pts])
            steps = np.diff(t)
            if np.any(steps <= 0) or np.max(np.abs(steps - steps[0])) > 1e-6:
                raise ValueError("points must be evenly spaced in time_from_start")
            q = np.array([list(p.positions) for p in pts], dtype=np.float64)
            dt = float(steps[0])
        except ValueError as exc:
            goal_handle.abort()
            result.success, result.code, result.reason = False, "INVALID", str(exc)
            self.emit("refusal", command="execute_trajectory", user=goal.user, code="INVALID", detail=str(exc))
            return result
        out = self.execute("execute_trajectory", {"q": q.tolist(), "dt": dt,
                                                  "speed_class": goal.speed_class or "transit"},
                           user=goal.user, reason=goal.task)
        if not out.accepted:
            goal_handle.abort()
            result.success, result.code, result.reason = False, out.code, out.reason
            result.first_failing_index = int(out.payload.get("first_failing_index") or -1)
            result.clearance_m = float(out.payload.get("clearance_m") or math.nan)
            return result
        started = time.monotonic()
        while True:
            await self.sleep(0.01)
            r = self.readings()
            if goal_handle.is_cancel_requested:
                self.execute("protective_stop", {"reason": "trajectory goal cancelled"})
            if r is not None:
                fb = ExecuteTrajectory.Feedback()
                fb.joint_positions = self.current_q(r).tolist()
                prog = r.get("status.trajectory_progress_s")
                dur = r.get("status.trajectory_duration_s")
                fb.progress = float(prog / dur) if isinstance(prog, (int, float)) and dur else 1.0
                goal_handle.publish_feedback(fb)
                if r.get("protective_stop"):
                    goal_handle.abort()
                    result.success, result.code = False, "PROTECTIVE_STOP"
                    result.reason = str(r.get("protective_stop_reason"))
                    return result
                # done: the first readings taken after the command was accepted show it stopped
                if not r.get("moving") and r.received_wall > started + 0.005:
                    break
            if self.latched and not self.comm_ok:
                goal_handle.abort()
                result.success, result.code, result.reason = False, "COMM_LOST", str(self.latched)
                return result
        if goal_handle.is_cancel_requested:
            goal_handle.canceled()
            result.success, result.code, result.reason = False, "CANCELLED", "cancelled"
        else:
            goal_handle.succeed()
            result.success, result.code = True, "OK"
        result.first_failing_index = -1
        result.clearance_m = float(out.payload.get("clearance_m") or math.nan)
        return result

    # ------------------------------------------------------------------ state
    def fill_state(self, msg: ArmState, r: Readings) -> None:
        q = self.current_q(r)
        qd = [_f(r.get(f"joint.{n}.velocity_rad_s")) for n in self.joint_names]
        msg.joint_positions = [float(x) for x in q]
        msg.joint_velocities = qd
        msg.tcp_xyz = [_f(r.get("tcp_x_m")), _f(r.get("tcp_y_m")), _f(r.get("tcp_z_m"))]
        msg.tcp_speed_m_s = _f(r.get("tcp_speed_m_s"))
        msg.speed_class = str(r.get("speed_class") or "")
        msg.mode = str(r.get("mode") or "")
        msg.moving = bool(r.get("moving"))
        msg.drives_enabled = bool(r.get("drives_enabled"))
        msg.protective_stop = bool(r.get("protective_stop"))
        msg.protective_stop_reason = str(r.get("protective_stop_reason") or "")
        msg.at_park = bool(r.get("at_park"))
        msg.at_decon = bool(r.get("at_decon"))
        msg.current_motion = self._current_motion if msg.moving else ""
        msg.faults = [str(f) for f in (r.get("status.faults") or [])]
        js = self._joint_state()
        js.header.stamp = msg.stamp
        js.name = list(self.joint_names)
        js.position = [float(x) for x in q]
        js.velocity = [float(x) for x in qd]
        self._joint_pub.publish(js)


def main(argv: list[str] | None = None) -> int:
    return run_device_node(ArmNode, argv)


if __name__ == "__main__":
    sys.exit(main())
