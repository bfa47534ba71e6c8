"""Batch record write throughput (entries/s) on each backend, fsync on (issue 15 items 5 and 9).

    .venv/bin/python benchmarks/records.py [--json] [--entries N] [--writers W]

Each append is one committed transaction: SQLite in WAL mode with ``synchronous=FULL`` and a
checkpoint per commit (the store's fail-safe settings), PostgreSQL (a throwaway cluster in a temp
dir, ``fsync=on``, ``synchronous_commit=on``; unix socket) through psycopg 3. Both with and
without the signed checkpoint per commit (Ed25519). ``writers``: W threads each with its own
connection on W independent chains (PostgreSQL: one database, as many cells) or W threads on one
SQLite file (one chain; writers serialise on the file lock). The figures depend on the disk's
fsync latency and the machine's load; the payload is a typical ~200-byte event.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aseptic_cell.records import BatchRecord  # noqa: E402
from aseptic_cell.records.seal import Sealer  # noqa: E402


class WallClock:
    def now(self) -> float:
        return time.time()


PAYLOAD = {"phase": "FILL", "step": 0, "value": 41.25, "unit": "mL", "lot": "L-2026-0042", "ok": True}


def _run(open_rec: Any, n: int, writers: int) -> float:
    recs = [open_rec(w) for w in range(writers)]
    per = max(1, n // writers)

    def work(rec: Any, w: int) -> None:
        for i in range(per):
            rec.append("note", batch_id=f"B-{w}", actor="system", action="bench", payload={**PAYLOAD, "step": i})

    threads = [threading.Thread(target=work, args=(r, w)) for w, r in enumerate(recs)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.perf_counter() - t0
    for r in recs:
        assert r.verify().ok
        r.close()
    return per * writers / dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--entries", type=int, default=400)
    ap.add_argument("--writers", type=int, default=4)
    args = ap.parse_args()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    sealer = Sealer(Ed25519PrivateKey.generate())
    results: dict[str, Any] = {"entries": args.entries, "writers": args.writers, "fsync": True, "backends": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for sealed in (False, True):
            key = "sealed" if sealed else "unsealed"
            s = sealer if sealed else None
            path = Path(tmp) / f"{key}.db"
            one = _run(lambda w, p=path, s=s: BatchRecord(p, WallClock(), sealer=s), args.entries, 1)
            many = _run(lambda w, p=path, s=s: BatchRecord(p, WallClock(), sealer=s), args.entries, args.writers)
            results["backends"].setdefault("sqlite", {})[key] = {"one_writer_eps": round(one, 1),
                                                                "writers_eps": round(many, 1)}
    try:
        from aseptic_cell.records.pg import PgBatchRecord, install_schema
        from aseptic_cell.records.pgserver import ADMIN_ROLE, WRITER_ROLE, TempPostgres
    except ImportError as exc:  # psycopg not installed
        results["backends"]["postgresql"] = {"error": str(exc)}
    else:
        with TempPostgres() as pg:
            install_schema(pg.dsn(ADMIN_ROLE), WRITER_ROLE)
            for sealed in (False, True):
                key = "sealed" if sealed else "unsealed"
                s = sealer if sealed else None
                one = _run(lambda w, s=s, k=key: PgBatchRecord(pg.dsn(), f"{k}-one", WallClock(), sealer=s),
                           args.entries, 1)
                many = _run(lambda w, s=s, k=key: PgBatchRecord(pg.dsn(), f"{k}-cell{w}", WallClock(), sealer=s),
                            args.entries, args.writers)
                results["backends"].setdefault("postgresql", {})[key] = {"one_writer_eps": round(one, 1),
                                                                        "writers_eps": round(many, 1)}
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for name, r in results["backends"].items():
            for key, v in r.items():
                print(f"{name:10s} {key:8s} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
