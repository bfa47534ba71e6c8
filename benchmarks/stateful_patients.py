"""Cost of one 4-patient stateful sequence (issue 14; tests/unit/test_patients_stateful.py), and
where it goes: the copy of a campaign snapshot (thaw of its pickle vs ``copy.deepcopy``), the
steps (supervisor ticks, device models, monitors) with the twin's rest rule between ticks or the
models' own substeps all the way, and the garbage collection.

    .venv/bin/python benchmarks/stateful_patients.py [--sequences 300] [--seed 1] [--json]

Seeded sequences of 6 steps (aseptic_cell.supervisor.fuzz_sequences.random_steps) from the
campaign's snapshots round-robin; CPU seconds (``time.process_time``) of this process. Prints
``ms_per_sequence`` for each variant, the snapshot build time and the violations (0 expected).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import random
import sys
import time


def main(argv: list[str] | None = None) -> int:
    from aseptic_cell.config import default_config_dir, load_config
    from aseptic_cell.supervisor.fuzz import FastSignUsers
    from aseptic_cell.supervisor.fuzz_patients import CampaignSnapshots
    from aseptic_cell.supervisor.fuzz_sequences import Collector, apply_step, random_steps

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sequences", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    cfg0 = load_config(default_config_dir())
    ch = cfg0.scheduling.changeover.model_copy(update={"t_purge_min": 2, "t_line_clearance_min": 1})
    cfg = dataclasses.replace(cfg0, scheduling=cfg0.scheduling.model_copy(update={"changeover": ch}))
    users = FastSignUsers(cfg.users, type("Clock", (), {"now": lambda self: 0.0})())
    t0 = time.process_time()
    snaps = CampaignSnapshots(cfg, users)
    build_s = time.process_time() - t0
    out: dict[str, object] = {"sequences": args.sequences, "snapshots": len(snaps),
                              "snapshot_build_cpu_s": round(build_s, 1)}
    violations = 0
    # (copy, stepping, collector): today's test; the reference copy; the reference stepping; the
    # default automatic collector
    for name, copy_kind, coarse, collector in (("thaw+rest rule+collector", "thaw", True, True),
                                               ("deepcopy+rest rule+collector", "deepcopy", True, True),
                                               ("thaw+fine steps+collector", "thaw", False, True),
                                               ("thaw+rest rule+automatic gc", "thaw", True, False)):
        col = Collector() if collector else None
        copy_s = steps_s = extra_s = 0.0
        t_all = time.process_time()
        for n in range(args.sequences):
            rnd = random.Random(args.seed * 1_000_003 + n)
            steps = random_steps(rnd)
            t = time.process_time()
            if copy_kind == "thaw":
                f = snaps.start(n, coarse=coarse)
            else:
                k = n % len(snaps)
                live = snaps.start(k, coarse=coarse)  # a live cell at the snapshot (not counted)
                extra_s += time.process_time() - t
                t = time.process_time()
                f = live.clone()
                f.coarse = coarse
            copy_s += time.process_time() - t
            t = time.process_time()
            for step in steps:
                apply_step(f, step)
            steps_s += time.process_time() - t
            violations += bool(f.violations)
            del f
            if col is not None:
                col.done()
        if col is not None:
            col.close()
        total = time.process_time() - t_all - extra_s
        out[name] = {"ms_per_sequence": round(1000 * total / args.sequences, 1),
                     "copy_ms": round(1000 * copy_s / args.sequences, 1),
                     "steps_ms": round(1000 * steps_s / args.sequences, 1)}
        gc.collect()
    out["violations"] = violations
    if args.json:
        print(json.dumps(out))
    else:
        for key, val in out.items():
            print(f"{key:32s} {val}")
    return 0 if violations == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
