"""What the process equipment (issue 14 item 1) costs the in-process supervisor: CPU time per
supervisor tick of ``InProcessRun`` with ``process_equipment.enabled`` off and on (the six units'
models stepped, their signals refreshed into the signal table, their alarm conditions evaluated).

    .venv/bin/python benchmarks/process_equipment.py [--json] [--rounds N] [--ticks N]

CPU time of this thread (``time.process_time``), not wall time: on a loaded machine the wall
time is mostly preemption. Rounds alternate off/on; the median round is reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any


def measure(rounds: int, ticks: int) -> dict[str, Any]:
    from aseptic_cell.config import default_config_dir, load_config
    from aseptic_cell.supervisor.runner import InProcessRun

    runs = {}
    for enabled in (False, True):
        cfg = load_config(default_config_dir())
        cfg.layout.process_equipment.enabled = enabled
        runs[enabled] = InProcessRun(cfg, tick_s=5.0)
        runs[enabled].advance(10.0)
    per: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for enabled, run in runs.items():
            t0 = time.process_time()
            for _ in range(ticks):
                run.tick_once()
            per[enabled].append(1e3 * (time.process_time() - t0) / ticks)
    off, on = statistics.median(per[False]), statistics.median(per[True])
    return {"rounds": rounds, "ticks_per_round": ticks, "tick_cpu_ms_off": round(off, 3),
            "tick_cpu_ms_on": round(on, 3), "added_cpu_ms": round(on - off, 3),
            "rounds_off": [round(x, 3) for x in per[False]], "rounds_on": [round(x, 3) for x in per[True]]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--ticks", type=int, default=200)
    a = ap.parse_args()
    out = measure(a.rounds, a.ticks)
    if a.json:
        print(json.dumps(out))
    else:
        print(f"supervisor tick CPU: {out['tick_cpu_ms_off']:.2f} ms without, {out['tick_cpu_ms_on']:.2f} ms with the "
              f"process equipment (+{out['added_cpu_ms']:.2f} ms; median of {a.rounds} rounds x {a.ticks} ticks)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
