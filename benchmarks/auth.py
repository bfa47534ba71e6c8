"""Added latency of command authentication (issue 12): signing and verifying the ``auth``
envelope per command, and a service round trip over real rclpy/Fast DDS with and without it.

    .venv/bin/python benchmarks/auth.py [--json] [--samples N] [--round-trips N]

Per command (the request the sender really builds): ``open_door`` (supervisor -> isolator
node), ``safe_state`` (lifecycle manager -> device), ``recover`` (supervisor -> device),
``operate`` (HMI -> supervisor), ``move_to_pose`` (supervisor -> arm), an
``execute_trajectory`` of 500 samples x 6 joints (the largest request: its ``args_json``) and a
``RunBatch`` goal. ``sign_us`` is the sender's cost, ``verify_us`` the receiver's (HMAC check,
window, nonce); ``added_us`` = sign + verify of one sample (the latency a command gains), by wall time and by
the thread's CPU time (``added_cpu_us``: on a loaded machine the wall p99 is preemption).
``round_trip``: a DeviceCommand service in one process (server verifies, client signs) against
the same service with neither, p50/p99 in ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def cases() -> list[tuple[str, str, str, str, Any]]:
    """(name, signer, target, scope, request factory)."""
    from cell_interfaces.action import RunBatch
    from cell_interfaces.srv import DeviceCommand, Recover

    q = [[random.uniform(-3, 3) for _ in range(6)] for _ in range(500)]
    return [
        ("open_door", "supervisor", "/cell/isolator/command", "device",
         lambda: DeviceCommand.Request(command="open_door", args_json='{"door": "A"}', user="op1", reason="transfer")),
        ("safe_state", "lifecycle_manager", "/cell/vhp/command", "safe_state",
         lambda: DeviceCommand.Request(device_id="vhp", command="safe_state", user="lifecycle_manager",
                                       reason="dependency isolator lost")),
        ("recover", "supervisor", "/cell/arm/recover", "device",
         lambda: Recover.Request(device_id="arm", user="sup1", reason="inspected")),
        ("operate", "hmi", "/cell/operate", "operator",
         lambda: DeviceCommand.Request(device_id="isolator", command="open_door", args_json='{"door": "A"}',
                                       user="op1", reason="transfer")),
        ("move_to_pose", "supervisor", "/cell/arm/command", "device",
         lambda: DeviceCommand.Request(command="move_to_pose", args_json='{"pose": "rtp_pick", '
                                       '"speed_class": "near_product"}', user="op1", reason="task")),
        ("execute_trajectory_500x6", "supervisor", "/cell/arm/command", "device",
         lambda: DeviceCommand.Request(command="execute_trajectory", args_json=json.dumps({"q": q, "dt": 0.02}),
                                       user="op1", reason="task")),
        ("run_batch_goal", "hmi", "/cell/batch/run", "operator",
         lambda: RunBatch.Goal(recipe_id="CART-TRANSDUCTION", batch_id="B-0001", user="op1")),
    ]


def crypto(samples: int) -> dict[str, Any]:
    from aseptic_cell.security import Signer, Verifier, load_trust

    trust = load_trust()
    out: dict[str, Any] = {}
    for name, who, target, scope, make in cases():
        signer, verifier = Signer(who, trust), Verifier(trust)
        sign, verify, cpu = [], [], []
        for _ in range(samples):
            req = make()
            c0, t0 = time.thread_time(), time.perf_counter()
            signer.sign(target, req)
            t1 = time.perf_counter()
            verifier.verify(target, req, (scope,))
            t2, c1 = time.perf_counter(), time.thread_time()
            sign.append((t1 - t0) * 1e6)
            verify.append((t2 - t1) * 1e6)
            cpu.append((c1 - c0) * 1e6)
        added = [a + b for a, b in zip(sign, verify, strict=True)]
        sample = make()
        out[name] = {"sign_us_p50": round(pct(sign, 50), 1), "verify_us_p50": round(pct(verify, 50), 1),
                     "added_us_p50": round(pct(added, 50), 1), "added_us_p99": round(pct(added, 99), 1),
                     "added_cpu_us_p50": round(pct(cpu, 50), 1), "added_cpu_us_p99": round(pct(cpu, 99), 1),
                     "request_bytes": len(sample.args_json) if hasattr(sample, "args_json") else None}
    return out


def round_trips(n: int) -> dict[str, Any]:
    import rclpy
    from cell_interfaces.srv import DeviceCommand
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    from aseptic_cell.security import AuthRefused, Signer, Verifier, load_trust

    trust = load_trust()
    signer, verifier = Signer("supervisor", trust), Verifier(trust)
    ctx = Context()
    ctx.init(domain_id=int(os.environ["ROS_DOMAIN_ID"]))
    node = rclpy.create_node("auth_bench", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)

    def plain(req: Any, resp: Any) -> Any:
        resp.accepted, resp.code = True, "OK"
        return resp

    def checked(req: Any, resp: Any) -> Any:
        try:
            verifier.verify("/bench/checked", req, ("device",))
        except AuthRefused as exc:
            resp.accepted, resp.code, resp.reason = False, "UNAUTHENTICATED", exc.reason
            return resp
        return plain(req, resp)

    node.create_service(DeviceCommand, "/bench/plain", plain)
    node.create_service(DeviceCommand, "/bench/checked", checked)
    out: dict[str, Any] = {}
    try:
        for name, sign in (("unauthenticated", False), ("authenticated", True)):
            target = "/bench/checked" if sign else "/bench/plain"
            c = node.create_client(DeviceCommand, target)
            while not c.service_is_ready():
                ex.spin_once(timeout_sec=0.05)
            for _ in range(20):
                ex.spin_once(timeout_sec=0.01)
            xs = []
            for _ in range(n):
                req = DeviceCommand.Request(command="open_door", args_json='{"door": "A"}', user="op1",
                                            reason="transfer")
                t0 = time.perf_counter()
                if sign:
                    signer.sign(target, req)
                f = c.call_async(req)
                while not f.done():
                    ex.spin_once(timeout_sec=0.1)
                xs.append((time.perf_counter() - t0) * 1e3)
                assert f.result().accepted, f.result().reason
            out[name] = {"p50_ms": round(pct(xs, 50), 3), "p99_ms": round(pct(xs, 99), 3),
                         "mean_ms": round(statistics.fmean(xs), 3)}
    finally:
        ex.remove_node(node)
        node.destroy_node()
        ctx.try_shutdown()
    out["added_p50_ms"] = round(out["authenticated"]["p50_ms"] - out["unauthenticated"]["p50_ms"], 3)
    out["added_p99_ms"] = round(out["authenticated"]["p99_ms"] - out["unauthenticated"]["p99_ms"], 3)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--round-trips", type=int, default=500)
    args = ap.parse_args()
    os.environ.setdefault("ROS_DOMAIN_ID", "148")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    sys.path.insert(0, str(REPO))
    from aseptic_cell.security import init_security_dir

    with tempfile.TemporaryDirectory(prefix="auth-bench-") as d:
        os.environ["ASEPTIC_CELL_SECURITY_DIR"] = init_security_dir(d).as_posix()
        random.seed(1)
        out = {"per_command": crypto(args.samples), "round_trip": round_trips(args.round_trips),
               "samples": args.samples, "round_trips": args.round_trips}
    if args.json:
        print(json.dumps(out))
        return 0
    print("added latency of command authentication (sign + verify), microseconds, wall / thread CPU time:")
    for name, r in out["per_command"].items():
        print(f"  {name:26s} wall p50 {r['added_us_p50']:8.1f} p99 {r['added_us_p99']:9.1f}   "
              f"cpu p50 {r['added_cpu_us_p50']:7.1f} p99 {r['added_cpu_us_p99']:7.1f}  "
              f"(sign {r['sign_us_p50']:.1f}, verify {r['verify_us_p50']:.1f})")
    rt = out["round_trip"]
    print(f"DeviceCommand service round trip, one process: unauthenticated p50 {rt['unauthenticated']['p50_ms']} ms "
          f"p99 {rt['unauthenticated']['p99_ms']} ms; authenticated p50 {rt['authenticated']['p50_ms']} ms "
          f"p99 {rt['authenticated']['p99_ms']} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
