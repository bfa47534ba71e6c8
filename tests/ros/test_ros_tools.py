"""`cellctl ros list` / `ros echo` against a real helper publisher process."""

from __future__ import annotations

import argparse
import json
import uuid
from pathlib import Path

import pytest
from cell_interfaces.msg import IsolatorState, RtpState

from aseptic_cell.launcher import CellProcesses, wait_for_nodes
from aseptic_cell.nodes.graph import NodeSpec
from aseptic_cell.nodes.rosutil import import_type, msg_to_dict
from aseptic_cell.ros_tools import add_ros_parser, cmd_ros_echo, cmd_ros_list, to_yaml_lines

HELPERS = Path(__file__).resolve().parent / "helpers"


@pytest.fixture(scope="module")
def talker(tmp_path_factory):
    tag = uuid.uuid4().hex[:8]
    spec = NodeSpec(f"talker_{tag}", str(HELPERS / "talker.py"), {"topic": f"/t_{tag}/state"})
    lc = NodeSpec(f"lc_{tag}", str(HELPERS / "lc_helper.py"))
    cp = CellProcesses([spec, lc], log_dir=tmp_path_factory.mktemp("talker"))
    cp.start()
    try:
        wait_for_nodes([spec.name, lc.name], 20.0)
        yield spec.name, f"/t_{tag}/state", lc.name
    finally:
        cp.stop(timeout_s=5.0)


def _parse(argv):
    p = argparse.ArgumentParser()
    add_ros_parser(p.add_subparsers(dest="command"))
    return p.parse_args(argv)


@pytest.mark.timeout(40)
def test_ros_list(talker, capsys):
    name, topic, lc = talker
    args = _parse(["ros", "list", "--json", "--wait", "3.0"])
    assert args.func is cmd_ros_list
    assert args.func(args) == 0
    snap = json.loads(capsys.readouterr().out)
    assert f"/{name}" in snap["nodes"] and f"/{lc}" in snap["nodes"]
    assert snap["topics"][topic] == ["cell_interfaces/msg/DeviceState"]
    assert snap["services"][f"/cell/{lc}/command"] == ["cell_interfaces/srv/DeviceCommand"]
    assert f"/{lc}/get_state" not in snap["services"]  # plumbing hidden unless --all
    assert cmd_ros_list(_parse(["ros", "list", "--wait", "3.0"])) == 0  # a new context discovers again
    text = capsys.readouterr().out
    assert f"  {topic} [cell_interfaces/msg/DeviceState]" in text and "actions (" in text


@pytest.mark.timeout(40)
def test_ros_echo_json_and_text(talker, capsys):
    _, topic, _ = talker
    args = _parse(["ros", "echo", topic, "3", "--json", "--timeout", "10"])
    assert cmd_ros_echo(args) == 0
    lines = capsys.readouterr().out.splitlines()
    msgs = [json.loads(line) for line in lines]
    assert len(msgs) == 3
    assert all(m["device_id"] == "talker" and m["keys"] == ["n"] for m in msgs)
    counts = [m["values"][0] for m in msgs]
    assert counts == sorted(counts) and len(set(counts)) == 3
    assert cmd_ros_echo(_parse(["ros", "echo", topic.lstrip("/"), "1", "--timeout", "10"])) == 0
    out = capsys.readouterr().out
    assert "device_id: talker" in out and "stamp:\n  sec: 0" in out and out.rstrip().endswith("---")


@pytest.mark.timeout(20)
def test_ros_echo_unknown_topic_fails_clearly(capsys):
    args = _parse(["ros", "echo", f"/no_such_{uuid.uuid4().hex[:6]}", "1", "--timeout", "0.5"])
    assert cmd_ros_echo(args) == 1
    assert "does not exist" in capsys.readouterr().err


def test_msg_to_dict_and_yaml_of_nested_messages():
    msg = IsolatorState(device_id="iso", dp_pa=-45.5, rtps=[RtpState(), RtpState()], faults=["F1"])
    d = msg_to_dict(msg)
    assert d["device_id"] == "iso" and d["dp_pa"] == -45.5 and d["faults"] == ["F1"]
    assert len(d["rtps"]) == 2 and isinstance(d["rtps"][0], dict)
    assert d["stamp"] == {"sec": 0, "nanosec": 0}
    json.dumps(d)  # plain Python only
    text = "\n".join(to_yaml_lines(d))
    assert "rtps:\n- " in text and "dp_pa: -45.5" in text


def test_import_type():
    assert import_type("cell_interfaces/msg/Alarm").__name__ == "Alarm"
    assert import_type("cell_interfaces/Alarm").__name__ == "Alarm"
    assert import_type("cell_interfaces/srv/Recover").__name__ == "Recover"
    assert import_type("cell_interfaces/action/RunCycle").__name__ == "RunCycle"
    with pytest.raises(ValueError):
        import_type("nonsense")
    with pytest.raises(AttributeError):
        import_type("cell_interfaces/msg/Nope")
