"""A SMALL STAND-IN for the supervisor node (issue 4), for the HMI's end-to-end tests only.

It implements just enough of the supervisor contract of docs/ROS_API.md for the HMI to be
tested against the real device graph while the real supervisor is being built:

* ``/cell/operate``: role check (users.yaml) + the REAL interlock engine
  (``aseptic_cell.interlocks``, fed from ``/cell/<node>/signals``) + forwarding to the device
  node's ``/cell/<node>/command`` (whose own hard interlocks apply too); refusals recorded;
* ``/cell/batch/run`` (RunBatch) walks the recipe's phases (``phase_s`` wall seconds each);
  ``/cell/batch/command`` hold/restart/stop/abort/reset with role checks and e-signatures
  (``UserDirectory.sign``) recorded in the hash-chained batch record;
* a trip: isolator ΔP alarm -> alarm ``ISO1_DP_LOW`` (high) + batch HELD;
* ``/cell/batch/status``, ``/cell/interlocks``, ``/cell/tree``, ``/cell/alarms/active``,
  ``/cell/alarms/acknowledge``.

Not the supervisor: no behaviour trees, no ISA-18.2 alarm manager, no batch executive.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from cell_interfaces.action import RunBatch
from cell_interfaces.msg import (
    Alarm,
    AlarmArray,
    BatchStatus,
    InterlockStatus,
    InterlockStatusArray,
    IsolatorState,
    TreeSnapshot,
)
from cell_interfaces.srv import AcknowledgeAlarm, BatchCommand, DeviceCommand
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from std_msgs.msg import String

from aseptic_cell.auth import AuthError, PermissionDenied, UserDirectory, record_signature
from aseptic_cell.config import load_config
from aseptic_cell.interlocks import InterlockEngine, SignalTable
from aseptic_cell.nodes.rosutil import init_ros, spin_until_shutdown, stamp_now, wall_timer
from aseptic_cell.records import BatchRecord

NODES = ("isolator", "vhp", "autoclave", "arm")
# device command -> permission action (same table as the HMI's); interlock args
ACTIONS = {
    "open_door": "hatch.open_door",
    "close_door": "door.close",
    "dock_beta": "rtp.dock_beta",
    "lock_beta": "rtp.dock_beta",
    "unlock_beta": "rtp.undock_beta",
    "undock_beta": "rtp.undock_beta",
    "open_alpha": "rtp.open_alpha",
    "close_alpha": "door.close",
    "start_glove_test": "glove.test",
    "use_glove": "glove.use",
    "release_glove": "glove.use",
    "extend_glove": "glove.use",
    "retract_glove": "glove.use",
    "override_unload": "override",
}
STATE_NUM = {"satisfied": "SATISFIED", "not_satisfied": "VIOLATED", "unknown": "UNKNOWN"}


class WallClock:
    def now(self) -> float:
        return time.time()


class FakeSupervisor(Node):
    def __init__(self) -> None:
        super().__init__("supervisor")
        cb = ReentrantCallbackGroup()  # service/action handlers block on the device nodes' answers
        cfg_dir = self.declare_parameter("config_dir", "").value
        self.record_dir = Path(self.declare_parameter("record_dir", "/tmp").value)
        self.phase_s = float(self.declare_parameter("phase_s", 2.0).value)
        self.cfg = load_config(cfg_dir)
        self.users = UserDirectory.from_file(Path(cfg_dir) / "users.yaml", WallClock())
        self.signals = SignalTable()
        self.engine = InterlockEngine.from_config(self.cfg, time.monotonic, self.signals)
        self.state, self.batch_id, self.recipe_id, self.held_reason = "IDLE", "", "", ""
        self.phase_idx, self.phase_t = 0, 0.0
        self.record: BatchRecord | None = None
        self.phases: list[tuple[str, str, str]] = []
        self.alarms: dict[str, dict[str, Any]] = {}
        for n in NODES:
            self.create_subscription(String, f"/cell/{n}/signals", lambda m, n=n: self._on_signals(n, m), 10)
        self.create_subscription(IsolatorState, "/cell/isolator/state", self._on_iso, 10)
        self.lock = threading.RLock()
        self.dev = {
            n: self.create_client(DeviceCommand, f"/cell/{n}/command", callback_group=cb) for n in NODES
        }
        self.create_service(DeviceCommand, "/cell/operate", self._on_operate, callback_group=cb)
        self.create_service(
            BatchCommand, "/cell/batch/command", self._locked(self._on_batch_command), callback_group=cb
        )
        self.create_service(
            AcknowledgeAlarm, "/cell/alarms/acknowledge", self._locked(self._on_ack), callback_group=cb
        )
        ActionServer(
            self,
            RunBatch,
            "/cell/batch/run",
            self._execute,
            goal_callback=self._on_goal,
            cancel_callback=lambda _g: CancelResponse.ACCEPT,
            callback_group=cb,
        )
        self.status_pub = self.create_publisher(BatchStatus, "/cell/batch/status", 10)
        self.il_pub = self.create_publisher(InterlockStatusArray, "/cell/interlocks", 10)
        self.tree_pub = self.create_publisher(TreeSnapshot, "/cell/tree", 10)
        self.alarm_pub = self.create_publisher(AlarmArray, "/cell/alarms/active", 10)
        self.tick = 0
        wall_timer(self, 0.2, self._publish)

    def _locked(self, fn: Any) -> Any:
        def run(*a: Any) -> Any:
            with self.lock:
                return fn(*a)

        return run

    # ------------------------------------------------------------------ inputs
    def _on_signals(self, node: str, msg: String) -> None:
        d = json.loads(msg.data)
        if d.get("comm_ok"):
            self.signals.mark_comm_ok(node)
        else:
            self.signals.mark_comm_lost(node)
        self.signals.update_many(
            {k: v for k, v in d["signals"].items() if v is not None}, time.monotonic(), node
        )

    def _on_iso(self, msg: IsolatorState) -> None:
        aid = "ISO1_DP_LOW"
        if msg.dp_alarm and (aid not in self.alarms or self.alarms[aid]["state"] in ("RTN_UNACK",)):
            self.alarms[aid] = {
                "priority": 800,
                "state": "UNACK",
                "raised": stamp_now(self),
                "source": "ISO1",
                "message": f"isolator dP {msg.dp_pa:.1f} Pa out of band (IL-04 guard)",
            }
            if self.state == "RUNNING":
                self._transition(
                    "HELD", f"interlock trip: isolator dP {msg.dp_pa:.1f} Pa out of band", actor="system"
                )
        elif not msg.dp_alarm and aid in self.alarms:
            a = self.alarms[aid]
            if a["state"] == "UNACK":
                a["state"] = "RTN_UNACK"
            elif a["state"] == "ACKED":
                del self.alarms[aid]

    # ------------------------------------------------------------------ record
    def _rec(
        self,
        kind: str,
        actor: str,
        action: str,
        reason: str = "",
        payload: dict | None = None,
        role: str = "",
    ) -> None:
        if self.record is not None:
            self.record.append(
                kind,
                batch_id=self.batch_id,
                actor=actor,
                role=role,
                action=action,
                reason=reason,
                payload=payload or {},
            )

    def _transition(self, to: str, reason: str, actor: str) -> None:
        self._rec("phase_transition", actor, f"batch.state.{to}", reason, {"from": self.state, "to": to})
        self.state = to
        self.held_reason = reason if to == "HELD" else ""

    # ------------------------------------------------------------------ services
    def _on_operate(self, req: Any, resp: Any) -> Any:
        args = json.loads(req.args_json or "{}")
        action = ACTIONS.get(req.command, f"{req.device_id}.{req.command}")
        if req.device_id == "autoclave" and req.command == "open_door":
            action = f"autoclave.open_{args.get('side')}"
        try:
            self.users.authorize(req.user, action)
        except PermissionDenied as exc:
            resp.accepted, resp.code, resp.reason = False, "ROLE", exc.reason
            self._rec("refusal", req.user, action, exc.reason)
            return resp
        il_args = {k: str(v) for k, v in args.items() if k in ("door", "rtp", "port")}
        try:
            decision = self.engine.check(action, il_args)
        except ValueError as exc:
            resp.accepted, resp.code, resp.reason = False, "INVALID", str(exc)
            return resp
        if not decision.allowed:
            resp.accepted, resp.code = False, ",".join(decision.denied_by)
            resp.reason = decision.message
            self._rec("refusal", req.user, action, decision.message, {"rules": decision.denied_by})
            return resp
        fwd = DeviceCommand.Request(
            device_id=req.device_id,
            command=req.command,
            args_json=req.args_json,
            user=req.user,
            reason=req.reason,
        )
        client = self.dev[req.device_id]
        deadline = time.monotonic() + 10.0
        while not client.service_is_ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        fut = client.call_async(fwd)
        done = threading.Event()
        fut.add_done_callback(lambda _f: done.set())
        if not done.wait(10.0):
            resp.accepted, resp.code, resp.reason = False, "TIMEOUT", f"{req.device_id} did not answer"
            return resp
        r = fut.result()
        resp.accepted, resp.code, resp.reason, resp.payload_json = (
            r.accepted,
            r.code,
            r.reason,
            r.payload_json,
        )
        self._rec("command" if r.accepted else "refusal", req.user, action, req.reason or r.reason)
        return resp

    def _on_batch_command(self, req: Any, resp: Any) -> Any:
        action = f"batch.{req.command}"
        allowed_from = {
            "hold": ("RUNNING",),
            "restart": ("HELD",),
            "stop": ("RUNNING", "HELD"),
            "abort": ("RUNNING", "HELD"),
            "reset": ("COMPLETE", "STOPPED", "ABORTED"),
        }
        resp.state = self.state
        try:
            rule = self.users.authorize(req.user, action)
            if req.command not in allowed_from or self.state not in allowed_from[req.command]:
                resp.accepted, resp.code = False, "STATE"
                resp.reason = f"{req.command} not possible in state {self.state}"
                return resp
            if rule.signature:
                head = self.record.head()[1] if self.record else hashlib.sha256(b"").hexdigest()
                sig = self.users.sign(req.user, req.password, req.meaning, head, action=action)
                if self.record is not None:
                    record_signature(self.record, sig, batch_id=self.batch_id, reason=req.reason)
        except (AuthError, ValueError) as exc:
            resp.accepted, resp.code, resp.reason = False, "AUTH", getattr(exc, "reason", str(exc))
            self._rec("refusal", req.user, action, resp.reason)
            return resp
        to = {"hold": "HELD", "restart": "RUNNING", "stop": "STOPPED", "abort": "ABORTED", "reset": "IDLE"}
        self._transition(to[req.command], req.reason or req.command, actor=req.user)
        resp.accepted, resp.code, resp.reason, resp.state = True, "OK", f"batch {self.state}", self.state
        return resp

    def _on_ack(self, req: Any, resp: Any) -> Any:
        a = self.alarms.get(req.alarm_id)
        if a is None or a["state"] not in ("UNACK", "RTN_UNACK"):
            resp.accepted, resp.reason = False, f"{req.alarm_id} is not an unacknowledged alarm"
            return resp
        self._rec("alarm", req.user, "alarm.ack", req.comment, {"alarm_id": req.alarm_id})
        if a["state"] == "RTN_UNACK":
            del self.alarms[req.alarm_id]
        else:
            a["state"] = "ACKED"
        resp.accepted, resp.reason = True, "acknowledged"
        return resp

    # ------------------------------------------------------------------ batch run
    def _on_goal(self, goal: Any) -> GoalResponse:
        ok = self.state in ("IDLE", "COMPLETE", "STOPPED", "ABORTED") and goal.recipe_id in self.cfg.recipes
        return GoalResponse.ACCEPT if ok else GoalResponse.REJECT

    def _execute(self, gh: Any) -> Any:
        g = gh.request
        self.batch_id, self.recipe_id = g.batch_id, g.recipe_id
        self.phases = [(up.id, op.id, ph.id) for up, op, ph in self.cfg.recipe(g.recipe_id).phases()]
        if self.record is not None:
            self.record.close()
        self.record = BatchRecord(self.record_dir / f"{g.batch_id}.db", WallClock())
        self._rec("note", g.user, "batch.start", f"recipe {g.recipe_id}")
        self.phase_idx, self.phase_t = 0, 0.0
        self._transition("RUNNING", "start", actor=g.user)
        last = time.monotonic()
        while self.state in ("RUNNING", "HELD") and self.phase_idx < len(self.phases):
            time.sleep(0.1)
            now = time.monotonic()
            if self.state == "RUNNING":
                self.phase_t += now - last
                if self.phase_t >= self.phase_s:
                    self.phase_idx, self.phase_t = self.phase_idx + 1, 0.0
            last = now
        if self.state == "RUNNING":
            self._transition("COMPLETE", "all phases done", actor="system")
        gh.succeed()
        return RunBatch.Result(
            success=self.state == "COMPLETE",
            state=self.state,
            reason="",
            record_path=str(self.record.path) if self.record else "",
        )

    # ------------------------------------------------------------------ outputs
    def _publish(self) -> None:
        self.tick += 1
        up, op, ph = self.phases[min(self.phase_idx, len(self.phases) - 1)] if self.phases else ("", "", "")
        self.status_pub.publish(
            BatchStatus(
                stamp=stamp_now(self),
                batch_id=self.batch_id,
                recipe_id=self.recipe_id,
                recipe_version=1,
                state=self.state,
                packml_state={"RUNNING": "Execute", "HELD": "Held"}.get(self.state, self.state.title()),
                unit_procedure=up,
                operation=op,
                phase=ph,
                phase_state=self.state,
                phase_progress=min(1.0, self.phase_t / self.phase_s),
                held_reason=self.held_reason,
                record_path=str(self.record.path) if self.record else "",
            )
        )
        rules = []
        for st in self.engine.evaluate_all():
            rules.append(
                InterlockStatus(
                    rule_id=st.rule_id,
                    instance=",".join(f"{k}={v}" for k, v in sorted(st.binding.items())),
                    title=st.title,
                    state=STATE_NUM[st.state],
                    severity=st.severity,
                    basis="",
                    guards=list(st.guards),
                    reasons=[c.text for c in st.clauses],
                )
            )
        self.il_pub.publish(InterlockStatusArray(stamp=stamp_now(self), rules=rules))
        names = ["batch", "interlocks ok", *[p[2] for p in self.phases]]
        sts = [
            "RUNNING" if self.state == "RUNNING" else "INVALID",
            "FAILURE" if self.state == "HELD" else "SUCCESS",
        ]
        sts += [
            "SUCCESS"
            if i < self.phase_idx
            else "RUNNING"
            if i == self.phase_idx and self.state == "RUNNING"
            else "INVALID"
            for i in range(len(self.phases))
        ]
        self.tree_pub.publish(
            TreeSnapshot(
                stamp=stamp_now(self),
                tree_id=f"batch:{self.recipe_id or '-'}",
                tick=self.tick,
                names=names,
                types=["Sequence", "EternalGuard", *["Phase"] * len(self.phases)],
                statuses=sts,
                parents=[-1, 0, *[0] * len(self.phases)],
                messages=[self.state, self.held_reason, *[""] * len(self.phases)],
            )
        )
        self.alarm_pub.publish(
            AlarmArray(
                stamp=stamp_now(self),
                flood=False,
                alarms=[
                    Alarm(
                        alarm_id=k,
                        source=a["source"],
                        priority=a["priority"],
                        state=a["state"],
                        message=a["message"],
                        raised=a["raised"],
                    )
                    for k, a in self.alarms.items()
                ],
            )
        )


def main() -> int:
    init_ros(sys.argv)
    return spin_until_shutdown(FakeSupervisor(), MultiThreadedExecutor(num_threads=4))


if __name__ == "__main__":
    sys.exit(main())
