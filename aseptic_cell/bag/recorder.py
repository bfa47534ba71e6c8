"""Record ROS 2 topics into an MCAP file (profile ``ros2``, CDR messages, ``ros2msg`` schemas).

The recorder runs its own rclpy context and executor on a background thread. Subscriptions are
raw (the CDR bytes as published: nothing is decoded or re-encoded) and are made as topics
appear (every topic, or the named ones), with a QoS that matches their publishers.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .schema import DefinitionNotFound, message_definition, split_type

DISCOVERY_PERIOD_S = 0.25
_INFINITE = "    sec: 2147483647\n    nsec: 4294967295"


def message_class(type_name: str) -> Any:
    """The Python class of ``pkg/msg/Type`` (rosidl_runtime_py is not among the wheels)."""
    import importlib

    pkg, name = split_type(type_name)
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def _qos_yaml(infos: list[Any]) -> str:
    """rosbag2's ``offered_qos_profiles`` channel metadata for the topic's publishers."""
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

    out = []
    for info in infos:
        q = info.qos_profile
        rel = "best_effort" if q.reliability == ReliabilityPolicy.BEST_EFFORT else "reliable"
        dur = "transient_local" if q.durability == DurabilityPolicy.TRANSIENT_LOCAL else "volatile"
        out.append(f"- history: keep_last\n  depth: {int(q.depth)}\n  reliability: {rel}\n"
                   f"  durability: {dur}\n"
                   f"  deadline:\n{_INFINITE}\n  lifespan:\n{_INFINITE}\n  liveliness: automatic\n"
                   f"  liveliness_lease_duration:\n{_INFINITE}\n  avoid_ros_namespace_conventions: false")
    return "\n".join(out) + ("\n" if out else "")


@dataclass
class RecordStats:
    path: Path
    counts: dict[str, int] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # topic -> why it is not recorded
    wall_s: float = 0.0

    @property
    def messages(self) -> int:
        return sum(self.counts.values())


class Recorder:
    """Record ``topics`` (all visible topics if empty) to ``path`` until :meth:`stop`.

    Args:
        path: the .mcap file to write (overwritten).
        topics: topic names to record; empty = every topic that appears (hidden ``/_`` topics excluded).
        exclude: regular expression of topic names not to record.
        domain_id: ROS domain (default: ROS_DOMAIN_ID).
    """

    def __init__(self, path: str | Path, topics: list[str] | tuple[str, ...] = (), *, exclude: str = "",
                 domain_id: int | None = None) -> None:
        self.path = Path(path)
        self.topics = list(topics)
        self._exclude = re.compile(exclude) if exclude else None
        self._domain_id = domain_id
        self.stats = RecordStats(self.path)
        self._lock = threading.Lock()
        self._ros: Any = None
        self._writer: Any = None
        self._file: Any = None
        self._channels: dict[str, int] = {}
        self._subs: list[Any] = []

    # ------------------------------------------------------------------ control
    def start(self) -> Recorder:
        from mcap.writer import CompressionType, Writer

        from ..nodes.background import BackgroundRos

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed in stop()
        self._writer = Writer(self._file, compression=CompressionType.ZSTD)
        self._writer.start(profile="ros2", library="aseptic_cell.bag (mcap python)")
        self._started = time.monotonic()
        try:
            self._ros = BackgroundRos(f"bag_recorder_{id(self) & 0xFFFFFF:x}", domain_id=self._domain_id,
                                      thread_name="bag-recorder", spin_timeout_s=0.02,
                                      start_parameter_services=False)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"bag recorder failed: {exc}") from exc
        node = self._ros.node
        self._discover(node)
        self._ros.every(DISCOVERY_PERIOD_S, lambda: self._discover(node))
        self._ros.start()
        return self

    def stop(self) -> RecordStats:
        if self._ros is not None:
            self._ros.close(timeout_s=10.0, drain_rounds=200)  # what is already queued is recorded
            self._ros = None
        with self._lock:
            if self._writer is not None:
                self._writer.finish()
                self._writer = None
            if self._file is not None:
                self._file.close()
                self._file = None
        self.stats.wall_s = time.monotonic() - self._started
        return self.stats

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ ROS side
    def _wanted(self, topic: str) -> bool:
        if self.topics:
            return topic in self.topics
        if "/_" in topic:
            return False
        return not (self._exclude is not None and self._exclude.search(topic))

    def _discover(self, node: Any) -> None:
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        for topic, types in node.get_topic_names_and_types():
            if topic in self._channels or topic in self.stats.skipped or not self._wanted(topic):
                continue
            if self._exclude is not None and self._exclude.search(topic):
                continue
            type_name = types[0]
            try:
                definition = message_definition(type_name)
                msg_type = message_class(type_name)
            except (DefinitionNotFound, ValueError, AttributeError, ModuleNotFoundError) as exc:
                self.stats.skipped[topic] = f"{type_name}: {exc}"
                continue
            infos = node.get_publishers_info_by_topic(topic)
            best_effort = any(i.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for i in infos)
            latched = bool(infos) and all(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
                                          for i in infos)
            rel = ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE
            dur = DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE
            qos = QoSProfile(depth=1000, reliability=rel, durability=dur)
            with self._lock:
                sid = self._writer.register_schema(name=type_name, encoding="ros2msg",
                                                   data=definition.encode())
                cid = self._writer.register_channel(topic=topic, message_encoding="cdr", schema_id=sid,
                                                    metadata={"offered_qos_profiles": _qos_yaml(infos)})
            self._channels[topic] = cid
            self.stats.counts[topic] = 0
            self.stats.types[topic] = type_name
            self._subs.append(node.create_subscription(msg_type, topic, self._callback(topic, cid), qos,
                                                       raw=True))

    def _callback(self, topic: str, cid: int) -> Any:
        def on_message(data: bytes) -> None:
            t = time.time_ns()
            with self._lock:
                if self._writer is None:
                    return
                n = self.stats.counts[topic]
                self._writer.add_message(channel_id=cid, log_time=t, publish_time=t, data=bytes(data),
                                         sequence=n)
                self.stats.counts[topic] = n + 1
        return on_message
