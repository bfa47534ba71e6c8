"""sim_world's speed-up changes while it runs (scenario runs steer it) and bad values are refused."""

from __future__ import annotations

import threading
import time

import pytest
from rosgraph_msgs.msg import Clock

from aseptic_cell.client import CellClient
from aseptic_cell.launcher import CellProcesses, wait_for_nodes
from aseptic_cell.nodes.graph import default_graph

from .graphutil import CONFIG

pytestmark = pytest.mark.timeout(120)


def _rate(client: CellClient, latest: dict, wall_s: float = 2.0) -> float:
    """Sim seconds per wall second over ``wall_s`` (from /clock)."""
    time.sleep(0.3)  # let the new speed take hold
    s0, w0 = latest["t"], time.monotonic()
    time.sleep(wall_s)
    return (latest["t"] - s0) / (time.monotonic() - w0)


def test_speed_changes_at_run_time_and_bad_values_are_refused(tmp_path):
    specs = default_graph(str(CONFIG), speed=50.0, nodes=["sim_world"])
    with CellProcesses(specs, log_dir=tmp_path / "logs") as procs:
        wait_for_nodes([s.name for s in specs], timeout_s=60.0)
        client = CellClient()
        latest = {"t": float("nan")}
        backwards: list[tuple[float, float]] = []
        got = threading.Event()

        def on_clock(m: Clock) -> None:
            t = m.clock.sec + m.clock.nanosec * 1e-9
            if t < latest["t"]:
                backwards.append((latest["t"], t))
            latest["t"] = t
            got.set()

        client.node.create_subscription(Clock, "/clock", on_clock, 10)
        try:
            assert got.wait(20.0), "no /clock"
            # speeds the world keeps up with even on a loaded 2-core machine (a CI run with two
            # busy loops reached ~235x at most); the bounds tell the speeds apart, they are no benchmark
            assert 30 < _rate(client, latest) < 65
            client.set_sim_speed(150.0)
            assert 90 < _rate(client, latest) < 170
            for bad in (-1.0, float("nan"), float("inf")):
                with pytest.raises(ValueError, match="refused speed: speed must be a finite number >= 0"):
                    client.set_sim_speed(bad)
            assert 90 < _rate(client, latest) < 170  # a refused value changed nothing
            client.set_sim_speed(10.0)
            assert 5 < _rate(client, latest) < 14
            client.pause_sim(True)
            assert _rate(client, latest) == 0.0  # /clock still published, time stands still
            client.pause_sim(False)
            assert 5 < _rate(client, latest) < 14
            assert not backwards  # re-anchored: no jump back, no catch-up burst
        finally:
            client.close()
        codes = procs.stop()
    assert codes == {"sim_world": 0}
