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


@contextlib.contextmanager
def running_graph(tmp: Path, *, speed: float = 2000.0, nodes=None, config_dir: Path = CONFIG):
    """Yield (procs, client, specs) with every node ACTIVE; on exit stop everything and
    check the exit codes (the caller may inspect ``procs.exit_codes``)."""
    specs = default_graph(str(config_dir), speed=speed, nodes=nodes)
    procs = CellProcesses(specs, log_dir=tmp / "logs")
    procs.start()
    client = None
    try:
        wait_for_nodes(specs, timeout_s=90.0, check=lambda: _no_deaths(procs))
        client = CellClient()
        for n in ("isolator", "vhp", "autoclave", "arm"):
            if nodes is None or n in nodes:
                client.wait_state(n, lambda s: s.comm_ok and s.lifecycle_state == "active", 30.0, f"{n} active")
        yield procs, client, specs
    finally:
        if client is not None:
            client.close()
        procs.exit_codes = procs.stop()


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
