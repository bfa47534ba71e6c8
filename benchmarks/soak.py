"""Soak: random operator commands, batch commands and device faults against the in-process
cell, invariants checked on every tick (the same machinery as the hypothesis stateful test).

    .venv/bin/python benchmarks/soak.py [--sequences 100000] [--steps 5] [--seed 1] [--json]

Prints ``sequences`` and ``violations`` (and the first violating sequences, replayable by seed).
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
        FastSignUsers,
        FuzzCell,
    )

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sequences", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=5, help="rules per sequence")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    cfg = load_config(default_config_dir())
    users = FastSignUsers(cfg.users, type("Clock", (), {"now": lambda self: 0.0})())
    for u, p in PASSWORDS.items():
        users.authenticate(u, p)
    t0 = time.perf_counter()
    violations = 0
    examples = []
    for n in range(args.sequences):
        rnd = random.Random(args.seed * 1_000_003 + n)
        f = FuzzCell(cfg, users)
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
           "seed": args.seed, "wall_s": round(time.perf_counter() - t0, 1), "examples": examples}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"sequences {out['sequences']}")
        print(f"violations {out['violations']}")
        print(f"wall_s {out['wall_s']}")
        for e in examples:
            print(f"  sequence {e['sequence']}: {e['violations']}")
    return 0 if violations == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
