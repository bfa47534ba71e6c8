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

from ..results import CommandResult
from .backend import BackendError, Readings


class SimBackend:
    def __init__(self, *, device_id: str, kind: str, domain_id: int | None = None,
                 node_name: str | None = None) -> None:
        self.device_id = device_id
        self.kind = kind
        self._domain_id = domain_id
        self._node_name = node_name or f"sim_driver_{device_id.lower()}_{uuid.uuid4().hex[:6]}"
        self._lock = threading.Lock()
        self._latest: Readings | None = None
        self._ros: Any = None
        self._client: Any = None

    # ------------------------------------------------------------------ lifecycle
    def connect(self, timeout_s: float) -> None:
        from cell_interfaces.srv import DeviceCommand
        from std_msgs.msg import String

        from ..nodes.background import BackgroundRos

        if self._ros is not None:
            return
        self._ros = BackgroundRos(self._node_name, domain_id=self._domain_id,
                                  thread_name=f"sim-backend-{self.device_id}", start_parameter_services=False)
        node = self._ros.node
        node.create_subscription(String, f"/sim/{self.device_id}/readings", self._on_readings, 10)
        self._client = node.create_client(DeviceCommand, f"/sim/{self.device_id}/command")
        self._ros.start()
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

    def close(self) -> None:
        if self._ros is not None:
            self._ros.close()
            self._ros = None
            self._client = None

    def connected(self) -> bool:
        return self._ros is not None and self._client is not None and self._client.service_is_ready()

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
                timeout_s: float = 5.0) -> CommandResult:
        from cell_interfaces.srv import DeviceCommand

        if self._client is None or not self._client.service_is_ready():
            return CommandResult(False, "COMM_LOST", f"no connection to simulated device {self.device_id}")
        req = DeviceCommand.Request(device_id=self.device_id, command=name,
                                    args_json=json.dumps(args), user=user, reason=reason)
        done = threading.Event()
        future = self._client.call_async(req)
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(timeout_s):
            future.cancel()
            return CommandResult(False, "TIMEOUT", f"{self.device_id} did not answer {name} within {timeout_s:.1f} s")
        resp = future.result()
        try:
            payload = json.loads(resp.payload_json) if resp.payload_json else {}
        except ValueError:
            payload = {}
        return CommandResult(resp.accepted, resp.code, resp.reason, payload)
