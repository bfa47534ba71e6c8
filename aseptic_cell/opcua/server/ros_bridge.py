"""ROS side of the cell server: subscriptions and the batch command client, on a background
thread with its own rclpy Context (ARCHITECTURE rule 4: observation never becomes control).

Messages are converted to plain dicts on the ROS thread; the latest one per source is handed
to the asyncio loop (coalesced: a slow OPC UA side drops intermediate values, it never queues
without bound or slows the ROS executor). Every callback is wrapped: an exception is logged
and dropped. The bridge publishes nothing; its only call into the cell is
``/cell/batch/command`` on an authenticated, role-checked OPC UA method call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)

Sink = Callable[[str, Any], Awaitable[None]]
"""``sink(source, payload)`` on the asyncio loop; source = batch | interlocks | alarms | device:<node>."""

STATE_TYPES = {
    "isolator": "IsolatorState",
    "vhp": "VhpState",
    "autoclave": "AutoclaveState",
    "arm": "ArmState",
}


def _plain(v: Any) -> Any:
    if hasattr(v, "get_fields_and_field_types"):
        if type(v).__name__ == "Time" and hasattr(v, "sec") and hasattr(v, "nanosec"):
            if v.sec == 0 and v.nanosec == 0:
                return None
            return dt.datetime.fromtimestamp(v.sec + v.nanosec * 1e-9, dt.UTC)
        return {k: _plain(getattr(v, k)) for k in v.get_fields_and_field_types()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    tolist = getattr(v, "tolist", None)
    if callable(tolist):
        return tolist()
    return v


class RosBridge:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sink: Sink,
        *,
        devices: Sequence[str],
        ros_args: Sequence[str] | None = None,
        domain_id: int | None = None,
        node_name: str = "opcua_server",
    ) -> None:
        self._loop = loop
        self._sink = sink
        self._devices = [d for d in devices if d in STATE_TYPES]
        self._ros_args = list(ros_args or [])
        self._domain_id = domain_id
        self._node_name = node_name
        self._lock = threading.Lock()
        self._pending: dict[str, Any] = {}
        self._flush_scheduled = False
        self._ros: Any = None
        self.node: Any = None
        self._batch_client: Any = None
        self.received: dict[str, int] = {}
        self.callback_errors = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        import cell_interfaces.msg as cim
        from cell_interfaces.srv import BatchCommand
        from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy

        from ...nodes.background import BackgroundRos

        self._ros = BackgroundRos(self._node_name, domain_id=self._domain_id, thread_name="opcua-ros-bridge",
                                  args=["opcua_server", *self._ros_args], spin_timeout_s=0.1)
        self.node = self._ros.node
        # best effort + volatile, depth 1: matches any publisher (reliable or not, latched or not);
        # only the latest state matters here
        qos = QoSProfile(
            depth=1, reliability=QoSReliabilityPolicy.BEST_EFFORT, durability=QoSDurabilityPolicy.VOLATILE
        )
        self.node.create_subscription(
            cim.BatchStatus, "/cell/batch/status", lambda m: self._on("batch", m), qos
        )
        self.node.create_subscription(
            cim.InterlockStatusArray, "/cell/interlocks", lambda m: self._on("interlocks", m), qos
        )
        from std_msgs.msg import String

        # the patient batches' view (issue 14 item 7: JSON, aseptic_cell.supervisor.batch_view)
        self.node.create_subscription(String, "/cell/batches", lambda m: self._on("batches", m), qos)
        self.node.create_subscription(
            cim.AlarmArray, "/cell/alarms/active", lambda m: self._on("alarms", m), qos
        )
        # the lifecycle manager's "SUPERVISOR LOST" (issue 12): the supervisor's own alarm list has
        # stopped, so this alarm becomes the list shown until the supervisor publishes again
        from ...nodes.lifecycle_manager import ALARM_QOS

        self.node.create_subscription(cim.Alarm, "/cell/alarms", self._on_node_alarm, ALARM_QOS)
        for name in self._devices:
            self.node.create_subscription(
                getattr(cim, STATE_TYPES[name]),
                f"/cell/{name}/state",
                lambda m, n=name: self._on(f"device:{n}", m),
                qos,
            )
        self._batch_client = self.node.create_client(BatchCommand, "/cell/batch/command")
        from cell_interfaces.srv import AcknowledgeAlarm

        # the HMI's acknowledge path (issue 18: OPC UA A&C Acknowledge), signed as this front end
        self._ack_client = self.node.create_client(AcknowledgeAlarm, "/cell/alarms/acknowledge")
        self._ros.start()

    def close(self) -> None:
        if self._ros is not None:
            self._ros.close(timeout_s=3.0)

    # ------------------------------------------------------------------ data path
    def _on(self, source: str, msg: Any) -> None:
        try:
            payload = _plain(msg)
            if source == "interlocks":
                payload = payload.get("rules", [])
            elif source == "batches":
                payload = json.loads(msg.data)
            with self._lock:
                self._pending[source] = payload
                self.received[source] = self.received.get(source, 0) + 1
                if self._flush_scheduled:
                    return
                self._flush_scheduled = True
            self._loop.call_soon_threadsafe(self._start_flush)
        except Exception:  # noqa: BLE001 - observation never becomes control
            self.callback_errors += 1
            log.exception("ROS bridge: could not take %s message", source)

    def _on_node_alarm(self, msg: Any) -> None:
        from cell_interfaces import msg as cim

        if msg.alarm_id == "CELL_SUPERVISOR_LOST" and msg.state == "ACTIVE":
            self._on("alarms", cim.AlarmArray(stamp=msg.raised, flood=False, alarms=[msg]))

    def _start_flush(self) -> None:
        self._loop.create_task(self._flush())

    async def _flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            self._flush_scheduled = False
        for source, payload in pending.items():
            try:
                await self._sink(source, payload)
            except Exception:  # noqa: BLE001
                self.callback_errors += 1
                log.exception("OPC UA update from %s failed", source)

    # ------------------------------------------------------------------ commands
    def batch_service_ready(self) -> bool:
        try:
            return bool(self._batch_client is not None and self._batch_client.service_is_ready())
        except Exception:  # noqa: BLE001
            return False

    async def acknowledge_alarm(self, alarm_id: str, *, user: str, comment: str, timeout_s: float) -> dict[str, Any]:
        """Call ``/cell/alarms/acknowledge`` (the supervisor's alarm manager, as the HMI does);
        returns ``{accepted, reason}``."""
        from cell_interfaces.srv import AcknowledgeAlarm

        from ...security import SecurityError, Signer

        client = getattr(self, "_ack_client", None)
        deadline = time.monotonic() + min(2.0, timeout_s)
        while (client is None or not client.service_is_ready()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if client is None or not client.service_is_ready():
            return {"accepted": False, "reason": "/cell/alarms/acknowledge is not available"}
        req = AcknowledgeAlarm.Request(alarm_id=alarm_id, user=user, comment=comment)
        try:
            Signer("opcua_server").sign("/cell/alarms/acknowledge", req)
        except SecurityError:
            pass
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def _done(f: Any) -> None:
            try:
                done.set_result(f.result())
            except Exception as exc:  # noqa: BLE001
                done.set_exception(exc)

        fut = client.call_async(req)
        fut.add_done_callback(_done)
        try:
            r = await asyncio.wait_for(asyncio.wrap_future(done), timeout_s)
        except TimeoutError:
            fut.cancel()
            return {"accepted": False, "reason": f"no reply within {timeout_s:.1f} s"}
        return {"accepted": bool(r.accepted), "reason": str(r.reason)}

    async def batch_command(
        self, command: str, *, user: str, password: str, meaning: str, reason: str, timeout_s: float
    ) -> dict[str, Any]:
        """Call ``/cell/batch/command``; returns ``{accepted, code, reason, state}``."""
        from cell_interfaces.srv import BatchCommand

        deadline = time.monotonic() + min(2.0, timeout_s)
        while not self.batch_service_ready() and time.monotonic() < deadline:  # discovery may lag
            await asyncio.sleep(0.05)
        if not self.batch_service_ready():
            return {
                "accepted": False,
                "code": "UNAVAILABLE",
                "reason": "/cell/batch/command is not available",
                "state": "",
            }
        req = BatchCommand.Request(
            command=command, user=user, password=password, meaning=meaning, reason=reason
        )
        from ...security import SecurityError, Signer

        try:  # signed as the front end "opcua_server" (issue 12); unsigned requests are refused
            Signer("opcua_server").sign("/cell/batch/command", req)
        except SecurityError:
            pass
        fut = self._batch_client.call_async(req)
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def _done(f: Any) -> None:
            try:
                done.set_result(f.result())
            except Exception as exc:  # noqa: BLE001
                done.set_exception(exc)

        fut.add_done_callback(_done)
        try:
            r = await asyncio.wait_for(asyncio.wrap_future(done), timeout_s)
        except TimeoutError:
            fut.cancel()
            return {
                "accepted": False,
                "code": "TIMEOUT",
                "reason": f"no reply within {timeout_s:.1f} s",
                "state": "",
            }
        return {"accepted": bool(r.accepted), "code": r.code, "reason": r.reason, "state": r.state}
