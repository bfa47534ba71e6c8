"""A synchronous client of the cell's ROS 2 graph (demo sequence, system tests, tools).

It runs its own rclpy context and executor on a background thread, so its methods may block
while waiting for a service reply, an action result or a state condition. It caches the
latest state message of each device node and every event published on ``/cell/events``.

Every request it sends is signed (issue 12, :mod:`aseptic_cell.security`) as its
``principal``: ``cli`` by default (a front end: the supervisor's operator services accept it,
the device nodes refuse it), or ``$ASEPTIC_CELL_CLIENT_PRINCIPAL`` (the test suite's ``bench``
principal may also command devices directly, in the test trust list only).
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Reply:
    accepted: bool
    code: str
    reason: str
    payload: dict[str, Any]


@dataclass
class BatchGoal:
    """A RunBatch goal in flight (:meth:`CellClient.start_batch`): ``accepted`` by the action server
    (a refusal still arrives as an unsuccessful result), ``feedback`` the last one received (its
    ``batch_id`` is this goal's batch), :meth:`result` waits for the end."""

    batch_id: str
    accepted: bool
    _future: Any = None
    _client: Any = None
    feedback: Any = None

    def done(self) -> bool:
        return self._future is None or bool(self._future.done())

    def result(self, timeout_s: float) -> Any:
        """The RunBatch result (``success``, ``state``, ``reason``, ``record_path``, ``json_summary``);
        None if the goal was not accepted. Raises TimeoutError."""
        if self._future is None:
            return None
        return self._client._wait_future(self._future, timeout_s).result


NEW_CLIENT_SETTLE_S = 0.3
"""Wall seconds a newly created service client waits after it first sees the service."""

STATE_TYPES = {"isolator": "IsolatorState", "vhp": "VhpState", "autoclave": "AutoclaveState", "arm": "ArmState"}


class CellClient:
    def __init__(self, *, domain_id: int | None = None, name: str | None = None,
                 principal: str | None = None) -> None:
        import cell_interfaces.msg as cim
        from cell_interfaces.msg import Alarm
        from std_msgs.msg import String

        from .nodes.background import BackgroundRos
        from .security import SecurityError, Signer

        self.principal = principal or os.environ.get("ASEPTIC_CELL_CLIENT_PRINCIPAL", "") or "cli"
        try:
            self._signer: Signer | None = Signer(self.principal)
        except SecurityError:  # unsigned: every node refuses (fail closed)
            self._signer = None
        self._ros = BackgroundRos(name or f"cell_client_{uuid.uuid4().hex[:8]}", domain_id=domain_id,
                                  thread_name="cell-client")
        self._ctx = self._ros.context
        self._executor = self._ros.executor
        self.node = self._ros.node
        self._lock = threading.Lock()
        self.states: dict[str, Any] = {}
        self.state_wall: dict[str, float] = {}
        self.events: list[dict[str, Any]] = []
        self.alarms: list[Any] = []
        for node_name, type_name in STATE_TYPES.items():
            self.node.create_subscription(getattr(cim, type_name), f"/cell/{node_name}/state",
                                          functools.partial(self._on_state, node_name), 10)
        self.node.create_subscription(String, "/cell/events", self._on_event, 100)
        self.node.create_subscription(Alarm, "/cell/alarms", self._on_alarm, 50)
        self._clients: dict[tuple[str, str], Any] = {}
        self._actions: dict[str, Any] = {}
        self._ros.start()

    # ------------------------------------------------------------------ plumbing
    def close(self) -> None:
        self._ros.close()

    def __enter__(self) -> CellClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _on_state(self, node_name: str, msg: Any) -> None:
        with self._lock:
            self.states[node_name] = msg
            self.state_wall[node_name] = time.monotonic()

    def _on_event(self, msg: Any) -> None:
        try:
            ev = json.loads(msg.data)
        except ValueError:
            return
        with self._lock:
            self.events.append(ev)

    def _on_alarm(self, msg: Any) -> None:
        with self._lock:
            self.alarms.append(msg)

    def state(self, node_name: str) -> Any:
        with self._lock:
            return self.states.get(node_name)

    def _wait_future(self, future: Any, timeout_s: float) -> Any:
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(timeout_s):
            future.cancel()
            raise TimeoutError(f"no reply within {timeout_s:.1f} s")
        return future.result()

    def _client(self, srv_type: Any, name: str) -> Any:
        key = (srv_type.__name__, name)
        new = key not in self._clients
        if new:
            self._clients[key] = self.node.create_client(srv_type, name)
        c = self._clients[key]
        deadline = time.monotonic() + 30.0
        while not c.service_is_ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"service {name} not available")
            time.sleep(0.02)
        if new:
            # "ready" means our request writer matched the server; its reply writer may not have
            # matched our reader yet, and a reply sent before that is lost (commands are not
            # retried: they are not all idempotent). Give discovery a moment on first use.
            time.sleep(NEW_CLIENT_SETTLE_S)
        return c

    def sign(self, target: str, req: Any) -> Any:
        """``req`` with its ``auth`` envelope for ``target`` (unchanged if this client has no key)."""
        return self._signer.sign(target, req) if self._signer is not None else req

    def call(self, srv_type: Any, name: str, req: Any, timeout_s: float = 20.0) -> Any:
        """Call service ``name`` with ``req`` signed; the response."""
        c = self._client(srv_type, name)
        return self._wait_future(c.call_async(self.sign(name, req)), timeout_s)

    # ------------------------------------------------------------------ waiting
    def wait_for(self, predicate: Callable[[], bool], timeout_s: float, what: str = "condition",
                 poll_s: float = 0.02) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if predicate():
                    return
            except (AttributeError, TypeError, IndexError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout_s:.1f} s waiting for {what}")
            time.sleep(poll_s)

    def wait_state(self, node_name: str, predicate: Callable[[Any], bool], timeout_s: float,
                   what: str = "") -> Any:
        self.wait_for(lambda: self.state(node_name) is not None and predicate(self.state(node_name)),
                      timeout_s, what or f"{node_name} state condition")
        return self.state(node_name)

    # ------------------------------------------------------------------ commands
    def command(self, node_name: str, command: str, args: dict[str, Any] | None = None, *,
                user: str = "operator", reason: str = "", timeout_s: float = 20.0) -> Reply:
        from cell_interfaces.srv import DeviceCommand

        req = DeviceCommand.Request(command=command, args_json=json.dumps(args or {}), user=user, reason=reason)
        r = self.call(DeviceCommand, f"/cell/{node_name}/command", req, timeout_s)
        return Reply(r.accepted, r.code, r.reason, json.loads(r.payload_json or "{}"))

    def door(self, node_name: str, door: str, command: str, *, user: str = "operator", reason: str = "") -> Reply:
        from cell_interfaces.srv import DoorCommand

        r = self.call(DoorCommand, f"/cell/{node_name}/door",
                      DoorCommand.Request(door=door, command=command, user=user, reason=reason))
        return Reply(r.accepted, r.code, r.reason, {})

    def port(self, rtp: str, command: str, *, beta_id: str = "", sterile: str = "", user: str = "operator",
             reason: str = "") -> Reply:
        from cell_interfaces.srv import PortCommand

        r = self.call(PortCommand, "/cell/isolator/port", PortCommand.Request(
            rtp_id=rtp, command=command, beta_id=beta_id, beta_sterile_status=sterile, user=user, reason=reason))
        return Reply(r.accepted, r.code, r.reason, {})

    def glove(self, port: str, command: str, *, user: str = "operator", reason: str = "") -> Reply:
        from cell_interfaces.srv import GloveCommand

        r = self.call(GloveCommand, "/cell/isolator/glove",
                      GloveCommand.Request(port_id=port, command=command, user=user, reason=reason))
        return Reply(r.accepted, r.code, r.reason, {})

    def recover(self, node_name: str, *, user: str, reason: str) -> Reply:
        from cell_interfaces.srv import Recover

        r = self.call(Recover, f"/cell/{node_name}/recover",
                      Recover.Request(device_id=node_name, user=user, reason=reason))
        return Reply(r.accepted, "OK" if r.accepted else "REFUSED", r.reason, {})

    # ------------------------------------------------------------------ actions
    def set_sim_speed(self, speed: float, *, node: str = "/sim_world") -> None:
        """Change sim_world's speed-up while it runs (0 = as fast as possible)."""
        from rcl_interfaces.msg import ParameterType, ParameterValue

        self._set_parameter(node, "speed", ParameterValue(type=ParameterType.PARAMETER_DOUBLE,
                                                           double_value=float(speed)))

    def pause_sim(self, paused: bool = True, *, node: str = "/sim_world") -> None:
        """Stop (or restart) sim time; the nodes keep running and answering."""
        from rcl_interfaces.msg import ParameterType, ParameterValue

        self._set_parameter(node, "paused", ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=paused))

    def _set_parameter(self, node: str, name: str, value: Any) -> None:
        from rcl_interfaces.msg import Parameter
        from rcl_interfaces.srv import SetParameters

        r = self._wait_future(self._client(SetParameters, f"{node}/set_parameters").call_async(
            SetParameters.Request(parameters=[Parameter(name=name, value=value)])), 10.0)
        if not r.results or not r.results[0].successful:
            raise ValueError(f"{node} refused {name}: {r.results[0].reason if r.results else 'no result'}")

    def _action_client(self, action_type: Any, name: str) -> Any:
        from rclpy.action import ActionClient

        new = name not in self._actions
        if new:
            self._actions[name] = ActionClient(self.node, action_type, name)
        ac = self._actions[name]
        deadline = time.monotonic() + 30.0
        while not ac.server_is_ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"action server {name} not available")
            time.sleep(0.02)
        if new:
            time.sleep(NEW_CLIENT_SETTLE_S)  # as in _client: let the reply paths match too
        return ac

    def run_action(self, action_type: Any, name: str, goal: Any, timeout_s: float,
                   feedback: Callable[[Any], None] | None = None) -> tuple[bool, Any]:
        """Send a goal and wait for its result: (accepted, result)."""
        from aseptic_cell.nodes.rosutil import on_executor

        ac = self._action_client(action_type, name)
        # sent from the executor thread: see rosutil.on_executor (a race in rclpy's action client)
        if hasattr(goal, "auth"):
            self.sign(name, goal)
        sent = on_executor(self._executor, ac.send_goal_async, goal,
                           (lambda fb: feedback(fb.feedback)) if feedback else None)
        gh = self._wait_future(sent, 30.0)
        if not gh.accepted:
            return False, None
        res = self._wait_future(on_executor(self._executor, gh.get_result_async), timeout_s)
        return True, res.result

    def start_batch(self, recipe_id: str, batch_id: str, *, user: str, coi: str = "", din: str = "",
                    feedback: Callable[[Any], None] | None = None) -> BatchGoal:
        """Send a signed RunBatch goal (``/cell/batch/run``) and return at once with its
        :class:`BatchGoal`; several may run at once. ``coi`` and ``din``: a patient batch (a recipe
        whose phase is a ``process``, e.g. PATIENT-CART-SHORT); both empty: a campaign batch."""
        from cell_interfaces.action import RunBatch

        from aseptic_cell.nodes.rosutil import on_executor

        goal = RunBatch.Goal(recipe_id=recipe_id, batch_id=batch_id, user=user, coi=coi, din=din)
        self.sign("/cell/batch/run", goal)
        bg = BatchGoal(batch_id, False)

        def on_fb(fb: Any) -> None:
            bg.feedback = fb.feedback
            if feedback is not None:
                feedback(fb.feedback)

        ac = self._action_client(RunBatch, "/cell/batch/run")
        gh = self._wait_future(on_executor(self._executor, ac.send_goal_async, goal, on_fb), 30.0)
        if gh.accepted:
            bg.accepted, bg._client = True, self
            bg._future = on_executor(self._executor, gh.get_result_async)
        return bg

    def run_batch(self, recipe_id: str, batch_id: str, *, user: str, coi: str = "", din: str = "",
                  timeout_s: float = 4 * 3600.0, feedback: Callable[[Any], None] | None = None) -> Any:
        """:meth:`start_batch` and wait for its result (None if the goal was not accepted)."""
        return self.start_batch(recipe_id, batch_id, user=user, coi=coi, din=din, feedback=feedback).result(timeout_s)

    def run_cycle(self, node_name: str, program_id: str, *, batch_id: str = "", timeout_s: float = 600.0,
                  feedback: Callable[[Any], None] | None = None) -> Any:
        from cell_interfaces.action import RunCycle

        action = "run_cycle" if node_name == "vhp" else "run_program"
        goal = RunCycle.Goal(device_id="", program_id=program_id, batch_id=batch_id)
        _accepted, result = self.run_action(RunCycle, f"/cell/{node_name}/{action}", goal, timeout_s, feedback)
        return result

    def move_arm(self, pose: str, target_q: list[float], *, speed_class: str = "transit",
                 user: str = "operator", tolerance_rad: float = 0.02, timeout_s: float = 120.0) -> Reply:
        """Plan + check + execute a move to a named pose; wait until the arm is there and stopped."""
        reply = self.command("arm", "move_to_pose", {"pose": pose, "speed_class": speed_class}, user=user,
                             reason=f"move to {pose}")
        if not reply.accepted:
            return reply

        def arrived() -> bool:
            s = self.state("arm")
            if s is None or s.moving or s.protective_stop:
                return bool(s is not None and s.protective_stop)
            return max(abs(a - b) for a, b in zip(s.joint_positions, target_q, strict=False)) <= tolerance_rad

        self.wait_for(arrived, timeout_s, f"arm at {pose}")
        s = self.state("arm")
        if s.protective_stop:
            return Reply(False, "PROTECTIVE_STOP", s.protective_stop_reason, {})
        return reply
