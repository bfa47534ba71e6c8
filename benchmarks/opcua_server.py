"""CLI of the cell OPC UA server benchmark (logic: aseptic_cell/opcua/server/bench.py).

ROS_DOMAIN_ID=125 .venv/bin/python benchmarks/opcua_server.py [--json] [--rate HZ] [--clients N]
.venv/bin/python benchmarks/opcua_server.py --flood [--json]   (connection flood, issue 12 item 6)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aseptic_cell.opcua.server.bench import run_flood_benchmark, run_server_benchmark  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Cell OPC UA server under subscription load")
    p.add_argument("--clients", type=int, default=5)
    p.add_argument("--publishing-ms", type=float, default=50.0)
    p.add_argument("--rate", type=float, default=10.0, help="ROS publish rate of the fake supervisor (Hz)")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--json", action="store_true")
    p.add_argument("--flood", action="store_true", help="session open times under a connection flood instead")
    a = p.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.ERROR)
    if a.flood:
        r = run_flood_benchmark()
        print(json.dumps(r) if a.json else "\n".join(f"{k:<40}{v:>12}" for k, v in r.items()))
        return 0
    r = run_server_benchmark(
        clients=a.clients, publishing_ms=a.publishing_ms, rate_hz=a.rate, duration_s=a.duration
    )
    if a.json:
        print(json.dumps(r))
    else:
        print(
            f"cell OPC UA server: {r['server_clients']} clients x {r['server_monitored_items_per_client']} "
            f"monitored items, publishing {r['server_publishing_ms']:.0f} ms, "
            f"ROS input {r['server_ros_rate_hz']} Hz"
        )
        print(f"{'metric':<36}{'value':>12}")
        for k in (
            "server_offered_per_s",
            "server_notifications_per_s",
            "server_p50_ms",
            "server_p99_ms",
            "server_max_ms",
            "server_e2e_p50_ms",
            "server_e2e_p99_ms",
            "server_rss_mb",
        ):
            print(f"{k:<36}{r[k]:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
