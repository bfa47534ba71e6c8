"""`cellctl demo --speed max --json --scenario FILE`: scenarios over the whole graph (the plain batch end
to end: tests/ros/test_mujoco_demo.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from aseptic_cell.records import verify_file

from .graphutil import CONFIG

pytestmark = pytest.mark.timeout(400)


# `cellctl demo --speed max --json` running one whole batch end to end (PASS, VHP aeration and
# autoclave F0 within target, record verified, exit 0) is asserted on the batch of
# test_mujoco_demo.py: one graph and one whole batch instead of two (suite time).


# A scenario against the real graph: a command after the batch reached a final state (IL-06, the only
# close_record over ROS). Every scenario (IL-08's trip during the VHP dwell among them) runs in-process in
# tests/unit/test_supervisor_scenarios.py, where the scenario runner's triggers and checks are the same
# code; over the graph IL-08 cost ~74 s of suite time for no path of its own (the supervisor's trip and
# the device's refusals over ROS are asserted in test_supervisor_graph.py, test_graph.py and the browser
# trip test). IL-01's two refusals over the graph (the supervisor's INTERLOCK and the hatch's own
# HATCH_OTHER_DOOR_OPEN) are asserted on the graphs of test_supervisor_graph.py and test_graph.py.
@pytest.mark.parametrize("name", ["IL-06-close-record-no-end-glove-test"])
def test_demo_scenario_on_the_graph(tmp_path, name):
    proc = subprocess.run([sys.executable, "-m", "aseptic_cell.cli", "demo", "--speed", "max", "--json",
                           "--config", str(CONFIG), "--record-dir", str(tmp_path),
                           "--scenario", str(CONFIG / "scenarios" / f"{name}.yaml")],
                          capture_output=True, text=True, timeout=380)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0 and summary["result"] == "PASS", (summary.get("failures"), summary.get("error"),
                                                                  proc.stderr[-3000:])
    assert summary["failures"] == [] and summary["scenario"] == name
    fired = summary["events"]
    assert fired and all(e["code"] != "TIMEOUT" for e in fired)
    # the runner slowed the world down around its events and ran the rest at full speed
    speeds = [s["speed"] for s in summary["sim_speeds"]]
    assert any(isinstance(v, float) and v <= 50.0 for v in speeds) and speeds[-1] == "max"
    assert verify_file(summary["record"]).ok
    assert all(rc == 0 for rc in summary["exit_codes"].values())
    assert summary["observed_batch_state"] == "Aborted"
    assert any(r["command"] == "close_record" and "IL-06" in r["reason"] for r in summary["refusals"])
