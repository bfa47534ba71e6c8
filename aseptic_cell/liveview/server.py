"""Serve the cell's ROS 2 topics and a 3D scene over the Foxglove WebSocket protocol.

Every visible topic is relayed as published (CDR bytes, ``ros2msg`` schema with the full
definition, as in the MCAP recordings); ``/cell/scene`` carries a ``foxglove.SceneUpdate`` at
``scene_hz``. The server binds to loopback only: foxglove-sdk has no authentication, and the
view only observes (it offers no services and accepts no client publishing).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..bag.recorder import message_class
from ..bag.schema import DefinitionNotFound, message_definition

LOOPBACK = "127.0.0.1"
SCENE_TOPIC = "/cell/scene"


class LiveView:
    def __init__(self, cfg: Any, *, port: int = 0, scene_hz: float = 2.0, domain_id: int | None = None) -> None:
        self.cfg = cfg
        self.requested_port = int(port)
        self.scene_period_s = 1.0 / scene_hz
        self._domain_id = domain_id
        self.server: Any = None
        self.channels: dict[str, Any] = {}
        self.skipped: dict[str, str] = {}
        self.relayed = 0
        self._q: np.ndarray | None = None
        self._iso: Any = None
        self._ros: Any = None

    @property
    def port(self) -> int:
        return int(self.server.port)

    @property
    def url(self) -> str:
        return f"ws://{LOOPBACK}:{self.port}"

    def start(self) -> LiveView:
        import foxglove
        from cell_interfaces.msg import IsolatorState
        from foxglove.channels import SceneUpdateChannel
        from sensor_msgs.msg import JointState

        from ..nodes.background import BackgroundRos

        self.server = foxglove.start_server(name="aseptic_cell", host=LOOPBACK, port=self.requested_port)
        self._scene = SceneUpdateChannel(SCENE_TOPIC)
        try:
            self._ros = BackgroundRos(f"foxglove_view_{id(self) & 0xFFFFFF:x}", domain_id=self._domain_id,
                                      thread_name="foxglove-live-view", spin_timeout_s=0.02,
                                      start_parameter_services=False)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"live view did not start: {exc}") from exc
        node = self._ros.node
        node.create_subscription(JointState, "/joint_states", self._on_joints, 10)
        node.create_subscription(IsolatorState, "/cell/isolator/state", self._on_isolator, 10)
        self._discover(node)
        self._ros.every(0.5, lambda: self._discover(node))
        self._ros.every(self.scene_period_s, self._publish_scene)
        self._ros.start()
        return self

    def stop(self) -> None:
        if self._ros is not None:
            self._ros.close(timeout_s=5.0)
            self._ros = None
        if self.server is not None:
            self.server.stop()
            self.server = None

    def __enter__(self) -> LiveView:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ ROS side
    def _on_joints(self, msg: Any) -> None:
        names = [j.name for j in self.cfg.arm.joints]
        try:
            self._q = np.array([msg.position[list(msg.name).index(n)] for n in names])
        except (ValueError, IndexError):
            pass

    def _on_isolator(self, msg: Any) -> None:
        self._iso = msg

    def _publish_scene(self) -> None:
        from .scene import active_conditions, scene_update

        self._scene.log(scene_update(self.cfg, self._q, active_conditions(self._iso)))

    def _discover(self, node: Any) -> None:
        from foxglove import Channel, Schema
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        for topic, types in node.get_topic_names_and_types():
            if topic in self.channels or topic in self.skipped or "/_" in topic:
                continue
            try:
                definition = message_definition(types[0])
                msg_type = message_class(types[0])
            except (DefinitionNotFound, ValueError, AttributeError, ModuleNotFoundError) as exc:
                self.skipped[topic] = str(exc)
                continue
            channel = Channel(
                topic,
                schema=Schema(name=types[0], encoding="ros2msg", data=definition.encode()),
                message_encoding="cdr",
            )
            self.channels[topic] = channel
            infos = node.get_publishers_info_by_topic(topic)
            best_effort = any(i.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for i in infos)
            qos = QoSProfile(
                depth=10, reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE
            )
            node.create_subscription(msg_type, topic, self._relay(channel), qos, raw=True)

    def _relay(self, channel: Any) -> Any:
        def on_message(data: bytes) -> None:
            channel.log(bytes(data))
            self.relayed += 1

        return on_message


@contextlib.contextmanager
def live_view(config_dir: str, *, enabled: bool, port: int = 0) -> Iterator[LiveView | None]:
    """``cellctl run --foxglove``: a live view for the run's lifetime (nothing if not enabled)."""
    if not enabled:
        yield None
        return
    from ..config import load_config

    view = LiveView(load_config(config_dir), port=port).start()
    print(f"Foxglove live view: {view.url} (Foxglove: open connection, Foxglove WebSocket)", flush=True)
    try:
        yield view
    finally:
        view.stop()
