"""Start the real node graph (real processes, real DDS) for system tests."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from aseptic_cell.client import CellClient
from aseptic_cell.launcher import CellProcesses, wait_for_nodes
from aseptic_cell.nodes.graph import default_graph

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config"


def _free_ports(n: int) -> list[int]:
    import socket

    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def opcua_config_dir(tmp: Path, sim_speed: float) -> Path:
    """A copy of config/ whose opcua.yaml puts the emulated devices on free loopback ports."""
    import shutil

    import yaml

    target = tmp / "config"
    shutil.copytree(CONFIG, target)
    data = yaml.safe_load((target / "opcua.yaml").read_text())
    for (dev, entry), port in zip(data["devices"].items(), _free_ports(len(data["devices"])), strict=True):
        entry["endpoint"] = f"opc.tcp://127.0.0.1:{port}/aseptic/{dev}"
    data["emulator"]["sim_speed"] = sim_speed
    # These tests are about device and interlock behaviour over OPC UA, not freeze detection
    # (tests/hil does that with its own timings): on a loaded 2-core CI machine a 1 s status read
    # is sometimes missed, which latches a device (correctly) before the first test starts.
    data["client"].update(health_timeout_s=3.0, silence_timeout_s=6.0)
    (target / "opcua.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return target


@contextlib.contextmanager
def running_graph(tmp: Path, *, speed: float = 2000.0, nodes=None, config_dir: Path = CONFIG,
                  hardware: str = "sim"):
    """Yield (procs, client, specs) with every node ACTIVE; on exit stop everything and
    check the exit codes (the caller may inspect ``procs.exit_codes``).

    ``hardware="opcua"``: the device nodes use the OPC UA backend against ``cellctl emulate``
    (one asyncua server per device, free ports, its own clock) — no sim_world, wall time."""
    from dataclasses import replace

    from aseptic_cell.nodes.graph import emulator_spec

    if hardware == "opcua":
        config_dir = opcua_config_dir(tmp, speed)
        specs = default_graph(str(config_dir), speed=speed, nodes=nodes, hardware="opcua")
        specs = [replace(s, params={**s.params, "use_sim_time": False}) if "use_sim_time" in s.params else s
                 for s in specs]
        specs = [emulator_spec(config_dir, speed)] + specs
    else:
        specs = default_graph(str(config_dir), speed=speed, nodes=nodes)
    procs = CellProcesses(specs, log_dir=tmp / "logs")
    client = None
    try:
        if hardware == "opcua":  # the hardware first: the device nodes connect to it on configure
            from aseptic_cell.launcher import wait_for_output

            procs.start_one(specs[0])
            wait_for_output(procs, "emulator", '"ready": true', 180.0)
            for spec in specs[1:]:
                procs.start_one(spec)
        else:
            procs.start()
        wait_for_nodes([s for s in specs if s.argv is None], timeout_s=120.0, check=lambda: _no_deaths(procs))
        client = CellClient()
        for n in ("isolator", "vhp", "autoclave", "arm"):
            if nodes is None or n in nodes:
                client.wait_state(n, lambda s: s.comm_ok and s.lifecycle_state == "active", 30.0, f"{n} active")
        yield procs, client, specs
    finally:
        if client is not None:
            client.close()
        procs.exit_codes = procs.stop(timeout_s=15.0)  # the emulator stops four OPC UA servers


def _no_deaths(procs: CellProcesses) -> None:
    dead = procs.poll()
    if dead:
        raise RuntimeError(f"node process(es) died during bring-up: {dead}")


def events(client: CellClient, event: str, since: int = 0) -> list[dict]:
    return [e for e in client.events[since:] if e.get("event") == event]


def wait_until(pred, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
