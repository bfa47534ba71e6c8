"""System tests that break the graph: communication loss, a dying node, INACTIVE devices and
an invalid parameter file. Each ends in the safe state, with an alarm where it applies, no
auto-resume, and recovery only on an explicit operator action."""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time

import pytest
import yaml

from aseptic_cell.alarms import database_severity
from aseptic_cell.client import CellClient
from aseptic_cell.launcher import CellProcesses, wait_for_nodes
from aseptic_cell.nodes.graph import default_graph, graph_by_name

from .graphutil import CONFIG, running_graph, wait_until

pytestmark = pytest.mark.timeout(300)


def _change_state(client: CellClient, node: str, transition_id: int) -> bool:
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    c = client._client(ChangeState, f"/{node}/change_state")
    r = client._wait_future(c.call_async(ChangeState.Request(transition=Transition(id=transition_id))), 60.0)
    return bool(r.success)


def test_simulator_loss_latches_devices_raises_alarm_and_needs_operator_recovery(tmp_path):
    """Also (issue 12 item 8, was test_sim_world_restart.py on a graph of its own): the restarted
    simulator resumes the sim clock where the graph left it (sim_world reads the device nodes'
    /diagnostics stamps): /clock and the devices' signal times never go backwards. Before: the new
    world published /clock from 0 and the supervisor's signed restarts were refused (RB-02)."""
    from rosgraph_msgs.msg import Clock
    from std_msgs.msg import String

    with running_graph(tmp_path, speed=500.0) as (procs, client, specs):
        lock = threading.Lock()
        clock: list[float] = []
        sig_t: list[float] = []

        def on_clock(m):
            with lock:
                clock.append(m.clock.sec + m.clock.nanosec * 1e-9)

        def on_signals(m):
            with lock:
                sig_t.append(float(json.loads(m.data)["t"]))

        client.node.create_subscription(Clock, "/clock", on_clock, 50)
        client.node.create_subscription(String, "/cell/isolator/signals", on_signals, 50)
        assert client.door("isolator", "hatch_a", "open", user="op1").accepted
        client.wait_state("isolator", lambda s: s.hatch_door_a_open, 30.0, "door A open")
        assert client.door("isolator", "hatch_a", "close", user="op1").accepted
        client.wait_state("isolator", lambda s: s.hatch_seal_a_inflated, 30.0, "door A sealed")
        wait_until(lambda: len(clock) > 10 and len(sig_t) > 3 and clock[-1] > 100.0, 30.0, "sim time running")

        procs.kill("sim_world", signal.SIGKILL)
        client.wait_state("isolator", lambda s: not s.comm_ok, 15.0, "isolator comm lost")
        assert "(latched)" in client.state("isolator").lifecycle_state
        with lock:
            n_clock, n_sig = len(clock), len(sig_t)
            last_clock, last_sig = max(clock), max(sig_t)
        wait_until(lambda: any(a.alarm_id == "ISO1_COMM_LOSS" for a in client.alarms), 10.0, "comm loss alarm")
        r = client.door("isolator", "hatch_a", "open", user="op1")
        assert not r.accepted and r.code in ("LATCHED", "COMM_STALE")
        assert not client.recover("isolator", user="sup1", reason="try while lost").accepted

        # the simulator comes back: data flows again, but nothing resumes by itself
        procs.start_one(graph_by_name(specs)["sim_world"])
        client.wait_state("isolator", lambda s: s.comm_ok, 60.0, "isolator comm restored")
        # a real plant does not jump back in time: the new world's clock and signals go on from
        # the last ones the graph saw
        wait_until(lambda: len(clock) > n_clock + 10 and len(sig_t) > n_sig + 3, 30.0, "sim time running again")
        with lock:
            after_clock, after_sig = clock[n_clock:], sig_t[n_sig:]
        assert min(after_clock) >= last_clock - 1e-6, (last_clock, after_clock[:5])
        assert min(after_sig) >= last_sig - 1e-6, (last_sig, after_sig[:5])
        assert all(b >= a for a, b in zip(after_clock, after_clock[1:], strict=False))
        # the node's alarm is the database's (id and priority) and returns to normal (issue 13 item 11)
        wait_until(lambda: any(a.alarm_id == "ISO1_COMM_LOSS" and a.state == "RTN" for a in client.alarms), 10.0,
                   "comm loss alarm returned to normal")
        active = next(a for a in client.alarms if a.alarm_id == "ISO1_COMM_LOSS" and a.state == "ACTIVE")
        assert active.priority == database_severity("ISO1_COMM_LOSS")
        time.sleep(0.5)
        r = client.door("isolator", "hatch_a", "open", user="op1")
        assert not r.accepted and r.code == "LATCHED" and "operator action" in r.reason
        # recovery needs a user and a reason, then works
        assert not client.recover("isolator", user="", reason="").accepted
        assert client.recover("isolator", user="sup1", reason="simulator restarted, checked").accepted
        assert client.door("isolator", "hatch_a", "open", user="op1").accepted
        kinds = [e["event"] for e in client.events if e.get("device") == "ISO1"]
        assert "comm_lost" in kinds and "latched" in kinds and "recovered" in kinds
    assert all(rc == 0 for name, rc in procs.exit_codes.items() if name != "sim_world"), procs.exit_codes


def test_a_dead_node_drives_its_dependants_safe_and_stays_faulted_until_recovered(tmp_path):
    with running_graph(tmp_path, speed=500.0) as (procs, client, specs):
        assert client.command("arm", "enable_drives", user="op1").accepted
        procs.kill("isolator", signal.SIGKILL)
        wait_until(lambda: any(a.alarm_id == "CELL_NODE_DIED" and a.source == "isolator" for a in client.alarms),
                   15.0, "node lost alarm")
        # dependants of the isolator (arm, vhp, autoclave) are driven to their safe state
        client.wait_state("arm", lambda s: s.protective_stop and "(latched)" in s.lifecycle_state, 15.0, "arm safe")
        client.wait_state("autoclave", lambda s: "(latched)" in s.lifecycle_state, 15.0, "autoclave latched")
        r = client.command("arm", "move_to_pose", {"pose": "decon"}, user="op1")
        assert not r.accepted
        # the process is restarted explicitly; the manager does not bring it back by itself
        procs.start_one(graph_by_name(specs)["isolator"])
        time.sleep(6.0)
        assert client.state("isolator") is None or "active" not in client.state("isolator").lifecycle_state \
            or time.monotonic() - client.state_wall["isolator"] > 2.0
        from cell_interfaces.srv import Recover

        c = client._client(Recover, "/lifecycle_manager/recover")
        # the operator recovers it once the restarted process answers the manager (refused as not
        # reachable until then: its start-up can outlast the 6 s above on a loaded machine)
        deadline = time.monotonic() + 60.0
        while True:
            rr = client._wait_future(c.call_async(Recover.Request(device_id="isolator", user="sup1",
                                                                  reason="node restarted")), 30.0)
            if rr.accepted or time.monotonic() > deadline:
                break
            assert "not reachable" in rr.reason, rr.reason
            time.sleep(1.0)
        assert rr.accepted, rr.reason
        client.wait_state("isolator", lambda s: s.comm_ok and s.lifecycle_state == "active", 60.0, "isolator back")
        # the dependants stay latched until an operator recovers them
        assert "(latched)" in client.state("arm").lifecycle_state
        assert client.recover("arm", user="sup1", reason="isolator recovered").accepted
        assert client.command("arm", "reset_protective_stop", user="sup1").accepted


def test_inactive_device_is_connected_but_refuses_motion(tmp_path):
    specs = default_graph(str(CONFIG), speed=500.0, nodes=["sim_world", "autoclave"])
    with CellProcesses(specs, log_dir=tmp_path / "logs") as procs:
        wait_for_nodes([s.name for s in specs], timeout_s=60.0)
        client = CellClient()
        try:
            assert _change_state(client, "autoclave", 1)  # configure
            client.wait_state("autoclave", lambda s: s.comm_ok and s.lifecycle_state == "inactive", 30.0, "inactive")
            r = client.door("autoclave", "autoclave_load", "open", user="op1")
            assert not r.accepted and r.code == "NOT_ACTIVE" and "nothing moves" in r.reason
            time.sleep(0.3)
            assert not client.state("autoclave").door_load_open
            assert _change_state(client, "autoclave", 3)  # activate
            assert client.door("autoclave", "autoclave_load", "open", user="op1").accepted
        finally:
            client.close()
        codes = procs.stop()
    assert codes == {"sim_world": 0, "autoclave": 0}


def test_invalid_parameter_file_fails_configure_naming_the_field(tmp_path):
    bad = tmp_path / "config"
    shutil.copytree(CONFIG, bad)
    cell = yaml.safe_load((bad / "cell.yaml").read_text())
    cell["isolator"]["pressure"]["setpoint_pa"] = "fifty"
    (bad / "cell.yaml").write_text(yaml.safe_dump(cell, sort_keys=False))
    specs = default_graph(str(bad), speed=500.0, nodes=["isolator"])
    with CellProcesses(specs, log_dir=tmp_path / "logs") as procs:
        wait_for_nodes([s.name for s in specs], timeout_s=60.0)
        client = CellClient()
        try:
            assert not _change_state(client, "isolator", 1)
        finally:
            client.close()
        procs.stop()
    log = (tmp_path / "logs" / "isolator.log").read_text()
    assert "configure failed" in log and "cell.yaml" in log and "isolator.pressure.setpoint_pa" in log
