"""`cellctl demo --record-dir DIR --json` with the record on a small filesystem that fills up during
the batch (issue 12 item 4; the issue's report: result PASS, record_verified true, 40 entries and
no cycle results). Now: the batch is held with CELL_RECORD_FAULT, the demo reports FAIL with the
record incomplete and exits 1, and the record file verifies with every committed entry."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from aseptic_cell.records import verify_file

from .graphutil import CONFIG

pytestmark = [pytest.mark.timeout(400), pytest.mark.slow]


def _phases_started(record, n: int) -> bool:
    import sqlite3

    if not record.exists():
        return False
    try:
        con = sqlite3.connect(f"{record.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return con.execute("SELECT COUNT(*) FROM entries WHERE action = 'phase.start'").fetchone()[0] >= n
        finally:
            con.close()
    except sqlite3.Error:
        return False


def test_demo_with_the_record_filesystem_filling_up_holds_the_batch_and_exits_nonzero(tmp_path):
    mnt = tmp_path / "records"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    proc = None
    try:
        proc = subprocess.Popen([sys.executable, "-m", "aseptic_cell.cli", "demo", "--speed", "max", "--json",
                                 "--config", str(CONFIG), "--record-dir", str(mnt)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        record = mnt / "cell-record.db"
        deadline = time.monotonic() + 240
        while not _phases_started(record, 2):  # the batch runs its second phase
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the batch never started"
            time.sleep(0.2)
        with open(mnt / "filler", "wb", buffering=0) as fh:  # unbuffered: close has nothing to flush
            try:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError:
                pass
        out, err = proc.communicate(timeout=360)
        assert proc.returncode == 1, out[-2000:] + err[-3000:]
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["result"] == "FAIL" and "batch record incomplete" in summary["error"], summary.get("error")
        assert summary["batch_state"] == "Held" and summary["record_complete"] is False
        status = summary["record_status"]
        assert not status["complete"] and "full" in status["fault"]
        assert any(a.get("alarm") == "CELL_RECORD_FAULT" or "CELL_RECORD_FAULT" in json.dumps(a)
                   for a in summary["alarms"] or []), summary["alarms"]
        report = verify_file(summary["record"])  # truthful: the committed entries, intact
        assert report.ok and report.count > 10 and summary["record_verified"] is True
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        subprocess.run(["umount", "-l", str(mnt)], check=False)
