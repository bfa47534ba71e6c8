"""Lifecycle device node: the thin ROS adapter around one device backend.

Lifecycle (HABITS 5/6): UNCONFIGURED → ``configure`` loads and validates the configuration
and connects the backend selected by the ``hardware`` parameter (an invalid parameter file or
an unreachable device fails the transition with the reason) → INACTIVE: connected, state is
published, and nothing moves (process commands are refused) → ``activate`` → ACTIVE.

Every command — from a service, an action or the generic ``/cell/<name>/command`` — takes
the one command path (:mod:`aseptic_cell.devices.pipeline`; the node is its
:class:`~aseptic_cell.devices.pipeline.CommandHost`): catalogue validation, lifecycle and latch
checks, staleness, the device's own hard interlocks (like its PLC's: hatch and RTP
[ANNEX1-2022 §4.14] [M], steriliser doors [EN285-2015], robot [ISO10218-1]), then the backend.
A refusal returns a code and a reason, changes nothing, and is published on ``/cell/events``
for the batch record.

Only authenticated commands run (issue 12): every ``/cell/<name>/...`` service and action of
the node verifies the request's ``auth`` envelope (:mod:`aseptic_cell.security`) before
anything else: signed by the supervisor (scope ``device``), or by the lifecycle manager for
``safe_state`` only; fresh, never replayed. Anything else is refused with ``UNAUTHENTICATED``
and recorded with actor ``system`` (the claimed user is kept as ``claimed_user`` only).

Safe state is the default (ARCHITECTURE rule 6): a ``safe_state`` command (from the
lifecycle manager or the supervisor) or a loss of communication LATCHES the node: process
commands are refused until an operator calls ``/cell/<name>/recover``; nothing resumes by itself.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any

from rclpy.action import CancelResponse
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.task import Future
from rclpy.timer import Timer

from ..nodes.rosutil import stamp_now, wall_timer
from ..results import CommandResult
from ..security import AuthRefused, SecurityError, Signer, Verifier, canonical_json
from . import pipeline
from .arm.motion import ArmMotion
from .backend import HARDWARE_CHOICES, DeviceBackend, Readings, make_backend
from .codes import RefusalCode


class DeviceNode(LifecycleNode):
    """Base of the isolator, VHP, autoclave and arm nodes."""

    KIND = ""
    STATE_TYPE: Any = None

    def __init__(self, node_name: str, **kwargs: Any) -> None:
        # no parameter services: a device's parameters (hardware, stale_after_s, ...) are set at
        # start only, never by an unauthenticated /<node>/set_parameters call (issue 12)
        kwargs.setdefault("start_parameter_services", False)
        super().__init__(node_name, **kwargs)
        from cell_interfaces.msg import Alarm
        from cell_interfaces.srv import DeviceCommand, Recover
        from diagnostic_msgs.msg import DiagnosticArray
        from std_msgs.msg import String

        self.declare_parameter("config_dir", "")
        self.declare_parameter("hardware", "sim")
        self.declare_parameter("device_id", "")
        self.declare_parameter("publish_period_s", 0.1)
        self.declare_parameter("stale_after_s", 2.0)
        self.declare_parameter("connect_timeout_s", 20.0)
        self.cfg: Any = None
        self.device_id = ""
        self.backend: DeviceBackend | None = None
        self.motion: ArmMotion | None = None
        """The arm's motion step of the command path (None for the other devices)."""
        self.active = False
        self.latched: str | None = None
        self.comm_ok = False
        self.stale_after_s = 2.0
        self._lifecycle_label = "unconfigured"
        self._waiters: list[tuple[float, Future]] = []
        self._state_pub = self.create_publisher(self.STATE_TYPE, f"/cell/{node_name}/state", 10)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._events_pub = self.create_publisher(String, "/cell/events", 50)
        self._signals_pub = self.create_publisher(String, f"/cell/{node_name}/signals", 10)
        self._alarm_pub = self.create_publisher(Alarm, "/cell/alarms", 10)
        self._string = String
        self._prefix = f"/cell/{node_name}/"
        self._verifier = Verifier()
        try:  # its events are signed as this node: the supervisor records only verified ones
            self._event_signer: Signer | None = Signer(node_name)
        except SecurityError as exc:
            self._event_signer = None
            self.get_logger().error(f"no event key for {node_name}: its events will not be recorded ({exc})")
        self._caller: dict[str, str] = {}
        """Principal and role of the authenticated request being served (for its events)."""
        self.create_service(DeviceCommand, f"/cell/{node_name}/command", self._on_device_command)
        self.create_service(Recover, f"/cell/{node_name}/recover", self._on_recover)
        self._timer: Timer | None = None
        self._waiter_timer: Timer | None = None

    # ================================================================== authentication
    def create_service(self, srv_type: Any, srv_name: str, callback: Any, **kwargs: Any) -> Any:
        """Every service of this device (``/cell/<name>/...``) verifies its request's envelope
        before the callback sees it (subclasses' door, port, glove services included)."""
        prefix = getattr(self, "_prefix", None)  # None while rclpy's Node.__init__ makes its own services
        if prefix is not None and srv_name.startswith(prefix):
            callback = self._authenticated(srv_name, callback)
        return super().create_service(srv_type, srv_name, callback, **kwargs)

    def authenticate(self, target: str, req: Any) -> str | None:
        """None if ``req`` is authenticated for ``target``, else the refusal reason (recorded)."""
        scopes = ("device", "safe_state") if getattr(req, "command", "") == "safe_state" else ("device",)
        try:
            v = self._verifier.verify(target, req, scopes)
        except AuthRefused as exc:
            claimed = str(getattr(req, "user", ""))[:64]
            self.emit("refusal", command=str(getattr(req, "command", "") or target.rsplit("/", 1)[-1])[:64],
                      user="", claimed_user=claimed, code=RefusalCode.UNAUTHENTICATED, detail=exc.reason,
                      service=target)
            self.get_logger().warning(f"refused unauthenticated request on {target} (claimed user "
                                      f"{claimed!r}): {exc.reason}")
            return exc.reason
        self._caller = {"principal": v.principal, "role": str(v.claims.get("role", ""))}
        return None

    def _authenticated(self, target: str, callback: Any) -> Any:
        def serve(req: Any, resp: Any) -> Any:
            why = self.authenticate(target, req)
            if why is not None:
                resp.accepted = False
                if hasattr(resp, "code"):
                    resp.code = RefusalCode.UNAUTHENTICATED.value
                resp.reason = why
                return resp
            try:
                return callback(req, resp)
            finally:
                self._caller = {}
        return serve

    def goal_guard(self, target: str) -> Any:
        """An action server's ``goal_callback``: unauthenticated goals are rejected."""
        from rclpy.action import GoalResponse

        def guard(goal: Any) -> Any:
            ok = self.authenticate(target, goal) is None
            self._caller = {}
            return GoalResponse.ACCEPT if ok else GoalResponse.REJECT
        return guard

    # ================================================================== lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        from ..config import ConfigError, default_config_dir, load_config

        config_dir = self.get_parameter("config_dir").value or str(default_config_dir())
        hardware = self.get_parameter("hardware").value
        period = float(self.get_parameter("publish_period_s").value)
        self.stale_after_s = float(self.get_parameter("stale_after_s").value)
        if hardware not in HARDWARE_CHOICES:
            self.get_logger().error(f"configure failed: parameter hardware={hardware!r}: must be one of "
                                    f"{list(HARDWARE_CHOICES)}")
            return TransitionCallbackReturn.FAILURE
        if not (math.isfinite(period) and period > 0) or not (math.isfinite(self.stale_after_s)
                                                                and self.stale_after_s > 0):
            self.get_logger().error("configure failed: publish_period_s and stale_after_s must be finite and > 0")
            return TransitionCallbackReturn.FAILURE
        try:
            self.cfg = load_config(config_dir)
        except ConfigError as exc:
            for issue in exc.issues:
                self.get_logger().error(f"configure failed: {issue}")
            return TransitionCallbackReturn.FAILURE
        self.device_id = self.get_parameter("device_id").value or self.default_device_id()
        try:
            options = {"config_dir": config_dir} if hardware in ("opcua", "mujoco", "gazebo") else {}
            self.backend = make_backend(hardware, device_id=self.device_id, kind=self.KIND, **options)
            self.backend.connect(float(self.get_parameter("connect_timeout_s").value))
        except Exception as exc:  # BackendError, ValueError: the reason goes to the log
            self.get_logger().error(f"configure failed: cannot connect to {self.device_id} ({hardware}): {exc}")
            self.backend = None
            return TransitionCallbackReturn.FAILURE
        self.on_configured()
        self._timer = wall_timer(self, period, self._tick)
        self._waiter_timer = wall_timer(self, 0.01, self._resolve_waiters)
        self._lifecycle_label = "inactive"
        self.get_logger().info(f"configured: {self.KIND} {self.device_id} on hardware={hardware}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.active = True
        self._lifecycle_label = "active"
        self.emit("lifecycle", state="active")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.active = False
        self._lifecycle_label = "inactive"
        self.emit("lifecycle", state="inactive")
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self._lifecycle_label = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self._lifecycle_label = "finalized"
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.active = False
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _release(self) -> None:
        self.active = False
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        if self._waiter_timer is not None:
            self.destroy_timer(self._waiter_timer)
            self._waiter_timer = None
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    def destroy_node(self) -> None:
        self._release()
        super().destroy_node()

    # ================================================================== hooks for subclasses
    def default_device_id(self) -> str:
        raise NotImplementedError

    def on_configured(self) -> None:
        """Create kind-specific resources once the configuration is loaded."""

    def fill_state(self, msg: Any, r: Readings) -> None:
        """Copy readings into the typed state message."""
        raise NotImplementedError

    # ================================================================== command path
    def readings(self) -> Readings | None:
        return self.backend.latest() if self.backend is not None else None

    def fresh_readings(self) -> Readings | None:
        r = self.readings()
        if r is None or self.backend is None or r.age_s() > self.stale_after_s or not self.backend.connected():
            return None
        return r

    def execute(self, name: str, args: dict[str, Any] | None = None, *, user: str = "", reason: str = "",
                timeout_s: float = 5.0) -> CommandResult:
        """Run a command through the one command path (:mod:`aseptic_cell.devices.pipeline`)."""
        return pipeline.execute(self, name, args, motion=self.motion, user=user, reason=reason,
                                timeout_s=timeout_s)

    # ---------------------------------------------------------------- CommandHost (pipeline)
    @property
    def kind(self) -> str:
        return self.KIND

    def lifecycle(self) -> str:
        if self.backend is None:
            return "unconfigured"
        return "active" if self.active else self._lifecycle_label

    def latched_reason(self) -> str | None:
        return self.latched

    def fresh_values(self) -> dict[str, Any] | None:
        r = self.fresh_readings()
        return None if r is None else r.values

    def cell_signals(self) -> dict[str, Any] | None:
        return None

    def send(self, name: str, typed: dict[str, Any], *, user: str, reason: str,
             timeout_s: float) -> CommandResult:
        if self.backend is None:
            return CommandResult.refuse(RefusalCode.NOT_CONFIGURED, f"{self.get_name()} is not configured")
        return self.backend.command(name, typed, user=user, reason=reason, timeout_s=timeout_s)

    def report(self, name: str, args: Any, user: str, reason: str, result: CommandResult) -> None:
        shown = pipeline.loggable_args(args)
        self.emit("command" if result.accepted else "refusal", command=name, args=shown,
                  user=user, reason=reason, code=result.code, detail=result.reason, **self._caller)
        if not result.accepted:
            self.get_logger().warning(f"refused {name} {shown}: {result.code}: {result.reason}")

    def latch(self, why: str) -> None:
        if not self.latched:
            self.latched = why
            self.emit("latched", reason=why)
            self.get_logger().warning(f"LATCHED in safe state: {why}")

    # ================================================================== services
    def _on_device_command(self, req: Any, resp: Any) -> Any:
        try:
            args = json.loads(req.args_json) if req.args_json.strip() else {}
            if not isinstance(args, dict):
                raise ValueError("args_json must be a JSON object")
        except ValueError as exc:
            resp.accepted, resp.code, resp.reason, resp.payload_json = False, "INVALID", f"args_json: {exc}", "{}"
            self.emit("refusal", command=req.command, user=req.user, code=RefusalCode.INVALID, detail=str(exc))
            return resp
        if req.device_id and req.device_id not in (self.device_id, self.get_name()):
            resp.accepted, resp.code = False, "INVALID"
            resp.reason = f"device_id {req.device_id!r} does not match this node's device {self.device_id!r}"
            resp.payload_json = "{}"
            return resp
        out = self.execute(req.command, args, user=req.user, reason=req.reason)
        resp.accepted, resp.code, resp.reason = out.accepted, out.code, out.reason
        resp.payload_json = json.dumps(out.payload)
        return resp

    def _on_recover(self, req: Any, resp: Any) -> Any:
        if not req.user.strip() or not req.reason.strip():
            resp.accepted, resp.reason = False, "recovery needs the operator's user id and a reason"
            return resp
        if self.fresh_readings() is None:
            resp.accepted = False
            resp.reason = f"{self.device_id}: no fresh data; cannot recover while communication is lost"
            return resp
        was = self.latched
        self.latched = None
        self.emit("recovered", user=req.user, reason=req.reason, was=was or "", **self._caller)
        self.get_logger().info(f"recovered by {req.user}: {req.reason} (was: {was})")
        resp.accepted, resp.reason = True, f"recovered (was: {was or 'not latched'})"
        return resp

    # ================================================================== periodic
    def _tick(self) -> None:
        r = self.readings()
        ok = r is not None and r.age_s() <= self.stale_after_s and self.backend is not None and self.backend.connected()
        if ok != self.comm_ok:
            self.comm_ok = ok
            alarm_id = f"{self.device_id}_COMM_LOSS"  # the supervisor's id for it (config/alarms.yaml)
            if ok:
                self.emit("comm_restored")
                self.get_logger().info(f"communication with {self.device_id} restored (still latched: {self.latched})")
                if getattr(self, "_comm_alarm_active", False):
                    self._comm_alarm_active = False
                    self.publish_alarm(alarm_id, self._alarm_severity(alarm_id), "RTN",
                                       f"communication with {self.device_id} restored (device stays latched until "
                                       "recovered)")
            else:
                self.emit("comm_lost")
                self.latch(f"communication with {self.device_id} lost or data stale")
                self._comm_alarm_active = True
                self.publish_alarm(alarm_id, self._alarm_severity(alarm_id), "ACTIVE",
                                   f"communication with {self.device_id} lost or data stale")
        if r is not None:
            msg = self.STATE_TYPE()
            msg.stamp = stamp_now(self)
            msg.device_id = self.device_id
            msg.lifecycle_state = self._lifecycle_label + (" (latched)" if self.latched else "")
            msg.comm_ok = ok
            try:
                self.fill_state(msg, r)
            except Exception as exc:  # malformed device data must not kill the node
                self.get_logger().error(f"bad readings from {self.device_id}: {exc!r}")
            self._state_pub.publish(msg)
            self._publish_signals(r, ok)
        self._publish_diagnostics(ok)

    def _publish_signals(self, r: Readings, ok: bool) -> None:
        """Interlock signals (JSON) for the supervisor: {"device", "comm_ok", "t", "signals"}."""
        from .signals import signals_from_readings

        try:
            sig = signals_from_readings(self.KIND, r.values, self.cfg)
            data = {"device": self.device_id, "node": self.get_name(), "comm_ok": ok, "latched": self.latched or "",
                    "t": r.device_time, "signals": sig}
            self._signals_pub.publish(self._string(data=json.dumps(data)))
        except Exception as exc:  # noqa: BLE001 - observation never becomes control
            self.get_logger().error(f"signal mapping failed: {exc!r}")

    def _publish_diagnostics(self, ok: bool) -> None:
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

        st = DiagnosticStatus()
        st.name = f"{self.get_name()}: {self.device_id}"
        st.hardware_id = self.device_id
        if not ok:
            st.level, st.message = DiagnosticStatus.ERROR, "communication lost or data stale"
        elif self.latched:
            st.level, st.message = DiagnosticStatus.WARN, f"latched: {self.latched}"
        else:
            st.level, st.message = DiagnosticStatus.OK, self._lifecycle_label
        st.values = [KeyValue(key="lifecycle", value=self._lifecycle_label),
                     KeyValue(key="latched", value=self.latched or "")]
        arr = DiagnosticArray()
        arr.header.stamp = stamp_now(self)
        arr.status = [st]
        self._diag_pub.publish(arr)

    # ================================================================== helpers
    def emit(self, event: str, **fields: Any) -> None:
        """Publish an event for the record (observation: never raises into control)."""
        try:
            t = self.get_clock().now().nanoseconds * 1e-9
            data = json.loads(json.dumps({"event": event, "node": self.get_name(), "device": self.device_id,
                                          "t": t, "wall": time.time(), **fields}, default=str))
            if self._event_signer is not None:
                data["auth"] = self._event_signer.token_for("/cell/events", canonical_json(data))
            self._events_pub.publish(self._string(data=json.dumps(data)))
        except Exception as exc:  # noqa: BLE001
            self.get_logger().error(f"event publish failed: {exc!r}")

    def _alarm_severity(self, alarm_id: str) -> int:
        """The alarm's OPC UA severity from the master alarm database (one priority everywhere)."""
        from ..alarms.models import database_severity

        return database_severity(alarm_id, getattr(self.cfg, "alarms", None))

    def publish_alarm(self, alarm_id: str, priority: int, state: str, message: str) -> None:
        from cell_interfaces.msg import Alarm

        self._alarm_pub.publish(Alarm(alarm_id=alarm_id, source=self.device_id, priority=priority,
                                      state=state, message=message, raised=stamp_now(self)))

    def sleep(self, seconds: float) -> Future:
        """A future completed by the node's (wall) timer after ``seconds`` — for action coroutines."""
        f = Future()
        self._waiters.append((time.monotonic() + seconds, f))
        return f

    def _resolve_waiters(self) -> None:
        now = time.monotonic()
        keep = []
        for due, f in self._waiters:
            if f.cancelled():
                continue
            if due <= now:
                f.set_result(True)
            else:
                keep.append((due, f))
        self._waiters = keep

    @staticmethod
    def accept_cancel(_goal_handle: Any) -> CancelResponse:
        return CancelResponse.ACCEPT


def num(v: Any) -> float:
    """A reading as a float; NaN when it is missing or not a number (never a safe-looking 0)."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def run_device_node(factory: Callable[[], DeviceNode], argv: list[str] | None = None) -> int:
    from ..nodes.rosutil import run_node

    return run_node(factory, argv)
