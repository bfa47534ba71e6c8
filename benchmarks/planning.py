"""Benchmark of the joint-space planner (scene.plan), single core.

For the shipped scene and generated denser scenes (64, 256 and 1,024 boxes,
``aseptic_cell.motion.scenes.dense_geometry``):

* station-to-station queries: every ordered pair of the named poses of config/arm.yaml,
  each planned with several seeds; wall time of the whole ``scene.plan`` call (search in
  C, shortcutting, timing, certified check of the result); every returned trajectory is
  checked again with ``scene.check_trajectory`` (certified) and counted in
  ``*_all_certified``;
* random queries: pairs of random configurations with at least 20 mm clearance;
* the same station times by process CPU time (``station_cpu_*``), which a loaded machine
  disturbs less than wall time;
* the planner keeps a lazy roadmap per scene and keep-out set whose memo of edge verdicts
  speeds up repeated queries (never changes their result): the station figures are those
  of a cell in use (roadmap built by the warm-up call, memo filled as the queries run);
  ``station_cold_*`` are the same pairs (seed 0) each planned on a fresh roadmap (build,
  every edge check of the query: the first query after start-up or a keep-out change);
  ``station_methods`` counts straight / roadmap / rrt results;
* reference point from the same run: coal from Python (broadphase manager, as in
  benchmarks/collision.py), configurations/s on the same scene; VAMP if importable.

``--json`` prints one object; ``station_median_ms`` / ``station_p95_ms`` are over every
station query on the scenes with 64 or more boxes.

Usage: python benchmarks/planning.py [--json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from collision import coal_broadphase_rate, vamp_status  # noqa: E402

from aseptic_cell.config.robot import ArmConfig, GeometryConfig  # noqa: E402
from aseptic_cell.motion import Scene, _ccheck  # noqa: E402
from aseptic_cell.motion.planner import clear_roadmaps  # noqa: E402
from aseptic_cell.motion.scenes import dense_geometry  # noqa: E402

GOALS = {"station_median_ms": 1.0, "station_p95_ms": 10.0}


def _stats(ms: list[float]) -> dict[str, float | None]:
    if not ms:
        return {"median_ms": None, "p95_ms": None, "max_ms": None}
    a = np.array(ms)
    return {"median_ms": float(np.median(a)), "p95_ms": float(np.percentile(a, 95)), "max_ms": float(a.max())}


def bench_scene(name: str, scene: Scene, seeds: int, n_random: int, n_coal: int) -> dict[str, Any]:
    poses = scene.arm.poses
    names = list(poses)
    scene.plan(poses[names[0]], poses[names[1]], seed=0)  # warm-up (builds the planning scene)
    station_ms: list[float] = []
    search_ms: list[float] = []
    cpu_ms: list[float] = []
    certified = True
    failures: list[str] = []
    waypoints = []
    methods: dict[str, int] = {}
    for a in names:
        for b in names:
            if a == b:
                continue
            for s in range(seeds):
                c0 = time.process_time()
                r = scene.plan(poses[a], poses[b], seed=s)
                c1 = time.process_time()
                if not r.ok:
                    failures.append(f"{a}->{b} seed {s}: {r.code} {r.reason}")
                    continue
                station_ms.append(r.plan_ms)
                search_ms.append(r.search_ms)
                cpu_ms.append((c1 - c0) * 1e3)
                waypoints.append(len(r.waypoints))
                methods[r.method] = methods.get(r.method, 0) + 1
                again = scene.check_trajectory(r.samples, r.dt)
                certified = certified and again.ok
    cold_ms: list[float] = []
    cold_cpu: list[float] = []
    for a in names:
        for b in names:
            if a == b:
                continue
            clear_roadmaps(scene)
            c0 = time.process_time()
            r = scene.plan(poses[a], poses[b], seed=0)
            c1 = time.process_time()
            if r.ok:
                cold_ms.append(r.plan_ms)
                cold_cpu.append((c1 - c0) * 1e3)
                certified = certified and scene.check_trajectory(r.samples, r.dt).ok
    scene.plan(poses[names[0]], poses[names[1]], seed=0)  # roadmap again for the random queries
    rng = np.random.default_rng(5)
    pool = rng.uniform(-np.pi, np.pi, (20000, 6))
    d = scene.clearance(pool).distance
    free = pool[d >= scene.margin + 0.02]
    random_ms: list[float] = []
    random_cpu: list[float] = []
    ok = 0
    codes: dict[str, int] = {}
    for i in range(min(n_random, len(free) // 2)):
        c0 = time.process_time()
        r = scene.plan(free[2 * i], free[2 * i + 1], seed=i)
        c1 = time.process_time()
        codes[r.code] = codes.get(r.code, 0) + 1
        if r.ok:
            ok += 1
            random_ms.append(r.plan_ms)
            random_cpu.append((c1 - c0) * 1e3)
            certified = certified and scene.check_trajectory(r.samples, r.dt).ok
    coal_res = coal_broadphase_rate(scene, pool[:n_coal])
    return {
        "scene": name,
        "boxes": len(scene.box_names),
        "station_queries": len(names) * (len(names) - 1) * seeds,
        "station_planned": len(station_ms),
        "station_failures": failures,
        "station_waypoints_mean": float(np.mean(waypoints)) if waypoints else None,
        "station": _stats(station_ms),
        "station_search": _stats(search_ms),
        "station_cpu": _stats(cpu_ms),
        "station_methods": methods,
        "station_cold": _stats(cold_ms),
        "station_cold_cpu": _stats(cold_cpu),
        "station_ms": station_ms,
        "search_ms": search_ms,
        "cpu_ms": cpu_ms,
        "cold_ms": cold_ms,
        "random_queries": int(sum(codes.values())),
        "random_planned": ok,
        "random_codes": codes,
        "random": _stats(random_ms),
        "random_cpu": _stats(random_cpu),
        "all_certified": bool(certified),
        "coal_broadphase_configs_per_s": coal_res[0] if coal_res else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--quick", action="store_true", help="fewer seeds and random queries (smoke test)")
    args = ap.parse_args(argv)
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # single core
    except (AttributeError, OSError):
        pass
    arm = ArmConfig.model_validate(yaml.safe_load((ROOT / "config" / "arm.yaml").read_text()))
    base = GeometryConfig.model_validate(yaml.safe_load((ROOT / "config" / "geometry.yaml").read_text()))
    seeds = 2 if args.quick else 10
    n_random = 10 if args.quick else 100
    n_coal = 100 if args.quick else 1000
    scenes = [("shipped", Scene.from_config(arm, base))]
    for n in (64, 256, 1024):
        scenes.append((f"dense_{n}", Scene.from_config(arm, dense_geometry(arm, base, n, seed=1))))
    rows = [bench_scene(name, sc, seeds, n_random, n_coal) for name, sc in scenes]
    dense_ms = [ms for r in rows if r["boxes"] >= 64 for ms in r["station_ms"]]
    dense_stats = _stats(dense_ms)
    dense_search = _stats([ms for r in rows if r["boxes"] >= 64 for ms in r["search_ms"]])
    dense_cpu = _stats([ms for r in rows if r["boxes"] >= 64 for ms in r["cpu_ms"]])
    dense_cold = _stats([ms for r in rows if r["boxes"] >= 64 for ms in r["cold_ms"]])
    out: dict[str, Any] = {
        "simd_level": _ccheck.simd_level(),
        "station_median_ms": dense_stats["median_ms"],
        "station_p95_ms": dense_stats["p95_ms"],
        "station_cpu_median_ms": dense_cpu["median_ms"],
        "station_cpu_p95_ms": dense_cpu["p95_ms"],
        "station_cold_median_ms": dense_cold["median_ms"],
        "station_cold_p95_ms": dense_cold["p95_ms"],
        "station_search_median_ms": dense_search["median_ms"],
        "station_search_p95_ms": dense_search["p95_ms"],
        "station_all_certified": all(r["all_certified"] for r in rows),
        "station_failures": sum(len(r["station_failures"]) for r in rows),
        "scenes": [{k: v for k, v in r.items() if k not in ("station_ms", "search_ms", "cpu_ms", "cold_ms")}
                   for r in rows],
        "vamp": vamp_status(),
        "goals": GOALS,
        "loadavg": list(os.getloadavg()),
    }
    if args.json:
        print(json.dumps(out))
        return 0
    print("planner (straight / lazy roadmap / RRT-Connect in C + shortcut + timing + certified check), "
          f"SIMD {out['simd_level']}, "
          "one core; times of the whole scene.plan call [of which the search in C]")
    for r in rows:
        st, rd, se = r["station"], r["random"], r["station_search"]
        coal_r = r["coal_broadphase_configs_per_s"]
        rnd = f"{rd['median_ms']:.2f} ms p95 {rd['p95_ms']:.2f} ms" if rd["median_ms"] is not None else "-"
        done = f"{r['station_planned']}/{r['station_queries']}"
        print(f"  {r['scene']:<11} {r['boxes']:>5} boxes: station {done} "
              f"median {st['median_ms']:.2f} [{se['median_ms']:.2f}] ms p95 {st['p95_ms']:.2f} "
              f"[{se['p95_ms']:.2f}] ms; random {r['random_planned']}/{r['random_queries']} median {rnd}"
              + (f"; coal {coal_r / 1e3:.1f} k configs/s" if coal_r else ""))
    print(f"  station queries at 64+ boxes: median {out['station_median_ms']:.2f} ms (goal <= 1), "
          f"p95 {out['station_p95_ms']:.2f} ms (goal <= 10); search only: median "
          f"{out['station_search_median_ms']:.2f} ms, p95 {out['station_search_p95_ms']:.2f} ms; by CPU time: "
          f"median {out['station_cpu_median_ms']:.2f} ms, p95 {out['station_cpu_p95_ms']:.2f} ms")
    print(f"  first query on a fresh roadmap (cold, seed 0 of each pair) at 64+ boxes: median "
          f"{out['station_cold_median_ms']:.2f} ms, p95 {out['station_cold_p95_ms']:.2f} ms; methods: "
          + "; ".join(f"{r['scene']} {r['station_methods']}" for r in rows))
    print(f"  every returned path certified: {out['station_all_certified']}")
    print(f"  VAMP: {out['vamp']['reason']}")
    print(f"  load average: {', '.join(f'{x:.2f}' for x in out['loadavg'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
