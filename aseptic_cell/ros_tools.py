"""``cellctl ros list`` / ``cellctl ros echo``: graph inspection without the ros2 CLI.

The ``ros2`` CLI is not installable from the reachable registries (not among the PyPI wheels), so
this is the small stand-in: ``list`` shows nodes, topics (with types), services and actions
(detected from their ``/_action/`` services); ``echo`` prints messages of a topic whose type
is looked up in the graph. The domain is ``ROS_DOMAIN_ID`` as usual.

Also runnable as ``python -m aseptic_cell.ros_tools list|echo ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1

_ACTION_SERVICE = "/_action/send_goal"


def add_ros_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``ros`` with ``list`` and ``echo`` to a ``add_subparsers()`` object."""
    ros = subparsers.add_parser("ros", help="inspect the ROS graph (stand-in for the ros2 CLI)")
    sub = ros.add_subparsers(dest="ros_command", required=True)
    _add_list(sub)
    _add_echo(sub)
    return ros


def _add_list(sub: Any) -> None:
    p = sub.add_parser("list", help="nodes, topics (with types), services and actions")
    p.add_argument(
        "--wait",
        type=float,
        default=1.5,
        help="seconds of discovery before listing; longer while the graph still changes (default 1.5)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--all",
        action="store_true",
        help="also show parameter / lifecycle / action plumbing services and hidden topics",
    )
    p.set_defaults(func=cmd_ros_list)


def _add_echo(sub: Any) -> None:
    p = sub.add_parser("echo", help="print messages of a topic")
    p.add_argument("topic", help="topic name, e.g. /cell/alarms")
    p.add_argument(
        "count",
        nargs="?",
        type=int,
        default=None,
        help="exit 0 after this many messages (default: until interrupted)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds to wait for the topic to appear and for each message (default 10)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_ros_echo)


# --- plumbing ------------------------------------------------------------------------------


class _Session:
    """A private rclpy context + node on ROS_DOMAIN_ID, spun with spin_once."""

    def __init__(self, prefix: str) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        self.context = Context()
        self.context.init(domain_id=int(os.environ.get("ROS_DOMAIN_ID", "0")))
        self.node = rclpy.create_node(
            f"{prefix}_{os.getpid()}", context=self.context, start_parameter_services=False
        )
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.executor.spin_once(timeout_sec=min(0.05, left))

    def close(self) -> None:
        self.executor.remove_node(self.node)
        self.executor.shutdown(timeout_sec=0)
        self.node.destroy_node()
        self.context.try_shutdown()


def _full_name(name: str, ns: str) -> str:
    return ("/" if ns == "/" else ns + "/") + name


_PLUMBING_SUFFIXES = (
    "/describe_parameters",
    "/get_parameters",
    "/get_parameter_types",
    "/list_parameters",
    "/set_parameters",
    "/set_parameters_atomically",
    "/get_type_description",
    "/get_state",
    "/change_state",
    "/get_available_states",
    "/get_available_transitions",
    "/get_transition_graph",
)


def graph_snapshot(node: Any, own_name: str | None = None, show_all: bool = False) -> dict[str, Any]:
    """Nodes, topics, services and actions currently known to ``node``."""
    nodes = sorted(
        _full_name(n, ns)
        for n, ns in node.get_node_names_and_namespaces()
        if own_name is None or n != own_name
    )
    topics_raw = node.get_topic_names_and_types()
    services_raw = node.get_service_names_and_types()
    actions = {}
    for name, types in services_raw:
        if name.endswith(_ACTION_SERVICE):
            action = name[: -len(_ACTION_SERVICE)]
            typ = types[0] if types else "?"
            actions[action] = typ[: -len("_SendGoal")] if typ.endswith("_SendGoal") else typ
    topics = {}
    for name, types in topics_raw:
        if not show_all and ("/_action/" in name or name in ("/parameter_events", "/rosout")):
            continue
        topics[name] = list(types)
    services = {}
    for name, types in services_raw:
        if not show_all and ("/_action/" in name or name.endswith(_PLUMBING_SUFFIXES)):
            continue
        services[name] = list(types)
    return {
        "nodes": nodes,
        "topics": dict(sorted(topics.items())),
        "services": dict(sorted(services.items())),
        "actions": dict(sorted(actions.items())),
    }


# --- commands ------------------------------------------------------------------------------


def cmd_ros_list(args: argparse.Namespace) -> int:
    session = _Session("cellctl_ros_list")
    try:
        # discovery: at least --wait seconds, then on while the graph still changes (up to 3x)
        show_all = getattr(args, "all", False)
        session.spin_for(max(0.0, args.wait))
        snap = graph_snapshot(session.node, session.node.get_name(), show_all=show_all)
        deadline = time.monotonic() + 2 * max(0.0, args.wait)
        while time.monotonic() < deadline:
            session.spin_for(0.5)
            again = graph_snapshot(session.node, session.node.get_name(), show_all=show_all)
            if again == snap and snap["nodes"]:  # an empty graph may just be discovery lagging
                break
            snap = again
    finally:
        session.close()
    if args.json:
        print(json.dumps(snap, indent=2))
        return EXIT_OK
    print(f"nodes ({len(snap['nodes'])}):")
    for n in snap["nodes"]:
        print(f"  {n}")
    for section in ("topics", "services", "actions"):
        print(f"{section} ({len(snap[section])}):")
        for name, types in snap[section].items():
            shown = ", ".join(types) if isinstance(types, list) else types
            print(f"  {name} [{shown}]")
    return EXIT_OK


def cmd_ros_echo(args: argparse.Namespace) -> int:
    from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy

    from .nodes.rosutil import import_type, msg_to_dict

    topic = args.topic if args.topic.startswith("/") else "/" + args.topic
    if args.count is not None and args.count < 1:
        print("count must be >= 1", file=sys.stderr)
        return EXIT_FAILED
    session = _Session("cellctl_ros_echo")
    try:
        node = session.node
        deadline = time.monotonic() + args.timeout
        types: list[str] = []
        while True:
            types = dict(node.get_topic_names_and_types()).get(topic, [])
            if types and node.get_publishers_info_by_topic(topic):
                break
            if time.monotonic() > deadline:
                if types:
                    print(
                        f"topic {topic} [{', '.join(types)}] has no publisher (waited {args.timeout} s)",
                        file=sys.stderr,
                    )
                else:
                    known = sorted(t for t, _ in node.get_topic_names_and_types())
                    print(
                        f"topic {topic} does not exist (waited {args.timeout} s); known topics: "
                        f"{', '.join(known) or 'none'}",
                        file=sys.stderr,
                    )
                return EXIT_FAILED
            session.spin_for(0.1)
        if len(types) > 1:
            print(f"topic {topic} has several types {types}; using {types[0]}", file=sys.stderr)
        try:
            msg_type = import_type(types[0])
        except (ImportError, AttributeError, ValueError) as exc:
            print(f"cannot import the type {types[0]} of {topic}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        # Match the publishers (like ros2 topic echo): reliable / transient local only if all are.
        pubs = node.get_publishers_info_by_topic(topic)
        reliable = all(p.qos_profile.reliability == QoSReliabilityPolicy.RELIABLE for p in pubs)
        latched = all(p.qos_profile.durability == QoSDurabilityPolicy.TRANSIENT_LOCAL for p in pubs)
        qos = QoSProfile(
            depth=10,
            reliability=QoSReliabilityPolicy.RELIABLE if reliable else QoSReliabilityPolicy.BEST_EFFORT,
            durability=(QoSDurabilityPolicy.TRANSIENT_LOCAL if latched else QoSDurabilityPolicy.VOLATILE),
        )
        received: list[Any] = []
        node.create_subscription(msg_type, topic, received.append, qos)
        printed = 0
        last = time.monotonic()
        while args.count is None or printed < args.count:
            while received and (args.count is None or printed < args.count):
                _print_msg(msg_to_dict(received.pop(0)), args.json)
                printed += 1
                last = time.monotonic()
            if args.count is not None and printed >= args.count:
                break
            if time.monotonic() - last > args.timeout:
                print(
                    f"no message on {topic} [{types[0]}] for {args.timeout} s ({printed} received)",
                    file=sys.stderr,
                )
                return EXIT_FAILED
            session.executor.spin_once(timeout_sec=0.05)
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        session.close()
    return EXIT_OK


def _print_msg(data: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, separators=(",", ":")), flush=True)
    else:
        print("\n".join(to_yaml_lines(data)) + "\n---", flush=True)


def to_yaml_lines(data: Any, indent: int = 0) -> list[str]:
    """YAML-like text of ``msg_to_dict`` output (like ``ros2 topic echo``)."""
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, dict):
                lines.append(f"{pad}{key}:")
                lines.extend(to_yaml_lines(value, indent + 1))
            elif isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
                lines.append(f"{pad}{key}:")
                for item in value:
                    sub = to_yaml_lines(item, indent + 1)
                    lines.append(f"{pad}- {sub[0].lstrip()}" if sub else f"{pad}- {{}}")
                    lines.extend(sub[1:])
            else:
                lines.append(f"{pad}{key}: {_scalar(value)}")
    else:
        lines.append(f"{pad}{_scalar(data)}")
    return lines


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return (
            json.dumps(value)
            if (
                value == ""
                or value.strip() != value
                or ":" in value
                or value.lower() in ("true", "false", "null", "~")
            )
            else value
        )
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    return str(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aseptic_cell.ros_tools", description="inspect the ROS graph (ROS_DOMAIN_ID applies)"
    )
    sub = parser.add_subparsers(dest="ros_command", required=True)
    _add_list(sub)
    _add_echo(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
