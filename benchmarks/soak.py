"""Soak: random operator commands, batch commands, bypass requests and device faults against
the in-process cell, invariants checked on every tick (the same machinery as the hypothesis
stateful test).

    .venv/bin/python benchmarks/soak.py [--sequences 100000] [--steps 5] [--seed 1]
                                        [--snapshot-share 0.5] [--json]

A share of the sequences (``--snapshot-share``) starts from snapshots of a whole batch
(aseptic_cell.supervisor.fuzz.PhaseSnapshots), round-robin over the phases (recipe phase + VHP /
autoclave phase), the rest from a fresh cell. Prints ``sequences``, ``violations`` (and the
first violating sequences, replayable by seed) and the per-phase coverage: invariant checks per
recipe phase and per device state the invariants name, and the sequences started in each phase.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time


def main(argv: list[str] | None = None) -> int:
    from aseptic_cell.config import default_config_dir, load_config
    from aseptic_cell.supervisor.fuzz import (
        BATCH_COMMANDS,
        FAULTS,
        OPERATOR_COMMANDS,
        PASSWORDS,
        Coverage,
        FastSignUsers,
        FuzzCell,
        PhaseSnapshots,
    )

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sequences", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=5, help="rules per sequence")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--snapshot-share", type=float, default=0.5,
                    help="share of the sequences that start from a snapshot of a whole batch (0..1)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    cfg = load_config(default_config_dir())
    users = FastSignUsers(cfg.users, type("Clock", (), {"now": lambda self: 0.0})())
    for u, p in PASSWORDS.items():
        users.authenticate(u, p)
    t0 = time.perf_counter()
    snaps = PhaseSnapshots.of(cfg, users) if args.snapshot_share > 0 else None
    t_snap = time.perf_counter() - t0
    cov = Coverage()
    violations = 0
    examples = []
    started = 0
    for n in range(args.sequences):
        rnd = random.Random(args.seed * 1_000_003 + n)
        if snaps is not None and rnd.random() < args.snapshot_share:
            f = snaps.start(started, cov)
            started += 1
        else:
            f = FuzzCell(cfg, users, coverage=cov)
            cov.start_phases["<fresh>"] += 1
        for _ in range(args.steps):
            r = rnd.randrange(4)
            if r == 0:
                f.operate(rnd.randrange(len(OPERATOR_COMMANDS)))
            elif r == 1:
                f.batch(rnd.randrange(len(BATCH_COMMANDS)))
            elif r == 2:
                f.fault(rnd.randrange(len(FAULTS)), rnd.random() < 0.5)
            else:
                f.advance(rnd.choice([2.0, 6.0]))
        if f.violations:
            violations += 1
            if len(examples) < 5:
                examples.append({"sequence": n, "violations": f.violations[:3]})
        if not args.json and (n + 1) % 10_000 == 0:
            print(f"  {n + 1} sequences, {violations} with violations, {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr, flush=True)
    out = {"sequences": args.sequences, "violations": violations, "steps_per_sequence": args.steps,
           "seed": args.seed, "from_snapshots": started, "snapshots": len(snaps) if snaps else 0,
           "snapshot_build_s": round(t_snap, 1), "wall_s": round(time.perf_counter() - t0, 1),
           "examples": examples, "coverage": cov.to_dict()}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"sequences {out['sequences']}")
        print(f"violations {out['violations']}")
        print(f"from_snapshots {started} (of {out['snapshots']} snapshots, built in {out['snapshot_build_s']} s)")
        print(f"wall_s {out['wall_s']}")
        print(cov.table())
        for e in examples:
            print(f"  sequence {e['sequence']}: {e['violations']}")
    return 0 if violations == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
