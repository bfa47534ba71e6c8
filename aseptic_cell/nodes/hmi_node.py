"""``hmi`` node: the operator HMI (FastAPI + uvicorn) fed by the ROS graph (issue 7).

The ROS side (:class:`aseptic_cell.hmi.ros_backend.RosBackend`) runs in a background thread
with its own rclpy Context; the web server runs in the main thread (uvicorn handles
SIGTERM/SIGINT: graceful shutdown, then the ROS side is stopped; exit code 0).

Parameters (``--ros-args -p key:=value``):
    config_dir   configuration directory (``users.yaml``, ``hmi.yaml``); default: the repo's
    hmi_config   path of the HMI settings file (default ``<config_dir>/hmi.yaml``)
    host, port   override ``hmi.yaml`` (a non-loopback host still needs ``allow_remote``)

Prints ``HMI listening on http://host:port/`` once the socket is bound.
"""

from __future__ import annotations

import logging
import socket
import sys
import time
from pathlib import Path
from typing import Any

import yaml


class _WallClock:
    def now(self) -> float:
        return time.time()


def ros_params(argv: list[str]) -> dict[str, Any]:
    """``-p key:=value`` pairs after ``--ros-args`` (values parsed as YAML, like rcl does)."""
    out: dict[str, Any] = {}
    if "--ros-args" not in argv:
        return out
    args = argv[argv.index("--ros-args") + 1 :]
    for i, a in enumerate(args):
        if a in ("-p", "--param") and i + 1 < len(args) and ":=" in args[i + 1]:
            key, _, value = args[i + 1].partition(":=")
            out[key.split(".")[-1]] = yaml.safe_load(value)
    return out


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _server_class() -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown (exit status -15); a
        node process should end with 0 after a clean stop like the other nodes."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            self._captured_signals.clear()

    return Server


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    _Server = _server_class()

    from aseptic_cell.auth import UserDirectory
    from aseptic_cell.config.loader import default_config_dir
    from aseptic_cell.hmi.app import create_app
    from aseptic_cell.hmi.config import HmiConfig, HmiConfigError, load_hmi_config
    from aseptic_cell.hmi.ros_backend import RosBackend

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv if argv is None else argv)
    params = ros_params(argv)
    config_dir = Path(str(params.get("config_dir") or default_config_dir()))
    try:
        cfg = load_hmi_config(params.get("hmi_config") or config_dir / "hmi.yaml")
        overrides = {k: params[k] for k in ("host", "port") if params.get(k) not in (None, "", -1)}
        if overrides:
            cfg = HmiConfig.model_validate({**cfg.model_dump(), **overrides})
    except (HmiConfigError, ValueError) as exc:
        print(f"hmi: bad configuration: {exc}", file=sys.stderr)
        return 2
    users = UserDirectory.from_file(config_dir / "users.yaml", _WallClock())
    from aseptic_cell.auth.lockout import LoginGuard

    # the cell's shared, persistent lock-out store (every interface; issue 12)
    users.guard = LoginGuard.shared(users.config.policy, source="hmi")
    ros_args = argv[argv.index("--ros-args") :] if "--ros-args" in argv else []
    sock = bind_socket(cfg.host, cfg.port)
    host, port = sock.getsockname()[:2]
    backend = RosBackend(cfg, ros_args=ros_args)
    from aseptic_cell.hmi.plant import plant_info

    app = create_app(cfg, backend, users, plant=plant_info(config_dir))
    url_host = f"[{host}]" if ":" in host else host
    print(f"HMI listening on http://{url_host}:{port}/", flush=True)
    server = _Server(
        uvicorn.Config(
            app,
            log_level="warning",
            lifespan="on",
            ws_ping_interval=10.0,
            ws_ping_timeout=20.0,
            timeout_graceful_shutdown=2,
        )
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
