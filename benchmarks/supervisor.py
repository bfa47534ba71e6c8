"""Supervisor tick time and trip latency, in-process on the sim backend (no ROS).

    .venv/bin/python benchmarks/supervisor.py [--ticks 2000] [--trips 200] [--json]

* tick: one Supervisor.tick() with every tree (the full CART-TRANSDUCTION batch tree, ticked
  while the batch runs) and every rule (evaluate_all + on-tick trips + the guards): the port
  refresh of all device signals is included; the sim model stepping is not.
* trip latency: wall time from an injected fault (a glove put in use, directly at the isolator,
  while the robot moves: RB-03) to the safe command (arm protective stop) being sent
  by the supervisor (and the arm in protective stop). The fault is injected just before a tick,
  so this is the processing time of one tick; a deployed supervisor adds up to one tick period
  (0.1 s at 10 Hz) of waiting.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main(argv: list[str] | None = None) -> int:
    from aseptic_cell.config import default_config_dir, load_config
    from aseptic_cell.supervisor.runner import InProcessRun

    ap = argparse.ArgumentParser()
    ap.add_argument("--ticks", type=int, default=2000)
    ap.add_argument("--trips", type=int, default=100)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    cfg = load_config(default_config_dir())

    # ---- tick time over a running batch
    run = InProcessRun(cfg, tick_s=1.0)
    run.sup.run_batch("CART-TRANSDUCTION", "B-BENCH", "op1")
    ticks: list[float] = []
    for _ in range(args.ticks):
        run.cell.step(1.0)
        t = time.perf_counter()
        run.sup.tick()
        ticks.append((time.perf_counter() - t) * 1e3)

    # ---- trip latency: the arm is moving (a process motion); a glove is put in use directly
    # at the isolator (bypassing the supervisor) -> RB-03 -> protective stop
    lat: list[float] = []
    for _ in range(args.trips):
        r = InProcessRun(cfg, tick_s=0.5)
        r.cell.execute("arm", "enable_drives", {}, user="bench")
        r.cell.execute("arm", "move_to_pose", {"pose": "decon"}, user="bench")
        r.cell.step(0.5)
        r.sup.tick()
        sup = r.sup
        n0 = len(sup.safe_commands)
        r.cell.step(0.1)
        t0 = sup.wall()
        r.cell.execute("isolator", "use_glove", {"port": "GP1", "user": "op1"}, user="op1", reason="bench")
        sup.tick()
        sent = [t for t, node, cmd in sup.safe_commands[n0:] if node == "arm"]
        if sent and r.cell.sim.arm.sensors().get("protective_stop"):
            lat.append((sent[0] - t0) * 1e3)
    out = {
        "backend": "in-process sim (no ROS)",
        "tick_p50_ms": round(statistics.median(ticks), 3), "tick_p99_ms": round(_pct(ticks, 99), 3),
        "tick_max_ms": round(max(ticks), 3), "ticks": len(ticks),
        "rules": len(cfg.interlocks.rules),
        "trip_latency_p50_ms": round(statistics.median(lat), 3) if lat else None,
        "trip_latency_p99_ms": round(_pct(lat, 99), 3) if lat else None, "trips": len(lat),
    }
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k} {v}")
    return 0 if lat else 1


if __name__ == "__main__":
    sys.exit(main())
