"""`cellctl demo --arm mujoco --bag FILE.mcap`: a full batch with the arm's motion executed by
MuJoCo physics (its own process, joint_trajectory_controller topics), no contact, the record
verified; the MCAP of the batch decoded by an independent reader (mcap_ros2), counts per topic.

This is also the suite's `cellctl demo --speed max --json` end-to-end batch (it was a second graph
and a second whole batch in test_demo.py, the same batch with the arm modelled by sim_world): the
whole graph runs one batch, VHP aeration and autoclave F0 within their targets, exit 0. The
default-arm batch over the graph runs to Complete in test_supervisor_graph; the demo's scenario
runs in test_demo.py use the default arm."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory

from aseptic_cell.records import verify_file

from .graphutil import CONFIG

pytestmark = [pytest.mark.timeout(400), pytest.mark.slow]


def test_batch_on_the_mujoco_arm_recorded_to_mcap(tmp_path):
    bag = tmp_path / "batch.mcap"
    proc = subprocess.run([sys.executable, "-m", "aseptic_cell.cli", "demo", "--speed", "max", "--json",
                           "--config", str(CONFIG), "--record-dir", str(tmp_path), "--arm", "mujoco",
                           "--bag", str(bag)], capture_output=True, text=True, timeout=380)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["result"] == "PASS" and summary["batch_state"] == "Complete"
    assert verify_file(summary["record"]).ok
    # the whole batch's process results (before: test_demo.py's own demo batch)
    assert summary["vhp"]["aeration_end_ppm"] <= 1.0
    # F0 >= the program's target (15 min, config/autoclave_programs.yaml)
    assert summary["autoclave"]["f0_min"] >= 15.0
    assert summary["sim_time_s"] > 3600 and summary["wall_time_s"] > 0
    assert isinstance(summary["refusals"], list)
    assert all(rc == 0 for rc in summary["exit_codes"].values()) and "mujoco_arm" in summary["exit_codes"]

    physics = summary["arm_physics"]
    assert physics["contact_steps"] == 0 and physics["contact_events"] == []
    assert physics["trajectories"] >= 4 and physics["rejected"] == 0  # the robot task's moves
    assert 0.0 < physics["max_tracking_error_rad"] < 0.01  # tracking error is measured, and small
    assert physics["steps"] > 10_000 and physics["real_time_factor"] > 1.0

    counts: dict[str, int] = {}
    arm_joint_states = []
    trajectories = []
    arm_states = []
    with open(bag, "rb") as f:
        for _schema, channel, _msg, decoded in make_reader(f, decoder_factories=[DecoderFactory()]) \
                .iter_decoded_messages():
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
            if channel.topic == "/arm_hw/joint_states":
                arm_joint_states.append(decoded)
            elif channel.topic == "/arm_hw/joint_trajectory_controller/joint_trajectory":
                trajectories.append(decoded)
            elif channel.topic == "/cell/arm/state":
                arm_states.append(decoded)
    print("messages per topic:", json.dumps(counts, sort_keys=True))
    assert counts == {t: n for t, n in summary["bag"]["topics"].items() if n}
    for topic in ("/cell/batch/status", "/cell/arm/state", "/cell/isolator/state", "/joint_states", "/clock"):
        assert counts.get(topic, 0) > 0, topic
    assert list(arm_joint_states[-1].name)[0] == "shoulder_pan_joint" and len(arm_joint_states[-1].position) == 6
    moves = [t for t in trajectories if len(t.points) > 1]
    assert len(moves) >= 4 and all(list(t.joint_names) == list(arm_joint_states[0].name) for t in moves)
    assert any(s.moving for s in arm_states) and arm_states[-1].device_id
