"""HIL fixtures: emulators (``python -m aseptic_cell.opcua.emulator``) and device nodes with
``hardware: opcua`` in separate processes, real TCP on loopback, OPC UA ports picked free in
48400-48499, a TCP proxy in front of the autoclave.

One cell per module (process starts dominate the run time on a shared 2-core machine): the
isolator is served by its own emulator process (killed, frozen, restarted by the fault
tests); the autoclave and the VHP unit by a second one, the autoclave through the proxy.
Every fault test leaves the cell recovered for the next one.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from aseptic_cell.launcher import _pdeathsig_term  # noqa: F401 - children die with pytest

from .tcp_proxy import TcpProxy

ROOT = Path(__file__).resolve().parents[2]
PORT_RANGE = range(48400, 48500)
TEST_CLIENT = {
    "publishing_interval_ms": 50.0,
    "connect_timeout_s": 3.0,
    "request_timeout_s": 2.0,
    "health_period_s": 0.25,
    "health_timeout_s": 2.0,
    "silence_timeout_s": 3.0,
    "backoff_initial_s": 0.2,
    "backoff_max_s": 1.0,
}


def free_ports(n: int) -> list[int]:
    """``n`` ports of 48400-48499 that nobody listens on now (randomised start)."""
    import random

    ports: list[int] = []
    candidates = list(PORT_RANGE)
    random.shuffle(candidates)
    for p in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
        ports.append(p)
        if len(ports) == n:
            return ports
    raise RuntimeError("no free OPC UA test ports in 48400-48499")


def write_opcua_yaml(
    path: Path,
    endpoints: dict[str, int],
    *,
    sim_speed: float = 200.0,
    update_period_s: float = 0.05,
    client: dict[str, Any] | None = None,
) -> Path:
    data = {
        "devices": {d: {"endpoint": f"opc.tcp://127.0.0.1:{p}/aseptic/{d}"} for d, p in endpoints.items()},
        "emulator": {"sim_speed": sim_speed, "update_period_s": update_period_s},
        "client": dict(TEST_CLIENT, **(client or {})),
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


class Emulator:
    """``python -m aseptic_cell.opcua.emulator`` in its own process (group)."""

    def __init__(
        self, opcua_yaml: Path, devices: list[str], log: Path, extra: list[str] | None = None,
        fault_methods: bool = True,
    ) -> None:
        # the HIL bench asks for the fault-injection hooks (off by default in cellctl emulate)
        extra = [*(extra or []), *(["--fault-methods"] if fault_methods else [])]
        self.yaml, self.devices, self.log, self.extra = opcua_yaml, devices, log, extra
        self.proc: subprocess.Popen | None = None
        self.ready_at = 0.0

    def start(self) -> Emulator:
        cmd = [
            sys.executable,
            "-m",
            "aseptic_cell.opcua.emulator",
            "--opcua-config",
            str(self.yaml),
            "--log-level",
            "WARNING",
            *self.extra,
        ]
        for d in self.devices:
            cmd += ["--device", d]
        self._fh = open(self.log, "ab")
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=self._fh,
            cwd=ROOT,
            start_new_session=True,
            preexec_fn=_pdeathsig_term,
        )
        return self

    def wait_ready(self, timeout_s: float = 90.0) -> Emulator:
        assert self.proc is not None and self.proc.stdout is not None
        box: dict[str, Any] = {}

        def read() -> None:
            box["line"] = self.proc.stdout.readline()

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(timeout_s)
        line = box.get("line", b"")
        if not line or not json.loads(line).get("ready"):
            raise RuntimeError(f"emulator {self.devices} not ready within {timeout_s} s (see {self.log})")
        self.ready_at = time.monotonic()
        return self

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def emulator_call(endpoint: str, device: str, method: str, *args: str, timeout_s: float = 10.0) -> list[Any]:
    """Call a method of a device server (e.g. the Emulator/InjectFault hook) with a fresh asyncua client."""
    from asyncua import Client, ua

    from aseptic_cell.opcua.model import NS_URI, nid_fault, nid_folder, nid_method

    async def go() -> list[Any]:
        async with Client(endpoint, timeout=timeout_s) as c:
            ns = await c.get_namespace_index(NS_URI)
            if method in ("InjectFault", "ClearFault"):
                parent, mid = nid_folder(device, "Emulator"), nid_fault(device, method)
            else:
                parent, mid = nid_folder(device, "Methods"), nid_method(device, method)
            return await c.get_node(ua.NodeId(parent, ns)).call_method(
                ua.NodeId(mid, ns), *[ua.Variant(a, ua.VariantType.String) for a in args]
            )

    return asyncio.run(asyncio.wait_for(go(), timeout_s * 2))


# device-node events (docs/ROS_API.md /cell/events) -> batch record kinds
RECORD_KINDS = {
    "command": "command",
    "refusal": "refusal",
    "cycle_result": "cycle_result",
    "latched": "trip",
    "recovered": "command",
    "comm_lost": "alarm",
    "comm_restored": "alarm",
}


def record_events(record: Any, batch_id: str, events: list[dict[str, Any]]) -> int:
    """Append the record-relevant device events to a BatchRecord; returns how many."""
    import math

    n = 0
    for ev in events:
        kind = RECORD_KINDS.get(ev.get("event", ""))
        if kind is None:
            continue
        payload = {
            k: v
            for k, v in ev.items()
            if k != "event" and v is not None and not (isinstance(v, float) and not math.isfinite(v))
        }
        record.append(
            kind,
            batch_id=batch_id,
            actor=str(ev.get("user") or "system"),
            action=f"{ev.get('device', '')}.{ev.get('command', ev.get('event'))}",
            reason=str(ev.get("detail") or ev.get("reason") or ""),
            payload=payload,
        )
        n += 1
    return n


def opcua_graph(config_dir: Path, nodes: list[str]) -> list[Any]:
    """The cell graph's device nodes with ``hardware: opcua`` on wall time (no sim_world: the
    emulator is the physical world and has its own clock)."""
    from aseptic_cell.nodes.graph import LIFECYCLE_MANAGER, default_graph, lifecycle_manager_spec

    specs = default_graph(config_dir, 1.0, hardware="opcua", nodes=nodes)
    specs = [
        replace(s, params={**s.params, "use_sim_time": False, "stale_after_s": 3.0})
        if s.kind == "device"
        else s
        for s in specs
    ]
    devices = [s for s in specs if s.name != LIFECYCLE_MANAGER]
    # generous transition/heartbeat limits: the machine is shared (load averages of 10-30 seen)
    return devices + [
        lifecycle_manager_spec(
            devices, use_sim_time=False, heartbeat_timeout_s=5.0, extra_params={"transition_timeout_s": 60.0}
        )
    ]


@dataclass
class Hil:
    client: Any
    procs: Any
    emulators: dict[str, Emulator]
    endpoints: dict[str, str]  # device -> endpoint of the emulator itself (not the proxy)
    proxy: TcpProxy
    tmp: Path
    cfg: Any
    events_mark: int = 0
    notes: list[str] = field(default_factory=list)

    def mark(self) -> int:
        with self.client._lock:
            self.events_mark = len(self.client.events)
            self.alarm_mark = len(self.client.alarms)
        return self.events_mark

    def events(self, since: int | None = None) -> list[dict[str, Any]]:
        with self.client._lock:
            return list(self.client.events[self.events_mark if since is None else since :])

    def alarms(self) -> list[Any]:
        with self.client._lock:
            return list(self.client.alarms[getattr(self, "alarm_mark", 0) :])

    def verify_record(self, batch_id: str) -> Any:
        """Record the events since the mark into a hash-chained BatchRecord and verify it."""
        from aseptic_cell.records import BatchRecord

        class _Wall:
            def now(self) -> float:
                return time.time()

        path = self.tmp / f"{batch_id}.sqlite"
        with BatchRecord(path, _Wall()) as rec:
            n = record_events(rec, batch_id, self.events())
            report = rec.verify()
            kinds = [e.kind for e in rec.entries(batch_id)]
        assert n > 0 and report.ok and report.count == n, report
        return kinds


@pytest.fixture(scope="module")
def hil(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from aseptic_cell.client import CellClient
    from aseptic_cell.config import default_config_dir, load_config
    from aseptic_cell.devices.opcua_backend import OpcUaBackend
    from aseptic_cell.launcher import CellProcesses

    tmp = tmp_path_factory.mktemp("hil")
    p_iso, p_ac, p_vhp, p_proxy = free_ports(4)
    emu_yaml = write_opcua_yaml(tmp / "opcua-emulator.yaml", {"ISO1": p_iso, "AC1": p_ac, "VHP1": p_vhp})
    node_yaml = write_opcua_yaml(tmp / "opcua-nodes.yaml", {"ISO1": p_iso, "AC1": p_proxy, "VHP1": p_vhp})
    proxy = TcpProxy(p_proxy, p_ac).start()
    emulators = {
        "ISO1": Emulator(emu_yaml, ["ISO1"], tmp / "emu-iso.log").start(),
        "AC1": Emulator(emu_yaml, ["AC1", "VHP1"], tmp / "emu-ac-vhp.log").start(),
    }
    procs = None
    client = None
    raw = None
    try:
        for e in emulators.values():
            e.wait_ready()
        # the backend of this process on the isolator's emulator (its contract is checked in the
        # fault tests), connected before the nodes so its browse/subscribe load is out of the way
        raw = OpcUaBackend(device_id="ISO1", kind="isolator", config_path=str(emu_yaml))
        raw.connect(60.0)
        config_dir = default_config_dir()
        specs = opcua_graph(config_dir, ["isolator", "vhp", "autoclave", "lifecycle_manager"])
        env = dict(os.environ, ASEPTIC_CELL_OPCUA_CONFIG=str(node_yaml))
        procs = CellProcesses(specs, env=env, log_dir=tmp / "logs").start()
        client = CellClient(domain_id=int(os.environ["ROS_DOMAIN_ID"]))
        for n in ("isolator", "vhp", "autoclave"):
            client.wait_state(n, lambda s: s.comm_ok and s.lifecycle_state == "active", 120.0, f"{n} active")
        h = Hil(
            client,
            procs,
            emulators,
            {
                "ISO1": f"opc.tcp://127.0.0.1:{p_iso}/aseptic/ISO1",
                "AC1": f"opc.tcp://127.0.0.1:{p_ac}/aseptic/AC1",
                "VHP1": f"opc.tcp://127.0.0.1:{p_vhp}/aseptic/VHP1",
            },
            proxy,
            tmp,
            load_config(config_dir),
        )
        h.emu_yaml = emu_yaml
        h.raw = raw
        yield h
    finally:
        if raw is not None:
            raw.close()
        if client is not None:
            client.close()
        if procs is not None:
            procs.stop()
        for e in emulators.values():
            e.stop()
        proxy.stop()
