"""Robot arm node: every motion is proven safe before it starts.

``/cell/arm/execute_trajectory`` (ExecuteTrajectory action) and the ``move_to_pose`` /
``execute_trajectory`` commands take the one command path (:mod:`aseptic_cell.devices.pipeline`),
whose arm step (:class:`aseptic_cell.devices.arm.motion.ArmMotion`) plans the move and runs the
C collision and limit check on the whole trajectory, certified between samples, with the
keep-out zones that the live cell state activates (glove ports in use, doors not fully open),
read from the isolator's and autoclave's interlock signals. A refused motion returns the
reason and is published on ``/cell/events``.
Publishes ``/cell/arm/state`` (ArmState) and ``/joint_states`` (sensor_msgs/JointState).
"""

from __future__ import annotations

import functools
import json
import math
import sys
import time
from typing import Any

import numpy as np
from cell_interfaces.action import ExecuteTrajectory
from cell_interfaces.msg import ArmState
from rclpy.action import ActionServer

from ...results import CommandResult
from ..backend import Readings
from ..node import DeviceNode, run_device_node
from ..node import num as _f
from .motion import ArmMotion


class ArmNode(DeviceNode):
    KIND = "arm"
    STATE_TYPE = ArmState

    def __init__(self, node_name: str = "arm", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        from sensor_msgs.msg import JointState
        from std_msgs.msg import String

        self.declare_parameter("check_mode", "certified")
        self.declare_parameter("plan_dt_s", 0.02)
        self._joint_pub = self.create_publisher(JointState, "/joint_states", 10)
        self._joint_state = JointState
        # the keep-out zones come from the same interlock signals the supervisor reads
        self._cell: dict[str, dict[str, Any]] = {}
        self._cell_wall: dict[str, float] = {}
        for node in ("isolator", "autoclave"):
            self.create_subscription(String, f"/cell/{node}/signals",
                                     functools.partial(self._on_signals, node), 10)
        self.joint_names: list[str] = []
        self._current_motion = ""
        name = f"/cell/{node_name}/execute_trajectory"
        self._action = ActionServer(self, ExecuteTrajectory, name, execute_callback=self._execute_trajectory,
                                    goal_callback=self.goal_guard(name), cancel_callback=self.accept_cancel)

    def default_device_id(self) -> str:
        return self.cfg.layout.robot.id

    def on_configured(self) -> None:
        from ...motion import Scene

        self.motion = ArmMotion(self.cfg, Scene.from_config(self.cfg.arm, self.cfg.geometry),
                                check_mode=self.get_parameter("check_mode").value,
                                plan_dt_s=float(self.get_parameter("plan_dt_s").value))
        self.joint_names = self.motion.joint_names

    # ------------------------------------------------------------------ live keep-out zones
    def _on_signals(self, node: str, msg: Any) -> None:
        try:
            data = json.loads(msg.data)
        except ValueError:
            return
        if isinstance(data, dict):
            self._cell[node], self._cell_wall[node] = data, time.monotonic()

    def cell_signals(self) -> dict[str, Any] | None:
        """The isolator's and autoclave's interlock signals; None if the isolator's are stale."""
        iso = self._cell.get("isolator")
        now = time.monotonic()
        if (iso is None or not iso.get("comm_ok") or now - self._cell_wall["isolator"] > self.stale_after_s):
            return None
        out = dict(iso.get("signals") or {})
        ac = self._cell.get("autoclave")
        if ac is not None and ac.get("comm_ok") and now - self._cell_wall["autoclave"] <= self.stale_after_s:
            out.update(ac.get("signals") or {})
        return out

    def current_q(self, r: Readings) -> np.ndarray:
        assert self.motion is not None
        return self.motion.current_q(r.values)

    def execute(self, name: str, args: dict[str, Any] | None = None, *, user: str = "", reason: str = "",
                timeout_s: float = 5.0) -> CommandResult:
        out = super().execute(name, args, user=user, reason=reason, timeout_s=timeout_s)
        if out.accepted and out.payload.get("task"):
            self._current_motion = str(out.payload["task"])
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
