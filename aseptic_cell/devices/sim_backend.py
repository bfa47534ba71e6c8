"""Backend for ``hardware: sim``: a client of the ``sim_world`` node over ROS 2.

It runs its own rclpy context, node and executor on a background thread (as a field-bus
driver would), so the device node calling it may block on a command without stalling its
own executor. Readings arrive as JSON on ``/sim/<device_id>/readings``; commands go to the
``/sim/<device_id>/command`` service.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

from .backend import BackendError, CommandOutcome, Readings


class SimBackend:
    def __init__(self, *, device_id: str, kind: str, domain_id: int | None = None,
                 node_name: str | None = None) -> None:
        self.device_id = device_id
        self.kind = kind
        self._domain_id = domain_id
        self._node_name = node_name or f"sim_driver_{device_id.lower()}_{uuid.uuid4().hex[:6]}"
        self._lock = threading.Lock()
        self._latest: Readings | None = None
        self._ctx = None
        self._node = None
        self._executor = None
        self._client = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------ lifecycle
    def connect(self, timeout_s: float) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions
        from std_msgs.msg import String

        from cell_interfaces.srv import DeviceCommand

        if self._thread is not None:
            return
        ctx = rclpy.Context()
        kwargs: dict[str, Any] = {"context": ctx, "signal_handler_options": SignalHandlerOptions.NO}
        if self._domain_id is not None:
            kwargs["domain_id"] = self._domain_id
        rclpy.init(**kwargs)
        self._ctx = ctx
        self._node = rclpy.create_node(self._node_name, context=ctx,
                                       start_parameter_services=False)
        self._node.create_subscription(String, f"/sim/{self.device_id}/readings", self._on_readings, 10)
        self._client = self._node.create_client(DeviceCommand, f"/sim/{self.device_id}/command")
        self._executor = SingleThreadedExecutor(context=ctx)
        self._executor.add_node(self._node)
        self._stop.clear()
        self._thread = threading.Thread(target=self._spin, name=f"sim-backend-{self.device_id}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._latest is not None and self._client.service_is_ready():
                return
            time.sleep(0.02)
        self.close()
        raise BackendError(
            f"no simulated device {self.device_id!r}: nothing on /sim/{self.device_id}/readings or its "
            f"command service within {timeout_s:.1f} s (is the sim_world node running?)"
        )

    def _spin(self) -> None:
        while not self._stop.is_set():
            try:
                self._executor.spin_once(timeout_sec=0.05)
            except Exception:  # context shut down underneath us
                if self._stop.is_set():
                    break
                time.sleep(0.05)

    def close(self) -> None:
        import rclpy

        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self._executor is not None:
            self._executor.shutdown()
            self._executor = None
        if self._node is not None:
            self._node.destroy_node()
            self._node = None
        if self._ctx is not None:
            try:
                rclpy.shutdown(context=self._ctx)
            except Exception:
                pass
            self._ctx = None

    def connected(self) -> bool:
        return self._thread is not None and self._client is not None and self._client.service_is_ready()

    # ------------------------------------------------------------------ data
    def _on_readings(self, msg: Any) -> None:
        try:
            values = json.loads(msg.data)
        except ValueError:
            return
        r = Readings(values=values, device_time=float(values.get("t", 0.0)), received_wall=time.monotonic())
        with self._lock:
            self._latest = r

    def latest(self) -> Readings | None:
        with self._lock:
            return self._latest

    def command(self, name: str, args: dict[str, Any], *, user: str = "", reason: str = "",
                timeout_s: float = 5.0) -> CommandOutcome:
        from cell_interfaces.srv import DeviceCommand

        if self._client is None or not self._client.service_is_ready():
            return CommandOutcome(False, "COMM_LOST", f"no connection to simulated device {self.device_id}")
        req = DeviceCommand.Request(device_id=self.device_id, command=name,
                                    args_json=json.dumps(args), user=user, reason=reason)
        done = threading.Event()
        future = self._client.call_async(req)
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(timeout_s):
            future.cancel()
            return CommandOutcome(False, "TIMEOUT", f"{self.device_id} did not answer {name} within {timeout_s:.1f} s")
        resp = future.result()
        try:
            payload = json.loads(resp.payload_json) if resp.payload_json else {}
        except ValueError:
            payload = {}
        return CommandOutcome(resp.accepted, resp.code, resp.reason, payload)
