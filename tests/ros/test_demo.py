"""`cellctl demo --speed max --json`: the whole graph runs one batch end to end and exits 0."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from aseptic_cell.records import verify_file

from .graphutil import CONFIG

pytestmark = pytest.mark.timeout(400)


def test_demo_runs_a_batch_end_to_end(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "aseptic_cell.cli", "demo", "--speed", "max", "--json",
                           "--config", str(CONFIG), "--record-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=380)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["result"] == "PASS"
    assert summary["vhp"]["aeration_end_ppm"] <= 1.0
    # F0 >= the program's target (15 min, config/autoclave_programs.yaml)
    assert summary["autoclave"]["f0_min"] >= 15.0
    assert summary["sim_time_s"] > 3600 and summary["wall_time_s"] > 0
    assert isinstance(summary["refusals"], list)
    assert verify_file(summary["record"]).ok
    assert all(rc == 0 for rc in summary["exit_codes"].values())
