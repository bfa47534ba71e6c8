"""Node-graph figures: bring-up time, service and action round trips (real processes, DDS).

    .venv/bin/python benchmarks/graph.py [--json] [--samples N]

Bring-up: process spawn until every lifecycle node is ACTIVE (the lifecycle manager brings
them up in order). Service round trip: ``/cell/vhp/command get_result`` through the device
node and the sim backend to ``sim_world`` and back. Action round trip: an
``ExecuteTrajectory`` goal of two samples at the current pose (collision check included)
from send to result. The speed-up of a full batch is measured by
``cellctl demo --speed max --json`` (``speedup`` key).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--samples", type=int, default=100)
    args = ap.parse_args()
    os.environ.setdefault("ROS_DOMAIN_ID", "147")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    from builtin_interfaces.msg import Duration
    from cell_interfaces.action import ExecuteTrajectory
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from aseptic_cell.client import CellClient
    from aseptic_cell.launcher import CellProcesses, wait_for_nodes
    from aseptic_cell.nodes.graph import default_graph

    specs = default_graph(str(REPO / "config"), speed=100.0)
    t0 = time.monotonic()
    out: dict[str, float] = {}
    with CellProcesses(specs, log_dir=tempfile.mkdtemp(prefix="bench-graph-")) as procs:
        wait_for_nodes(specs, timeout_s=120.0)
        out["bringup_s"] = time.monotonic() - t0
        client = CellClient(principal="supervisor")  # device commands, signed as the supervisor sends them
        try:
            client.wait_state("arm", lambda s: s.comm_ok, 30.0)
            svc = []
            for _ in range(args.samples):
                t = time.perf_counter()
                r = client.command("vhp", "get_result")
                svc.append((time.perf_counter() - t) * 1e3)
                assert r.accepted, r
            client.command("arm", "enable_drives")
            act = []
            for _ in range(max(10, args.samples // 5)):
                q = list(client.state("arm").joint_positions)
                tr = JointTrajectory(points=[
                    JointTrajectoryPoint(positions=q, time_from_start=Duration(sec=0)),
                    JointTrajectoryPoint(positions=q, time_from_start=Duration(nanosec=100_000_000))])
                t = time.perf_counter()
                ok, res = client.run_action(ExecuteTrajectory, "/cell/arm/execute_trajectory",
                                            ExecuteTrajectory.Goal(trajectory=tr, user="bench", task="hold"), 30.0)
                act.append((time.perf_counter() - t) * 1e3)
                assert ok and res.success, res
            client.command("arm", "disable_drives")
        finally:
            client.close()
        procs.stop()
    out.update(service_rtt_p50_ms=statistics.median(svc), service_rtt_p99_ms=pct(svc, 99),
               action_rtt_p50_ms=statistics.median(act), action_rtt_p99_ms=pct(act, 99))
    if args.json:
        print(json.dumps({k: round(v, 3) for k, v in out.items()}))
    else:
        print(f"graph bring-up (spawn -> all lifecycle nodes ACTIVE)  {out['bringup_s']:8.2f} s")
        print(f"service round trip p50 / p99                        {out['service_rtt_p50_ms']:8.2f} / "
              f"{out['service_rtt_p99_ms']:.2f} ms")
        print(f"action round trip (ExecuteTrajectory) p50 / p99     {out['action_rtt_p50_ms']:8.2f} / "
              f"{out['action_rtt_p99_ms']:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
