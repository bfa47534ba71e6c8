"""Helpers for tests and benchmarks of the cell server: client certificates, a server in its
own process on a free loopback port, and a configured asyncua client."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .pki import make_self_signed

REPO = Path(__file__).resolve().parents[3]
CONFIG_DIR = REPO / "config"


def free_port(lo: int = 48500, hi: int = 48599) -> int:
    """A free TCP port on 127.0.0.1 in [lo, hi] (project rule: OPC UA ports 48500-48599)."""
    start = lo + (os.getpid() * 7 + int(time.monotonic() * 1000)) % (hi - lo + 1)
    for i in range(hi - lo + 1):
        port = lo + (start - lo + i) % (hi - lo + 1)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {lo}-{hi}")


@dataclass(frozen=True)
class ClientIdentity:
    cert: Path  # DER
    key: Path  # PEM
    cert_pem: Path
    application_uri: str


def make_client_identity(
    directory: Path, name: str, application_uri: str | None = None, days: int = 30
) -> ClientIdentity:
    directory.mkdir(parents=True, exist_ok=True)
    uri = application_uri or f"urn:aseptic-cell:test:{name}"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = make_self_signed(
        key, common_name=name, application_uri=uri, hostnames=["localhost"], days=days, server=False
    )
    der, pem, kp = directory / f"{name}.der", directory / f"{name}.pem", directory / f"{name}.key.pem"
    der.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kp.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ClientIdentity(der, kp, pem, uri)


def trust(pki_dir: Path, ident: ClientIdentity) -> None:
    d = pki_dir / "trusted"
    d.mkdir(parents=True, exist_ok=True)
    (d / ident.cert.name).write_bytes(ident.cert.read_bytes())


class ServerProcess:
    """``python -m aseptic_cell.opcua.server`` in a child process on a free loopback port."""

    def __init__(
        self,
        workdir: Path,
        *,
        ros: bool = False,
        env: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
        port: int | None = None,
        limits: Mapping[str, Any] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.pki_dir = self.workdir / "pki"
        self.port = port or free_port()
        self.endpoint = f"opc.tcp://127.0.0.1:{self.port}/aseptic_cell/"
        data = yaml.safe_load((CONFIG_DIR / "opcua_server.yaml").read_text())
        data.update(
            {
                "endpoint": self.endpoint,
                "pki_dir": str(self.pki_dir),
                "users_file": str(CONFIG_DIR / "users.yaml"),
            }
        )
        data.update(overrides or {})
        if limits:
            data["limits"] = {**data.get("limits", {}), **limits}
        self.config = self.workdir / "opcua_server.yaml"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config.write_text(yaml.safe_dump(data))
        self.ready = self.workdir / "ready.json"
        self.log = self.workdir / "server.log"
        self.ros = ros
        self.env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def server_cert(self) -> Path:
        return self.pki_dir / "own" / "cert.der"

    def start(self, timeout_s: float = 30.0) -> ServerProcess:
        self.ready.unlink(missing_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "aseptic_cell.opcua.server",
            "--config",
            str(self.config),
            "--config-dir",
            str(CONFIG_DIR),
            "--ready-file",
            str(self.ready),
        ]
        if not self.ros:
            cmd.append("--no-ros")
        env = {**os.environ, **self.env}
        self._logf = open(self.log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd, stdout=self._logf, stderr=subprocess.STDOUT, env=env, cwd=str(REPO), start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while not self._ready_pid():  # (the server writes the file in place: wait for whole JSON)
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"server not ready within {timeout_s} s:\n{self.log_text()[-3000:]}")
            time.sleep(0.05)
        return self

    def _ready_pid(self) -> bool:
        try:
            self.pid = json.loads(self.ready.read_text())["pid"]
        except (OSError, ValueError, KeyError):
            return False
        return True

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_bytes(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self, timeout_s: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._logf.close()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def client_for(
    endpoint: str,
    ident: ClientIdentity,
    server_cert: Path,
    *,
    user: str | None = None,
    password: str | None = None,
    timeout_s: float = 10.0,
) -> Any:
    """An asyncua Client set up for Basic256Sha256/SignAndEncrypt (not connected; ``set_security`` is
    a coroutine in asyncua 2.x, so call :func:`secure` on it before connecting)."""
    from asyncua import Client

    # Any: the client is tagged below with the identity and server certificate that secure() uses
    c: Any = Client(endpoint, timeout=timeout_s)
    c.application_uri = ident.application_uri
    c.name = "aseptic_cell test client"
    if user is not None:
        c.set_user(user)
    if password is not None:
        c.set_password(password)
    c._cell_ident, c._cell_server_cert = ident, server_cert  # noqa: SLF001
    return c


async def secure(client: Any) -> Any:
    from asyncua import ua
    from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

    await client.set_security(
        SecurityPolicyBasic256Sha256,
        str(client._cell_ident.cert),  # noqa: SLF001
        str(client._cell_ident.key),
        server_certificate=str(client._cell_server_cert),  # noqa: SLF001
        mode=ua.MessageSecurityMode.SignAndEncrypt,
    )
    return client


@contextlib.contextmanager
def env_domain(domain: int) -> Iterator[None]:
    old = os.environ.get("ROS_DOMAIN_ID")
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("ROS_DOMAIN_ID", None)
        else:
            os.environ["ROS_DOMAIN_ID"] = old


class FakeSupervisor:
    """Stand-in for the supervisor's ROS contract (docs/ROS_API.md): publishes BatchStatus,
    InterlockStatusArray, AlarmArray and device states on demand, and serves
    ``/cell/batch/command`` (records requests; replies from ``replies`` or accepts)."""

    def __init__(self, domain_id: int | None = None) -> None:
        import cell_interfaces.msg as cim
        from cell_interfaces.srv import BatchCommand

        from ...nodes.background import BackgroundRos

        self.cim = cim
        self._ros = BackgroundRos(f"fake_supervisor_{os.getpid()}", domain_id=domain_id,
                                  thread_name="fake-supervisor")
        self.node = self._ros.node
        self.pubs = {
            "batch": self.node.create_publisher(cim.BatchStatus, "/cell/batch/status", 10),
            "interlocks": self.node.create_publisher(cim.InterlockStatusArray, "/cell/interlocks", 10),
            "alarms": self.node.create_publisher(cim.AlarmArray, "/cell/alarms/active", 10),
        }
        from std_msgs.msg import String

        self._string = String
        self.pubs["batches"] = self.node.create_publisher(String, "/cell/batches", 10)  # JSON view
        for name, t in (
            ("isolator", "IsolatorState"),
            ("vhp", "VhpState"),
            ("autoclave", "AutoclaveState"),
            ("arm", "ArmState"),
        ):
            self.pubs[name] = self.node.create_publisher(getattr(cim, t), f"/cell/{name}/state", 10)
        self.requests: list[dict[str, str]] = []
        self.replies: dict[str, tuple[bool, str, str, str]] = {}
        self.node.create_service(BatchCommand, "/cell/batch/command", self._serve)
        from cell_interfaces.srv import AcknowledgeAlarm

        self.acks: list[dict[str, Any]] = []  # /cell/alarms/acknowledge requests (accepted unless refused)
        self.ack_refuse: dict[str, str] = {}  # alarm id -> refusal reason
        self.node.create_service(AcknowledgeAlarm, "/cell/alarms/acknowledge", self._ack)
        self._ros.start()

    def _ack(self, req: Any, resp: Any) -> Any:
        self.acks.append({"alarm_id": req.alarm_id, "user": req.user, "comment": req.comment,
                          "signed": bool(req.auth)})
        why = self.ack_refuse.get(req.alarm_id)
        resp.accepted, resp.reason = why is None, why or "acknowledged"
        return resp

    def _serve(self, req: Any, resp: Any) -> Any:
        self.requests.append(
            {
                "command": req.command,
                "user": req.user,
                "password": req.password,
                "meaning": req.meaning,
                "reason": req.reason,
            }
        )
        ok, code, reason, state = self.replies.get(
            req.command, (True, "OK", f"{req.command} accepted", "HOLDING")
        )
        resp.accepted, resp.code, resp.reason, resp.state = ok, code, reason, state
        return resp

    def subscribers(self, key: str) -> int:
        return self.pubs[key].get_subscription_count()

    def command_clients(self) -> int:
        """Clients of ``/cell/batch/command`` this node has discovered."""
        return self.node.count_clients("/cell/batch/command")

    def batch(self, **fields: Any) -> None:
        self.pubs["batch"].publish(self.cim.BatchStatus(**fields))

    def interlocks(self, rules: list[dict[str, Any]]) -> None:
        self.pubs["interlocks"].publish(
            self.cim.InterlockStatusArray(rules=[self.cim.InterlockStatus(**r) for r in rules])
        )

    def alarms(self, alarms: list[dict[str, Any]], flood: bool = False) -> None:
        self.pubs["alarms"].publish(
            self.cim.AlarmArray(flood=flood, alarms=[self.cim.Alarm(**a) for a in alarms])
        )

    def batches(self, view: dict[str, Any]) -> None:
        """Publish a ``/cell/batches`` view (aseptic_cell.supervisor.batch_view's JSON)."""
        self.pubs["batches"].publish(self._string(data=json.dumps(view)))

    def device(self, name: str, **fields: Any) -> None:
        t = {
            "isolator": "IsolatorState",
            "vhp": "VhpState",
            "autoclave": "AutoclaveState",
            "arm": "ArmState",
        }[name]
        self.pubs[name].publish(getattr(self.cim, t)(**fields))

    def close(self) -> None:
        self._ros.close()


class IdleFlood:
    """``n`` TCP connections to ``(host, port)`` from ``source`` that send nothing (or only a Hello),
    reopened as soon as the server closes them — the connection flood of issue 12. ``closed``
    counts the closes seen, ``opened`` the connections made."""

    def __init__(self, host: str, port: int, n: int, *, source: str = "127.0.0.1", hello: bytes = b"",
                 reopen: bool = True, max_rate: float = 200.0) -> None:
        import selectors
        import threading

        self.addr, self.n, self.source, self.hello, self.reopen = (host, port), n, source, hello, reopen
        # reopens per second at most: an instant reconnect loop would only exhaust this host's
        # ephemeral ports (TIME_WAIT) and measure the kernel, not the server
        self.max_rate = max_rate
        self._next_open = 0.0
        self.last_error = ""
        self.opened = self.closed = self.failed = 0
        self.close_times: list[float] = []  # seconds from open to close, per closed socket
        self._sel = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="idle-flood", daemon=True)

    def _open(self) -> None:
        import selectors

        try:
            s = socket.create_connection(self.addr, timeout=2.0, source_address=(self.source, 0))
        except OSError as exc:
            self.failed += 1
            self.last_error = repr(exc)
            return
        if self.hello:
            s.sendall(self.hello)
        s.setblocking(False)
        self._sel.register(s, selectors.EVENT_READ, time.monotonic())
        self.opened += 1

    def open_count(self) -> int:
        return len(self._sel.get_map())

    def _loop(self) -> None:
        for _ in range(self.n):
            self._open()
        while not self._stop.is_set():
            for key, _ev in self._sel.select(0.05):
                s: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:  # an ACK or an error message: keep reading until closed
                    continue
                self._sel.unregister(s)
                s.close()
                self.closed += 1
                self.close_times.append(time.monotonic() - key.data)
            if self.reopen:
                now = time.monotonic()
                budget = min(self.n - self.open_count(), int((now - self._next_open) * self.max_rate))
                if budget > 0:
                    self._next_open = max(self._next_open + budget / self.max_rate, now - 0.1)
                for _ in range(max(0, budget)):
                    if self._stop.is_set():
                        break
                    self._open()

    def start(self, settle_s: float = 0.0) -> IdleFlood:
        self._thread.start()
        deadline = time.monotonic() + 10
        while self.opened < self.n and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(settle_s)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for key in list(self._sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._sel.close()

    def __enter__(self) -> IdleFlood:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def hello_message(endpoint: str) -> bytes:
    """An OPC UA Hello (OPC 10000-6 7.1.2.3) for ``endpoint``."""
    import struct

    url = endpoint.encode()
    body = struct.pack("<IIIII", 0, 65535, 65535, 0, 0) + struct.pack("<i", len(url)) + url
    return b"HELF" + struct.pack("<I", 8 + len(body)) + body
