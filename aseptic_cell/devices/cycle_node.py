"""Shared action plumbing of the VHP and autoclave nodes: a long cycle as a ROS 2 action.

The goal starts the cycle through the node's command path (so every check applies); the
coroutine then polls the device's readings on the wall timer, publishes feedback, honours
cancel (abort through the command path) and finishes with the device's cycle result.
"""

from __future__ import annotations

import json
from typing import Any

from cell_interfaces.action import RunCycle
from rclpy.action import ActionServer

from .node import DeviceNode


class CycleNode(DeviceNode):
    START_COMMAND = ""
    START_ARG = ""
    PROGRESS_KEYS: tuple[str, ...] = ()

    def __init__(self, node_name: str, action_name: str, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        name = f"/cell/{node_name}/{action_name}"
        self._action = ActionServer(self, RunCycle, name, execute_callback=self._execute_cycle,
                                    goal_callback=self.goal_guard(name), cancel_callback=self.accept_cancel)

    def cycle_running(self, values: dict[str, Any]) -> bool:
        raise NotImplementedError

    def start_args(self, goal: Any) -> dict[str, Any]:
        return {self.START_ARG: goal.program_id}

    def progress(self, values: dict[str, Any]) -> float:
        return 0.0

    async def _execute_cycle(self, goal_handle: Any) -> Any:
        goal = goal_handle.request
        result = RunCycle.Result()
        out = self.execute(self.START_COMMAND, self.start_args(goal), user=goal.batch_id or "supervisor",
                           reason=f"batch {goal.batch_id}")
        if not out.accepted:
            goal_handle.abort()
            result.success, result.result, result.reason = False, "REFUSED", f"{out.code}: {out.reason}"
            return result
        run_id = out.payload.get("run_id", "")
        seen_running = False
        while True:
            await self.sleep(0.1)
            r = self.readings()
            values = r.values if r is not None else {}
            running = self.cycle_running(values)
            seen_running = seen_running or running
            if goal_handle.is_cancel_requested:
                self.execute("abort", {"user": goal.batch_id or "supervisor", "reason": "action cancelled"})
            if r is not None:
                fb = RunCycle.Feedback()
                fb.phase = str(values.get("phase", ""))
                fb.progress = float(self.progress(values))
                fb.json_state = json.dumps({k: values.get(k) for k in self.PROGRESS_KEYS})
                goal_handle.publish_feedback(fb)
            if not self.comm_ok and self.latched:
                goal_handle.abort()
                result.success, result.result = False, "COMM_LOST"
                result.reason = f"communication with {self.device_id} lost during the cycle ({self.latched})"
                return result
            if not running and (seen_running or values.get("status.run_id") == run_id):
                break
        res = self.backend.command("get_result", {}) if self.backend is not None else None
        report = (res.payload.get("result") if res is not None and res.accepted else None) or {}
        verdict = str(report.get("result", "UNKNOWN"))
        result.success = verdict == "PASS"
        result.result = verdict
        result.reason = "; ".join(report.get("reasons", []) or [])
        result.json_report = json.dumps(report)
        self.emit("cycle_result", run_id=run_id, result=verdict, summary=self.summary(report))
        if goal_handle.is_cancel_requested:
            goal_handle.canceled()
        elif result.success:
            goal_handle.succeed()
        else:
            goal_handle.abort()
        return result

    def summary(self, report: dict[str, Any]) -> dict[str, Any]:
        return {}
