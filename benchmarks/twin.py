"""The throughput twin's speed (issue 14 item 8): 30 simulated days of a 16-slot cell with the real
supervisor (``aseptic_cell/twin.py``), goal <= 60 s wall on one core; the same days through the
arbiter-only discrete-event model (``aseptic_cell/scheduling/simulate.py``) as the reference, in
the same run, with what each found (batches, utilisation, bottleneck).

    .venv/bin/python benchmarks/twin.py [--json] [--days 30] [--patients 16] [--purge-min M]

Reports wall time and CPU time of this process (``time.process_time``): on a loaded machine the
wall time is mostly preemption, the CPU time is what one core spent. The twin's record files go
to a RAM disk when there is one (``/dev/shm``), as ``cellctl twin`` does by default.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from typing import Any


def measure(days: float, patients: int, purge_min: float | None, seed: int) -> dict[str, Any]:
    from aseptic_cell.config import default_config_dir
    from aseptic_cell.scheduling.simulate import CellSimulation, build
    from aseptic_cell.twin import Twin, TwinParams

    out = tempfile.mkdtemp(prefix="bench-twin-")
    try:
        twin = Twin(default_config_dir(), TwinParams(patients=patients, days=days, purge_min=purge_min, seed=seed,
                                                     out_dir=out, plots=False))
        rep = twin.run()
        shutil.rmtree(twin.records_dir, ignore_errors=True)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    cfg, proc = build(default_config_dir(), "cart-autologous.yaml", purge_min=purge_min, slots=None)
    w0, c0 = time.perf_counter(), time.process_time()
    ref = CellSimulation(cfg, proc, days=days, saturate=True, seed=seed).run().as_dict()
    ref_wall, ref_cpu = time.perf_counter() - w0, time.process_time() - c0
    return {
        "days": days, "patients": patients, "slots": rep["parameters"]["slots"],
        "t_purge_min": rep["parameters"]["t_purge_min"],
        "twin": {"wall_s": rep["wall_s"], "cpu_s": rep["cpu_s"], "sim_s": rep["sim_s"],
                 "speedup_wall": rep["speedup"],
                 "speedup_cpu": round(rep["sim_s"] / rep["cpu_s"], 1) if rep["cpu_s"] else None,
                 "goal_wall_s": 60.0, "goal_met_wall": rep["wall_s"] <= 60.0, "goal_met_cpu": rep["cpu_s"] <= 60.0,
                 "supervisor_ticks": rep["engine"]["supervisor_ticks"], "engine": rep["engine"],
                 "batches_completed": rep["batches_completed"], "batches_failed": rep["batches_failed"],
                 "batches_per_year": rep["batches_per_year"], "utilisation": rep["utilisation"],
                 "bottleneck": rep["bottleneck"], "time_to_vein_days": rep["time_to_vein_days"]},
        "reference_arbiter_model": {"wall_s": round(ref_wall, 3), "cpu_s": round(ref_cpu, 3),
                                    "batches_completed": ref["completed"], "batches_failed": ref["failed"],
                                    "batches_per_year": ref["batches_per_year"],
                                    "utilisation": ref["utilisation"], "bottleneck": ref["bottleneck"],
                                    "time_to_vein_days": ref["time_to_vein_days"], "demand": "saturate"},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--patients", type=int, default=16)
    ap.add_argument("--purge-min", type=float, default=None)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    out = measure(a.days, a.patients, a.purge_min, a.seed)
    if a.json:
        print(json.dumps(out))
    else:
        t, r = out["twin"], out["reference_arbiter_model"]
        print(f"twin: {out['days']:g} days x {out['slots']} slots: {t['wall_s']} s wall, {t['cpu_s']} s CPU "
              f"(goal <= 60 s), {t['supervisor_ticks']} supervisor ticks; {t['batches_completed']} batches, "
              f"{t['batches_per_year']}/yr, bottleneck {t['bottleneck']}")
        print(f"reference (arbiter model): {r['wall_s']} s wall; {r['batches_completed']} batches, "
              f"{r['batches_per_year']}/yr, bottleneck {r['bottleneck']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
