"""``lifecycle_manager``: brings the device nodes up in order, watches them, never auto-recovers.

Parameters:
    managed_nodes (string[]): lifecycle nodes in bring-up order (default graph: from
        ``aseptic_cell.nodes.graph``). Every node's dependencies must come before it.
    dependencies (string[]): ``"node:dep1,dep2"`` entries ("node needs dep ACTIVE").
    heartbeat_period_s (float, wall, 0.5): how often each node's ``get_state`` is polled.
    heartbeat_timeout_s (float, wall, 2.0): a node whose ``get_state`` has not answered for
        this long, or whose ``/cell/<node>/state`` topic fell silent for this long, is lost.
    autostart (bool, true): bring the nodes up at start (else only on ``recover``).
    service_wait_s (float, wall, 60): bring-up waits this long for a node's services.
    transition_timeout_s (float, wall, 15): longest a configure/activate may take.
    state_types (string[]): extra ``"node:pkg/msg/Type"`` entries for the state topic watch
        (built in: isolator, vhp, autoclave, arm).
    supervisor_timeout_s (float, wall, 4.0): once ``/cell/batch/status`` has been heard, a
        silence this long is "SUPERVISOR LOST": alarm ``CELL_SUPERVISOR_LOST`` and every managed
        device sent to its safe state (:mod:`.supervisor_watch`); 0 disables the watch.

Bring-up (HABITS 5): for each node in declared order: wait for ``/<node>/get_state`` and
``/<node>/change_state``, then configure -> activate (a node already INACTIVE is only
activated, one already ACTIVE is left alone). A failed or timed-out transition aborts the
bring-up with a high-priority alarm naming node and transition. Tear-down at shutdown runs
in reverse order (deactivate -> cleanup), best effort.

Watch: every ``heartbeat_period_s`` (steady clock, not sim time) each node's ``get_state`` is
called asynchronously (one outstanding request per node; the executor never blocks). A node
that dies, stops answering, leaves ACTIVE without the manager asking, or whose state topic
falls silent is marked FAULTED: an Alarm (priority high) goes to ``/cell/alarms`` and every
node that depends on it, transitively, gets ``/cell/<dependant>/command``
DeviceCommand{command: "safe_state"}. Alarm ids (config/alarms.yaml, ``raised_by:
lifecycle_manager``): ``CELL_NODE_DIED`` (lost / left ACTIVE / state topic silent) and
``CELL_NODE_START_FAILED`` (bring-up or recovery transition failed), ``source`` = the node;
priority = the database's OPC UA severity of the alarm; state ACTIVE, RTN after recovery (RTN
only once no other node stands in the same alarm: one alarm, the message names the nodes).
Nothing recovers automatically: a node that comes back by itself stays FAULTED until
``/lifecycle_manager/recover`` (cell_interfaces/srv/Recover) is called for it. The Recover
answer says whether recovery started (node known, faulted, reachable, dependencies healthy);
its outcome is published on the status topic and the log, and as an Alarm state change (RTN
when recovered, a new alarm when it fails).

Topics: ``/cell/alarms`` (cell_interfaces/msg/Alarm; reliable, transient local, depth 50),
``/lifecycle_manager/status``
(std_msgs/msg/String, JSON, latched: transient local, depth 1).
Services: ``/lifecycle_manager/recover`` (cell_interfaces/srv/Recover).
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cell_interfaces.msg import Alarm
from cell_interfaces.srv import DeviceCommand, Recover
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSDurabilityPolicy, QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy
from rclpy.task import Future
from std_msgs.msg import String

from ..alarms.models import database_severity
from . import rosutil

NODE_NAME = "lifecycle_manager"
ALARM_TOPIC = "/cell/alarms"
WATCHDOG_TOPIC = "/cell/watchdog/alive"
"""std_msgs/String, every heartbeat_period_s: the supervisor's proof that its watchdog runs."""
# Alarm.priority carries the OPC UA A&C severity of the alarm's ISA-18.2 priority in the database
NODE_DIED_ALARM = "CELL_NODE_DIED"
NODE_START_FAILED_ALARM = "CELL_NODE_START_FAILED"
ALARM_ACTIVE, ALARM_RTN = "ACTIVE", "RTN"

ALARM_QOS = QoSProfile(
    depth=50,
    history=QoSHistoryPolicy.KEEP_LAST,
    reliability=QoSReliabilityPolicy.RELIABLE,
    durability=QoSDurabilityPolicy.TRANSIENT_LOCAL,
)

STATE_TYPES: dict[str, str] = {
    "isolator": "cell_interfaces/msg/IsolatorState",
    "vhp": "cell_interfaces/msg/VhpState",
    "autoclave": "cell_interfaces/msg/AutoclaveState",
    "arm": "cell_interfaces/msg/ArmState",
}

# health values in the status JSON
PENDING = "pending"  # not brought up yet
STARTING = "starting"  # a transition of ours is running
OK = "ok"  # ACTIVE and answering
FAULTED = "faulted"  # lost / left ACTIVE / transition failed; needs recover
BLOCKED = "blocked"  # healthy itself, but a dependency is faulted (was sent to safe state)
STOPPED = "stopped"  # torn down at shutdown

_TRANSITIONS = {
    "configure": (Transition.TRANSITION_CONFIGURE, "inactive"),
    "activate": (Transition.TRANSITION_ACTIVATE, "active"),
    "deactivate": (Transition.TRANSITION_DEACTIVATE, "inactive"),
    "cleanup": (Transition.TRANSITION_CLEANUP, "unconfigured"),
}


def parse_dependencies(entries: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """``["vhp:isolator,arm"]`` -> ``{"vhp": ("isolator", "arm")}``.

    Raises:
        ValueError: an entry without ``node:``.
    """
    deps: dict[str, tuple[str, ...]] = {}
    for entry in entries:
        node, sep, rest = entry.partition(":")
        if not sep or not node.strip():
            raise ValueError(f"dependencies entry {entry!r} is not 'node:dep1,dep2'")
        deps[node.strip()] = tuple(d.strip() for d in rest.split(",") if d.strip())
    return deps


def dependants_of(node: str, deps: dict[str, tuple[str, ...]]) -> list[str]:
    """Every node that depends on ``node``, directly or transitively (breadth first)."""
    out: list[str] = []
    frontier = [node]
    while frontier:
        current = frontier.pop(0)
        for other, needs in deps.items():
            if current in needs and other not in out and other != node:
                out.append(other)
                frontier.append(other)
    return out


@dataclass
class _Managed:
    name: str
    get_state: Any
    change_state: Any
    command: Any
    health: str = PENDING
    label: str = "unknown"  # last lifecycle state label reported by the node
    fault: str = ""
    blocked_by: list[str] = field(default_factory=list)
    last_ok: float = 0.0  # monotonic time of the last get_state answer
    hb_future: Future | None = None
    hb_sent: float = 0.0
    last_state_msg: float | None = None  # monotonic; None until the first message after activation
    alarm_id: str = ""
    fault_time: float = 0.0  # monotonic time of the last fault
    up_since: float = 0.0  # monotonic time the node was last brought up (activate ok)


@dataclass
class _Op:
    node: str
    step: str  # "probe" | "configure" | "activate"
    purpose: str  # "bringup" | "recover"
    deadline: float = 0.0
    future: Future | None = None
    sent_at: float = 0.0
    retries: int = 0  # transition re-probes after a lost reply


PROBE_RESEND_S = 3.0  # a get_state reply can be lost on a loaded machine: ask again
TRANSITION_REPROBES = 2  # a change_state reply lost: re-read the state instead of failing


class LifecycleManager(Node):
    def __init__(self, name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.declare_parameter("managed_nodes", Parameter.Type.STRING_ARRAY)
        self.declare_parameter("dependencies", Parameter.Type.STRING_ARRAY)
        self.declare_parameter("state_types", Parameter.Type.STRING_ARRAY)
        self.declare_parameter("heartbeat_period_s", 0.5)
        self.declare_parameter("heartbeat_timeout_s", 2.0)
        self.declare_parameter("autostart", True)
        self.declare_parameter("service_wait_s", 60.0)
        self.declare_parameter("transition_timeout_s", 15.0)
        self.declare_parameter("supervisor_timeout_s", 4.0)

        self.order: list[str] = self._str_list("managed_nodes")
        all_deps = parse_dependencies(self._str_list("dependencies"))
        # dependencies on unmanaged nodes cannot be watched: ignore them (logged)
        self.deps: dict[str, tuple[str, ...]] = {}
        for node, needs in all_deps.items():
            if node not in self.order:
                self.get_logger().warning(f"dependencies: {node} is not managed; entry ignored")
                continue
            kept = tuple(d for d in needs if d in self.order)
            if kept != needs:
                self.get_logger().warning(
                    f"dependencies of {node}: unmanaged {set(needs) - set(kept)} ignored"
                )
            for d in kept:
                if self.order.index(d) > self.order.index(node):
                    raise ValueError(f"managed_nodes order puts {node} before its dependency {d}")
            self.deps[node] = kept
        self.period = float(self.get_parameter("heartbeat_period_s").value)
        self.timeout = float(self.get_parameter("heartbeat_timeout_s").value)
        self.service_wait = float(self.get_parameter("service_wait_s").value)
        self.transition_timeout = float(self.get_parameter("transition_timeout_s").value)
        if not (0 < self.period < self.timeout):
            raise ValueError(
                f"need 0 < heartbeat_period_s ({self.period}) < heartbeat_timeout_s ({self.timeout})"
            )
        state_types = dict(STATE_TYPES)
        for entry in self._str_list("state_types"):
            node, sep, typ = entry.partition(":")
            if not sep:
                raise ValueError(f"state_types entry {entry!r} is not 'node:pkg/msg/Type'")
            state_types[node.strip()] = typ.strip()

        self.phase = "idle"  # idle | bringup | running | failed | teardown
        self.nodes: dict[str, _Managed] = {}
        for n in self.order:
            self.nodes[n] = _Managed(
                n,
                self.create_client(GetState, f"/{n}/get_state"),
                self.create_client(ChangeState, f"/{n}/change_state"),
                self.create_client(DeviceCommand, f"/cell/{n}/command"),
            )
            if n in state_types:
                msg_type = rosutil.import_type(state_types[n])
                qos = QoSProfile(
                    depth=5,
                    reliability=QoSReliabilityPolicy.BEST_EFFORT,
                    durability=QoSDurabilityPolicy.VOLATILE,
                )
                self.create_subscription(msg_type, f"/cell/{n}/state", self._state_cb(n), qos)
        self._ops: deque[_Op] = deque()
        self._cmd_futures: list[tuple[str, Future]] = []
        # safe_state requests are signed as the lifecycle manager (scope safe_state, issue 12)
        from ..security import SecurityError, Signer

        try:
            self._signer: Signer | None = Signer("lifecycle_manager")
        except SecurityError as exc:
            self._signer = None
            self.get_logger().error(f"no lifecycle_manager key: safe_state will be refused ({exc})")
        self._pumping = False

        # alarms: reliable + transient local (depth 50), so a subscriber that joins late (HMI
        # restart, alarm manager start-up) still gets the recent occurrences; compatible with
        # volatile subscribers too.
        self.alarm_pub = self.create_publisher(Alarm, ALARM_TOPIC, ALARM_QOS)
        latched = QoSProfile(
            depth=1,
            history=QoSHistoryPolicy.KEEP_LAST,
            reliability=QoSReliabilityPolicy.RELIABLE,
            durability=QoSDurabilityPolicy.TRANSIENT_LOCAL,
        )
        self.status_pub = self.create_publisher(String, f"/{self.get_name()}/status", latched)
        # the watchdog's own heartbeat: the supervisor holds a batch when it falls silent
        self.alive_pub = self.create_publisher(String, WATCHDOG_TOPIC, 10)
        self.create_service(Recover, f"/{self.get_name()}/recover", self._on_recover)
        from .supervisor_watch import SupervisorWatch

        sup_timeout = float(self.get_parameter("supervisor_timeout_s").value)
        self.supervisor_watch = SupervisorWatch(
            self, sup_timeout, lambda aid, src, st, msg: self._publish_alarm(aid, src, st, msg),
            lambda n, why: self._command_safe_state(self.nodes[n], why)) if sup_timeout > 0 else None
        self._last_pump = time.monotonic()
        self._tick_timer = rosutil.wall_timer(self, 0.05, self._pump)
        self._hb_timer = rosutil.wall_timer(self, self.period, self._heartbeat)
        self._last_status = ""

        self.get_logger().info(
            f"managing {self.order} deps={self.deps} heartbeat {self.period}s/{self.timeout}s (wall)"
        )
        if self.get_parameter("autostart").value and self.order:
            self.start_bringup()
        else:
            self._publish_status(force=True)

    # --- parameters ------------------------------------------------------------------

    def _str_list(self, name: str) -> list[str]:
        try:
            value = self.get_parameter(name).value
        except ParameterUninitializedException:
            return []
        return [str(v) for v in (value or [])]

    # --- bring-up / recovery pipeline (driven by the 20 Hz wall tick and done callbacks) --

    def start_bringup(self) -> None:
        self.phase = "bringup"
        self.get_logger().info(f"bring-up in order: {', '.join(self.order)}")
        for n in self.order:
            if self.nodes[n].health in (PENDING, STOPPED):
                self._ops.append(_Op(n, "probe", "bringup"))
        self._publish_status(force=True)
        self._pump()

    def _pump(self) -> None:
        if self._pumping:  # a done callback fired inside the pump
            return
        self._pumping = True
        try:
            self._pump_once()
        finally:
            self._pumping = False

    def _pump_once(self) -> None:
        now = time.monotonic()
        if now - self._last_pump > self.timeout / 2:
            # we were frozen (SIGSTOP, a stalled host): the silence was ours, not the nodes' or the
            # supervisor's; judge them afresh from now (a node really lost meanwhile: one timeout later)
            self.get_logger().warning(f"lifecycle manager stalled {now - self._last_pump:.1f} s; watch re-armed")
            for m in self.nodes.values():
                m.last_ok = max(m.last_ok, now)
                if m.last_state_msg is not None:
                    m.last_state_msg = max(m.last_state_msg, now)
            if self.supervisor_watch is not None:
                self.supervisor_watch.rearm(now)
        self._last_pump = now
        self._check_heartbeats(now)
        if self.supervisor_watch is not None and self.supervisor_watch.check(now):
            self.get_logger().error(f"{self.supervisor_watch.status()}: SUPERVISOR LOST, devices sent to safe state")
        self._reap_commands()
        while self._ops:
            op = self._ops[0]
            m = self.nodes[op.node]
            if op.future is None:
                if not self._start_op(op, m, now):
                    break  # waiting (for services)
                continue
            if not op.future.done():
                client = m.get_state if op.step == "probe" else m.change_state
                if op.step == "probe" and now - op.sent_at > PROBE_RESEND_S and now <= op.deadline:
                    client.remove_pending_request(op.future)
                    op.future = None  # re-sent by _start_op on the next pass
                    self.get_logger().warning(f"{op.purpose}: no get_state answer from {op.node} yet; asking again")
                    break
                if op.step != "probe" and now > op.deadline and op.retries < TRANSITION_REPROBES:
                    client.remove_pending_request(op.future)
                    self._ops.popleft()
                    # the node's remaining queued steps are re-derived from the state the probe reads
                    self._ops = type(self._ops)(
                        o for o in self._ops if not (o.node == op.node and o.purpose == op.purpose)
                    )
                    self.get_logger().warning(
                        f"{op.purpose}: no answer to {op.step} of {op.node} within {self.transition_timeout} s; "
                        "re-reading its lifecycle state")
                    self._ops.appendleft(_Op(op.node, "probe", op.purpose, retries=op.retries + 1))
                    continue
                if now > op.deadline:
                    client = m.get_state if op.step == "probe" else m.change_state
                    client.remove_pending_request(op.future)
                    what = "get_state" if op.step == "probe" else op.step
                    self._op_failed(
                        op,
                        f"{what} of {op.node} timed out after "
                        f"{self.service_wait if op.step == 'probe' else self.transition_timeout} s",
                    )
                break
            self._ops.popleft()
            self._op_done(op, m)
        self._publish_status()

    def _start_op(self, op: _Op, m: _Managed, now: float) -> bool:
        if op.step == "probe":
            if not op.deadline:
                op.deadline = now + self.service_wait
                m.health = STARTING
                self.get_logger().info(f"{op.purpose}: waiting for {op.node}'s lifecycle services")
            if not (m.get_state.service_is_ready() and m.change_state.service_is_ready()):
                if now > op.deadline:
                    self._ops.popleft()
                    self._op_failed(
                        op, f"{op.node}: lifecycle services not available within {self.service_wait} s"
                    )
                    return True
                return False
            op.future = m.get_state.call_async(GetState.Request())
            op.sent_at = now
        else:
            tid, _ = _TRANSITIONS[op.step]
            self.get_logger().info(f"{op.purpose}: {op.step} {op.node}")
            op.deadline = now + self.transition_timeout
            op.future = m.change_state.call_async(ChangeState.Request(transition=Transition(id=tid)))
        op.future.add_done_callback(lambda _f: self._pump())
        return True

    def _op_done(self, op: _Op, m: _Managed) -> None:
        try:
            result = op.future.result() if op.future is not None else None
        except Exception as exc:  # noqa: BLE001
            self._op_failed(op, f"{op.step} of {op.node} raised {exc!r}")
            return
        if result is None:
            raise RuntimeError(f"{op.step} of {op.node}: finished without a service answer")
        if op.step == "probe":
            label = result.current_state.label
            m.label = label
            m.last_ok = time.monotonic()
            steps = {"unconfigured": ["configure", "activate"], "inactive": ["activate"], "active": []}.get(
                label
            )
            if steps is None:
                self._op_failed(op, f"{op.node} is in state '{label}'; cannot bring it up")
                return
            self.get_logger().info(f"{op.purpose}: {op.node} is {label}")
            for step in reversed(steps):
                self._ops.appendleft(_Op(op.node, step, op.purpose, retries=op.retries))
            if not steps:
                self._node_up(op, m)
            return
        if not result.success:
            self._op_failed(op, f"{op.step} of {op.node} failed (the node refused the transition)")
            return
        m.label = _TRANSITIONS[op.step][1]
        m.last_ok = time.monotonic()
        self.get_logger().info(f"{op.purpose}: {op.node} {op.step} ok -> {m.label}")
        if op.step == "activate":
            self._node_up(op, m)

    def _node_up(self, op: _Op, m: _Managed) -> None:
        m.health = OK
        m.last_ok = time.monotonic()
        m.up_since = m.last_ok
        m.last_state_msg = None
        was_faulted = bool(m.fault)
        m.fault = ""
        for other in self.nodes.values():  # unblock dependants
            if op.node in other.blocked_by:
                other.blocked_by.remove(op.node)
                if not other.blocked_by and other.health == BLOCKED:
                    other.health = OK
                    self.get_logger().info(
                        f"{other.name}: dependency {op.node} recovered; unblocked "
                        f"(it stays in its safe state until commanded)"
                    )
        if op.purpose == "recover":
            self.get_logger().warning(f"recover: {op.node} is ACTIVE again; fault cleared")
            if was_faulted and m.alarm_id:
                still = [x.name for x in self.nodes.values() if x.health == FAULTED and x.alarm_id == m.alarm_id]
                if still:  # one alarm for every node: it stands while any node is in it
                    self._publish_alarm(m.alarm_id, ", ".join(still), ALARM_ACTIVE,
                                        f"{op.node} recovered by operator; still faulted: {', '.join(still)}")
                else:
                    self._publish_alarm(m.alarm_id, op.node, ALARM_RTN, f"{op.node} recovered by operator")
            if self.phase == "failed" and all(x.health != FAULTED for x in self.nodes.values()):
                self.start_bringup()  # continue the aborted bring-up with the nodes not up yet
        if op.purpose == "bringup" and not any(o.purpose == "bringup" for o in self._ops):
            if self.phase == "bringup":
                self.phase = "running"
                self.get_logger().info(f"bring-up complete: {', '.join(self.order)} ACTIVE")

    def _op_failed(self, op: _Op, reason: str) -> None:
        m = self.nodes[op.node]
        if op.purpose == "bringup":
            dropped = [o for o in self._ops if o.purpose == "bringup"]
            self._ops = deque(o for o in self._ops if o.purpose != "bringup")
            self.phase = "failed"
            not_up = sorted({o.node for o in dropped} - {op.node})
            reason = f"bring-up aborted: {reason}" + (
                f"; not brought up: {', '.join(not_up)}" if not_up else ""
            )
            for n in not_up:
                self.nodes[n].health = PENDING
        else:
            reason = f"recovery of {op.node} failed: {reason}"
        self._fault(m, reason, cascade=True)

    # --- heartbeat ---------------------------------------------------------------------

    def _heartbeat(self) -> None:
        now = time.monotonic()
        self.alive_pub.publish(String(data=self.get_name()))
        for m in self.nodes.values():
            if m.hb_future is not None:
                if now - m.hb_sent < 2 * self.period:
                    continue  # one outstanding request per node
                # a reply can be lost on a loaded machine: ask again rather than wait it out
                m.get_state.remove_pending_request(m.hb_future)
                m.hb_future = None
            if not m.get_state.service_is_ready():
                continue
            m.hb_future = m.get_state.call_async(GetState.Request())
            m.hb_sent = now

    def _check_heartbeats(self, now: float) -> None:
        busy = {o.node for o in self._ops}
        for m in self.nodes.values():
            f = m.hb_future
            if f is not None and f.done():
                m.hb_future = None
                try:
                    label = f.result().current_state.label
                except Exception:  # noqa: BLE001
                    label = "unknown"
                else:
                    m.last_ok = now
                if label != m.label:
                    self.get_logger().info(f"{m.name}: lifecycle state {m.label} -> {label}")
                m.label = label
                # A reply to a request sent before the node was (re)activated describes the
                # old state (e.g. "inactive" during bring-up): it cannot mean "left ACTIVE".
                stale_reply = m.hb_sent < m.up_since
                if m.health in (OK, BLOCKED) and m.name not in busy and label != "active" and not stale_reply:
                    self._fault(m, f"{m.name} left ACTIVE unexpectedly (now {label})", cascade=True)
            elif f is not None and now - m.hb_sent > self.timeout:
                m.get_state.remove_pending_request(f)
                m.hb_future = None
            if m.health not in (OK, BLOCKED) or m.name in busy:
                continue
            state_alive = m.last_state_msg is not None and now - m.last_state_msg <= self.timeout
            if now - m.last_ok > self.timeout and not state_alive:
                self._fault(
                    m,
                    f"{m.name} lost: no get_state answer for {now - m.last_ok:.1f} s "
                    f"(heartbeat timeout {self.timeout} s)",
                    cascade=True,
                )
            elif m.last_state_msg is not None and now - m.last_state_msg > self.timeout:
                self._fault(
                    m,
                    f"{m.name} lost: /cell/{m.name}/state silent for {now - m.last_state_msg:.1f} s",
                    cascade=True,
                )

    def _state_cb(self, name: str) -> Callable[[Any], None]:
        def cb(_msg: Any) -> None:
            m = self.nodes[name]
            if m.health in (OK, BLOCKED):
                m.last_state_msg = time.monotonic()

        return cb

    # --- faults ------------------------------------------------------------------------

    def _fault(self, m: _Managed, reason: str, cascade: bool) -> None:
        m.health = FAULTED
        m.fault = reason
        m.fault_time = time.monotonic()
        if m.hb_future is not None:  # an answer to a request sent before the fault proves nothing
            m.get_state.remove_pending_request(m.hb_future)
        m.hb_future = None
        m.alarm_id = (
            NODE_START_FAILED_ALARM
            if "bring-up aborted" in reason or "recovery of" in reason
            else NODE_DIED_ALARM
        )
        self.get_logger().error(f"FAULT {m.name}: {reason}")
        self._publish_alarm(m.alarm_id, m.name, ALARM_ACTIVE, reason)
        if cascade:
            for dep in dependants_of(m.name, self.deps):
                d = self.nodes[dep]
                if m.name not in d.blocked_by:
                    d.blocked_by.append(m.name)
                if d.health == OK:
                    d.health = BLOCKED
                self._command_safe_state(d, f"dependency {m.name} lost: {reason}")
        self._publish_status(force=True)

    def _command_safe_state(self, d: _Managed, reason: str) -> None:
        if not d.command.service_is_ready():
            self.get_logger().error(
                f"safe_state for {d.name} NOT sent: /cell/{d.name}/command unavailable ({reason})"
            )
            return
        req = DeviceCommand.Request(
            device_id=d.name, command="safe_state", user=self.get_name(), reason=reason
        )
        if self._signer is not None:
            self._signer.sign(f"/cell/{d.name}/command", req, role="system")
        self.get_logger().warning(f"-> /cell/{d.name}/command safe_state ({reason})")
        self._cmd_futures.append((d.name, d.command.call_async(req)))

    def _reap_commands(self) -> None:
        keep = []
        for name, f in self._cmd_futures:
            if not f.done():
                keep.append((name, f))
                continue
            try:
                r = f.result()
                if r.accepted:
                    self.get_logger().info(f"safe_state of {name}: accepted ({r.reason})")
                else:
                    self.get_logger().error(f"safe_state of {name}: REFUSED ({r.code} {r.reason})")
            except Exception as exc:  # noqa: BLE001
                self.get_logger().error(f"safe_state of {name} failed: {exc!r}")
        self._cmd_futures = keep

    def _publish_alarm(self, alarm_id: str, source: str, state: str, message: str) -> None:
        self.alarm_pub.publish(
            Alarm(
                alarm_id=alarm_id,
                source=source,
                priority=database_severity(alarm_id),
                state=state,
                message=message,
                raised=rosutil.stamp_now(self),
            )
        )

    # --- recovery (explicit only) --------------------------------------------------------

    def _on_recover(self, req: Recover.Request, resp: Recover.Response) -> Recover.Response:
        name = req.device_id
        who = f"by {req.user or '?'} ({req.reason or 'no reason given'})"
        self.get_logger().warning(f"recover {name!r} requested {who}")
        m = self.nodes.get(name)
        if m is None:
            resp.accepted, resp.reason = False, f"unknown node {name!r}; managed: {', '.join(self.order)}"
        elif m.health != FAULTED:
            resp.accepted, resp.reason = False, f"{name} is not faulted (health {m.health})"
        elif any(o.node == name for o in self._ops):
            resp.accepted, resp.reason = False, f"{name}: an operation is already running"
        elif m.last_ok <= m.fault_time or time.monotonic() - m.last_ok > self.timeout:
            resp.accepted, resp.reason = (
                False,
                f"{name} is not reachable (no get_state answer since the fault)"
                if m.last_ok <= m.fault_time
                else f"{name} is not reachable (no get_state answer for "
                f"{time.monotonic() - m.last_ok:.1f} s)",
            )
        elif any(self.nodes[d].health == FAULTED for d in self.deps.get(name, ())):
            bad = [d for d in self.deps.get(name, ()) if self.nodes[d].health == FAULTED]
            resp.accepted, resp.reason = (
                False,
                f"{name}: dependency {', '.join(bad)} still faulted; recover it first",
            )
        else:
            resp.accepted, resp.reason = True, f"recovery of {name} started (state {m.label})"
            self._ops.append(_Op(name, "probe", "recover"))
            self._pump()
        # (rclpy loggers refuse a different severity at the same call site: two calls)
        if resp.accepted:
            self.get_logger().info(f"recover {name}: {resp.reason}")
        else:
            self.get_logger().error(f"recover {name} refused: {resp.reason}")
        return resp

    # --- status ------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "order": self.order,
            "supervisor": self.supervisor_watch.status()["lost"] if self.supervisor_watch is not None else None,
            "nodes": {
                m.name: {
                    "health": m.health,
                    "state": m.label,
                    "fault": m.fault,
                    "blocked_by": list(m.blocked_by),
                    "depends_on": list(self.deps.get(m.name, ())),
                }
                for m in self.nodes.values()
            },
        }

    def _publish_status(self, force: bool = False) -> None:
        text = json.dumps(self.status(), sort_keys=True)
        if force or text != self._last_status:
            self._last_status = text
            self.status_pub.publish(String(data=text))

    # --- tear-down (after spinning stopped; called from the main thread) ---------------

    def teardown(self, timeout_s: float = 3.0) -> None:
        """Deactivate -> cleanup every reachable node in reverse bring-up order (best effort)."""
        self.phase = "teardown"
        self._ops.clear()
        self.destroy_timer(self._hb_timer)
        self.destroy_timer(self._tick_timer)
        for name in reversed(self.order):
            m = self.nodes[name]
            if m.health in (PENDING, STOPPED) or not m.change_state.service_is_ready():
                continue
            if time.monotonic() - m.last_ok > self.timeout:
                self.get_logger().error(f"teardown: {name} not answering; skipped")
                continue
            try:
                state = rosutil.call_service(
                    self, m.get_state, GetState.Request(), timeout_s, wait_for_service=False
                ).current_state.label
                steps = {"active": ["deactivate", "cleanup"], "inactive": ["cleanup"]}.get(state, [])
                for step in steps:
                    r = rosutil.call_service(
                        self,
                        m.change_state,
                        ChangeState.Request(transition=Transition(id=_TRANSITIONS[step][0])),
                        timeout_s,
                        wait_for_service=False,
                    )
                    self.get_logger().info(f"teardown: {step} {name}: {'ok' if r.success else 'FAILED'}")
                    if not r.success:
                        break
                m.health = STOPPED
            except TimeoutError as exc:
                self.get_logger().error(f"teardown of {name}: {exc}")
        self._publish_status(force=True)


def main(argv: Sequence[str] | None = None) -> int:
    rosutil.init_ros(argv)
    try:
        node = LifecycleManager()
    except Exception:
        import rclpy

        rclpy.try_shutdown()
        raise
    return rosutil.spin_until_shutdown(node, on_shutdown=[node.teardown])


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.exit(main())
