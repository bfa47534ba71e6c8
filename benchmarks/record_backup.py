"""Online backup, restore and the change-control batch-start check, timed (issue 15 items 7, 8).

    .venv/bin/python benchmarks/record_backup.py [--json] [--entries 20000] [--dir DIR]

A sealed record of ``--entries`` entries is written with the real store (under /dev/shm when it
exists), then backed up with :func:`aseptic_cell.records.backup.backup_record` while a second
connection keeps appending (the cell), restored with :func:`restore_record`; each step timed by
wall and process CPU time (the copy's verification included: a full chain walk with the
checkpoint signatures). Also :func:`aseptic_cell.config.change_control.batch_start_check` on the
shipped configuration (re-reads and hashes every file of config/).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aseptic_cell.config import default_config_dir, load_config  # noqa: E402
from aseptic_cell.config.change_control import batch_start_check  # noqa: E402
from aseptic_cell.records import BatchRecord  # noqa: E402
from aseptic_cell.records.backup import backup_record, restore_record  # noqa: E402
from aseptic_cell.records.seal import init_seal_key, load_sealer  # noqa: E402


class _Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        self.t += 0.5
        return self.t


def _timed(fn: Any) -> tuple[Any, float, float]:
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--entries", type=int, default=20000)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    base = args.dir or ("/dev/shm" if Path("/dev/shm").is_dir() else None)
    with tempfile.TemporaryDirectory(prefix="bench-backup-", dir=base) as tmp:
        d = Path(tmp)
        keys = init_seal_key(d / "keys")
        src = d / "cell.db"
        rec = BatchRecord(src, _Clock(1.8e9), sealer=load_sealer(keys))
        for i in range(args.entries):
            rec.append("note", batch_id="B1", actor="op1", reason=f"routine entry {i}",
                       payload={"i": i, "value": i * 0.25, "text": "x" * 120})
        writer = BatchRecord(src, _Clock(1.9e9), sealer=load_sealer(keys))
        stop = threading.Event()
        appended: list[int] = []

        def cell() -> None:
            while not stop.is_set():
                appended.append(writer.append("note", batch_id="B1", actor="system", reason="tick").seq)

        t = threading.Thread(target=cell, daemon=True)
        t.start()
        while not appended:
            time.sleep(0.01)
        before = len(appended)
        report, b_wall, b_cpu = _timed(lambda: backup_record(src, d / "backup.db", key=keys))
        during = len(appended) - before
        stop.set()
        t.join()
        restored, r_wall, r_cpu = _timed(lambda: restore_record(d / "backup.db", d / "restored.db", key=keys))
        cfg = load_config(default_config_dir())
        verdict, c_wall, c_cpu = _timed(lambda: batch_start_check(cfg, cfg.recipes["CART-TRANSDUCTION"]))
        out = {
            "entries_in_copy": report.verdict.count,
            "file_mb": round((d / "backup.db").stat().st_size / 1e6, 2),
            "backup_wall_s": round(b_wall, 3), "backup_cpu_s": round(b_cpu, 3),
            "appends_by_the_cell_during_backup": during, "writer_failures": writer.failures,
            "restore_wall_s": round(r_wall, 3), "restore_cpu_s": round(r_cpu, 3),
            "restored_head_equal": restored.verdict.head_hash == report.verdict.head_hash,
            "batch_start_check_wall_s": round(c_wall, 3), "batch_start_check_cpu_s": round(c_cpu, 3),
            "batch_start_check_ok": verdict.ok, "items_checked": len(verdict.items),
            "cores": os.cpu_count(), "load_avg_1min": round(os.getloadavg()[0], 1),
        }
        rec.close()
        writer.close()
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:36} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
