"""The supervisor node in the real node graph (sim world, device nodes, lifecycle manager,
supervisor as separate processes over DDS): interlocks tried through the supervisor and
directly at the device node, bad input refused precisely, status published."""

from __future__ import annotations

import json
import os

import pytest

from aseptic_cell.client import CellClient
from aseptic_cell.config import default_config_dir
from aseptic_cell.launcher import CellProcesses, wait_for_nodes
from aseptic_cell.nodes.graph import default_graph
from aseptic_cell.nodes.supervisor_node import supervisor_spec

pytestmark = pytest.mark.timeout(420)


@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    cfg_dir = str(default_config_dir())
    rec = tmp_path_factory.mktemp("records")
    specs = default_graph(cfg_dir, speed=float("inf"), extra=[supervisor_spec(cfg_dir, str(rec))])
    # the isolator publishes its state at 2 Hz (as a slower controller link would): a command's
    # effect then reaches the supervisor well after the command's reply (see the last test)
    next(s for s in specs if s.name == "isolator").params["publish_period_s"] = 0.5
    with CellProcesses(specs, env=dict(os.environ), log_dir=tmp_path_factory.mktemp("logs")) as procs:
        wait_for_nodes(specs, timeout_s=240.0, check=lambda: procs.poll() and pytest.fail(f"died: {procs.poll()}"))
        client = CellClient()
        try:
            for n in ("isolator", "vhp", "autoclave", "arm"):
                client.wait_state(n, lambda s: s.comm_ok, 60.0)
            yield client, rec
        finally:
            client.close()
            procs.stop()


def _operate(client, node, command, args, user="op1"):
    from cell_interfaces.srv import DeviceCommand

    return client.call(DeviceCommand, "/cell/operate", DeviceCommand.Request(
        device_id=node, command=command, args_json=json.dumps(args), user=user, reason="test"))


def test_interlocks_hold_through_the_supervisor_and_at_the_device(cell):
    client, _ = cell
    r = _operate(client, "isolator", "open_alpha", {"rtp": "RTP1"})
    assert not r.accepted and r.code == "INTERLOCK" and "IL-02" in r.reason
    d = client.command("isolator", "open_alpha", {"rtp": "RTP1"})
    assert not d.accepted and d.code == "RTP_NO_BETA"
    r = _operate(client, "vhp", "start_cycle", {"cycle_id": "VHP-ISO-STD", "operator": "op1"})
    assert not r.accepted and "IL-07" in r.reason
    r = _operate(client, "arm", "move_to_pose", {"pose": "park"}, user="op1")
    assert not r.accepted and r.code == "PERMISSION"
    assert client.state("isolator").rtps[0].alpha_open is False


def test_bad_batch_input_is_refused_with_a_reason(cell):
    from cell_interfaces.action import RunBatch
    from cell_interfaces.srv import BatchCommand

    client, _ = cell
    _acc, res = client.run_action(RunBatch, "/cell/batch/run",
                                  RunBatch.Goal(recipe_id="NO-SUCH", batch_id="B1", user="op1"), timeout_s=30.0)
    assert res is not None and not res.success and "unknown batch recipe 'NO-SUCH'" in res.reason
    r = client.call(BatchCommand, "/cell/batch/command", BatchCommand.Request(command="restart", user="sup1"))
    assert not r.accepted and r.code == "STATE"
    r = client.call(BatchCommand, "/cell/batch/command", BatchCommand.Request(command="hold", user="nobody"))
    assert not r.accepted and r.code == "UNAUTHENTICATED"  # an unknown user is refused at the entry


def test_status_and_interlocks_are_published(cell):
    from cell_interfaces.msg import BatchStatus, InterlockStatusArray

    client, rec = cell
    got: dict = {}
    client.node.create_subscription(BatchStatus, "/cell/batch/status", lambda m: got.__setitem__("s", m), 10)
    client.node.create_subscription(InterlockStatusArray, "/cell/interlocks", lambda m: got.__setitem__("i", m), 10)
    client.wait_for(lambda: "s" in got and "i" in got, 30.0, "supervisor topics")
    assert got["s"].record_path.startswith(str(rec))
    ids = {r.rule_id for r in got["i"].rules}
    assert {"IL-01", "IL-12", "RB-05"} <= ids


def test_operator_command_right_after_another_is_judged_on_the_new_state(cell):
    """Hatch door B asked for straight after door A was accepted: the supervisor's state of the
    isolator must include door A opening before it judges B, so IL-01 refuses B here (an
    INTERLOCK refusal naming the rule), not only the device's own hard interlock."""
    client, _ = cell
    a = _operate(client, "isolator", "open_door", {"door": "A"})
    assert a.accepted, (a.code, a.reason)
    try:
        b = _operate(client, "isolator", "open_door", {"door": "B"})
        assert not b.accepted and b.code == "INTERLOCK" and "IL-01" in b.reason, (b.code, b.reason)
    finally:
        client.wait_for(lambda: _operate(client, "isolator", "close_door", {"door": "A"}).accepted, 30.0,
                        "door A closed again")
    assert client.state("isolator").hatch_door_b_open is False


def test_signed_recovery_of_one_latched_device_through_the_supervisor(cell):
    from cell_interfaces.srv import RecoverDevice

    client, _ = cell

    def recover(**kw):
        req = RecoverDevice.Request(device_id="isolator", user="sup1", password="sup1-demo-2026",
                                    meaning="responsibility", reason="door seals inspected")
        for k, v in kw.items():
            setattr(req, k, v)
        return client.call(RecoverDevice, "/cell/recover", req, 30.0)

    r = recover()
    assert not r.accepted and r.code == "STATE" and "not latched" in r.reason
    assert client.command("isolator", "safe_state", {"reason": "test"}).accepted
    client.wait_state("isolator", lambda s: "latched" in s.lifecycle_state, 20.0, "isolator latched")
    for kw, code in (({"user": "op1"}, "PERMISSION"), ({"password": "wrong-password"}, "SIGNATURE"),
                     ({"reason": ""}, "INVALID")):
        r = recover(**kw)
        assert not r.accepted and r.code == code, (kw, r.code, r.reason)
    assert "latched" in client.state("isolator").lifecycle_state  # nothing released by a refusal
    r = recover()
    assert r.accepted and r.code == "OK", (r.code, r.reason)
    client.wait_state("isolator", lambda s: "latched" not in s.lifecycle_state, 20.0, "isolator recovered")
