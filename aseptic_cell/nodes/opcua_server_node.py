"""``opcua_server``: the cell OPC UA server for MES/SCADA as a process of the node graph.

Parameters (``--ros-args -p k:=v``):
    config_dir (string): cell configuration directory (users.yaml, cell.yaml, interlocks.yaml).
    server_config (string, ""): opcua_server.yaml; "" = ``<config_dir>/opcua_server.yaml``.
    endpoint (string, ""): override the configured endpoint URL.
    pki_dir (string, ""): override the PKI directory.

Not a lifecycle node and not a dependency of anything: it only observes the cell (ROS topics
-> OPC UA) and forwards role-checked batch commands to ``/cell/batch/command``; if it dies,
supervision is unaffected (ARCHITECTURE rule 4). The asyncio OPC UA server runs on the main
thread, the ROS subscriptions on a background thread with their own rclpy Context
(``aseptic_cell/opcua/server/ros_bridge.py``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def _params(argv: list[str]) -> dict[str, str]:
    """Read the node's parameters with a short-lived context (the bridge makes its own later)."""
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    ctx = rclpy.Context()
    rclpy.init(args=argv, context=ctx, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = rclpy.create_node("opcua_server", context=ctx)
        out = {}
        for name in ("config_dir", "server_config", "endpoint", "pki_dir"):
            node.declare_parameter(name, "")
            out[name] = str(node.get_parameter(name).value or "")
        out["node_name"] = node.get_name()
        node.destroy_node()
        return out
    finally:
        rclpy.try_shutdown(context=ctx)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv if argv is None else argv)
    ros_args = args[args.index("--ros-args") :] if "--ros-args" in args else []
    p = _params([args[0] if args else "opcua_server", *ros_args])
    cli: list[str] = []
    if p["config_dir"]:
        cli += ["--config-dir", p["config_dir"]]
    if p["server_config"]:
        cli += ["--config", p["server_config"]]
    if p["endpoint"]:
        cli += ["--endpoint", p["endpoint"]]
    if p["pki_dir"]:
        cli += ["--pki-dir", p["pki_dir"]]
    from aseptic_cell.opcua.server.app import main as server_main

    return server_main([*cli, *ros_args], node_name=p["node_name"])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
