"""System tests of the node graph: real processes, real DDS, every node ACTIVE.

One graph per module (bring-up takes seconds); tests that break the graph live in
test_graph_faults.py with their own graph.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from builtin_interfaces.msg import Duration
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from aseptic_cell.config import load_config

from .graphutil import CONFIG, events, running_graph

pytestmark = pytest.mark.timeout(240)

CFG = load_config(CONFIG)


def _drives(client, on: bool) -> None:
    """Drives on/off and wait until the arm's state shows it. Every test leaves them off *as
    seen in the state*, so the next test's wait for "on" cannot pass on a stale message."""
    reply = client.command("arm", "enable_drives" if on else "disable_drives", user="op1")
    assert reply.accepted, reply
    client.wait_state("arm", lambda s: s.drives_enabled == on, 10.0, f"drives {'on' if on else 'off'}")


@pytest.fixture(scope="module", params=["sim", "opcua"])
def graph(request, tmp_path_factory):
    """The same device and interlock tests against both backends (one switch: ``hardware``):
    the sim backend via sim_world, and the OPC UA backend against the emulated hardware."""
    hardware = request.param
    speed = 2000.0 if hardware == "sim" else 200.0
    with running_graph(tmp_path_factory.mktemp(f"graph-{hardware}"), speed=speed,
                       hardware=hardware) as (procs, client, specs):
        client.hardware = hardware
        yield procs, client
    assert procs.exit_codes and all(rc == 0 for rc in procs.exit_codes.values()), procs.exit_codes


def test_every_device_publishes_typed_state_and_standard_messages(graph):
    procs, client = graph
    iso = client.state("isolator")
    assert iso.device_id == "ISO1" and iso.comm_ok
    assert [g.port_id for g in iso.glove_ports] == [g.id for g in CFG.layout.isolator.glove_ports]
    assert 30.0 <= iso.dp_pa <= 80.0
    assert client.state("vhp").phase == "IDLE"
    assert client.state("autoclave").door_load_gasket_ok
    arm = client.state("arm")
    assert arm.at_park and len(arm.joint_positions) == 6
    if client.hardware == "sim":
        # sim time advances on /clock: two isolator stamps a wall-second apart differ by ~speed
        t1 = iso.stamp.sec + iso.stamp.nanosec * 1e-9
        time.sleep(1.0)
        iso2 = client.state("isolator")
        assert iso2.stamp.sec + iso2.stamp.nanosec * 1e-9 - t1 > 100.0


def test_graph_lists_device_services_and_actions(graph):
    _procs, client = graph
    wanted_topics = ("/joint_states", "/diagnostics", "/cell/isolator/state")
    # graph discovery is eventually consistent: on a loaded machine give it a few seconds
    deadline = time.monotonic() + 15.0
    while time.monotonic() < deadline:
        topics = dict(client.node.get_topic_names_and_types())
        if all(t in topics for t in wanted_topics):
            break
        time.sleep(0.2)
    names = {n for n, _ in client.node.get_service_names_and_types()}
    for srv in ("/cell/isolator/door", "/cell/isolator/port", "/cell/isolator/glove", "/cell/autoclave/door",
                "/cell/arm/command", "/cell/isolator/recover", "/isolator/change_state",
                "/cell/vhp/run_cycle/_action/send_goal", "/cell/arm/execute_trajectory/_action/send_goal"):
        assert srv in names, srv
    assert topics["/joint_states"] == ["sensor_msgs/msg/JointState"]
    assert topics["/diagnostics"] == ["diagnostic_msgs/msg/DiagnosticArray"]
    assert topics["/cell/isolator/state"] == ["cell_interfaces/msg/IsolatorState"]


def test_signals_topic_carries_interlock_signals(graph):
    from std_msgs.msg import String

    _procs, client = graph
    got: list[dict] = []
    sub = client.node.create_subscription(String, "/cell/isolator/signals",
                                          lambda m: got.append(json.loads(m.data)), 10)
    try:
        client.wait_for(lambda: got, 10.0, "isolator signals")
        sig = got[-1]["signals"]
        assert sig["isolator.hatch.door_A.closed"] is True
        assert sig["isolator.rtp.RTP1.alpha_closed"] is True
        assert sig["isolator.glove.GP1.last_test"] in ("NONE", "PASS", "FAIL")
    finally:
        client.node.destroy_subscription(sub)


def test_hatch_interlock_refuses_second_door_with_reason_and_event(graph):
    _procs, client = graph
    n0 = len(client.events)
    assert client.door("isolator", "hatch_a", "open", user="op1", reason="load").accepted
    client.wait_state("isolator", lambda s: s.hatch_door_a_open, 30.0, "door A open")
    r = client.door("isolator", "hatch_b", "open", user="op1", reason="try both")
    assert not r.accepted
    assert r.code == "HATCH_OTHER_DOOR_OPEN"
    assert "door A" in r.reason
    time.sleep(0.3)
    assert not client.state("isolator").hatch_door_b_open  # nothing moved
    client.wait_for(lambda: any(e.get("code") == r.code for e in events(client, "refusal", n0)), 5.0, "refusal event")
    assert client.door("isolator", "hatch_a", "close", user="op1").accepted
    client.wait_state("isolator", lambda s: not s.hatch_door_a_open and s.hatch_seal_a_inflated, 30.0, "A closed")


@pytest.mark.parametrize("call, code", [
    (lambda c: c.command("isolator", "open_the_pod_bay_doors"), "INVALID"),
    (lambda c: c.command("isolator", "open_door", {"door": "C"}), "INVALID"),
    (lambda c: c.command("isolator", "open_door", {"door": "A", "force": True}), "INVALID"),
    (lambda c: c.command("vhp", "refill_reservoir", {"solution_g": float("nan")}), "INVALID"),
    (lambda c: c.door("isolator", "hatch_c", "open"), "INVALID"),
    (lambda c: c.port("RTP1", "teleport_beta"), "INVALID"),
    (lambda c: c.command("arm", "move_to_pose", {"pose": "moon"}), "INVALID"),
])
def test_bad_arguments_are_rejected_with_a_reason(graph, call, code):
    _procs, client = graph
    before = client.state("isolator")
    r = call(client)
    assert not r.accepted and r.code == code and r.reason
    after = client.state("isolator")
    assert (after.hatch_door_a_open, after.hatch_door_b_open) == (before.hatch_door_a_open, before.hatch_door_b_open)


def test_malformed_json_arguments_rejected(graph):
    from cell_interfaces.srv import DeviceCommand

    _procs, client = graph
    r = client.call(DeviceCommand, "/cell/isolator/command", DeviceCommand.Request(command="open_door",
                                                                                  args_json="{door: A"), 10.0)
    assert not r.accepted and r.code == "INVALID" and "args_json" in r.reason


def test_rtp_alpha_refused_without_docked_beta(graph):
    _procs, client = graph
    r = client.port("RTP1", "open_alpha", user="op1")
    assert not r.accepted and r.code == "RTP_NO_BETA" and "IL-02" in r.reason
    assert not client.state("isolator").rtps[0].alpha_open


def test_autoclave_clean_side_refused_before_a_pass(graph):
    _procs, client = graph
    r = client.door("autoclave", "autoclave_unload", "open", user="op1")
    assert not r.accepted and r.code == "AC_UNLOAD_NOT_RELEASED"


def test_one_command_path_gives_the_same_refusal_in_process_on_sim_and_on_opcua(graph):
    """The same refused commands through the in-process cell and through a device node of this
    graph's backend (sim or OPC UA) give the same code, reason and payload: one command path.
    (Runs before any test that completes an autoclave program: the clean side is not released.)"""
    from aseptic_cell.supervisor.port import InProcessCell

    _procs, client = graph
    cell = InProcessCell(CFG)
    q0 = np.array(client.state("arm").joint_positions)
    assert np.allclose(q0, cell.motion.current_q(cell.sensors("arm")), atol=1e-6)  # both at park
    q1 = q0.copy()
    q1[1] += 1.2  # the upper arm down into the work tray
    colliding = {"q": np.linspace(q0, q1, 101).tolist(), "dt": 0.05, "speed_class": "transit"}
    cases = [
        ("isolator", "open_alpha", {"rtp": "RTP1"}, "RTP_NO_BETA"),
        ("autoclave", "open_door", {"side": "unload"}, "AC_UNLOAD_NOT_RELEASED"),
        ("isolator", "open_door", {"door": "A", "force": True}, "INVALID"),
        ("arm", "move_to_pose", {"pose": "moon"}, "INVALID"),
        ("arm", "execute_trajectory", colliding, "MOTION_COLLISION"),
    ]
    _drives(client, True)
    try:
        accepted, code, *_ = cell.execute("arm", "enable_drives", {})
        assert accepted, code
        for node, command, args, expected in cases:
            graph_reply = client.command(node, command, args, user="op1")
            accepted, code, reason, payload = cell.execute(node, command, dict(args), user="op1")
            assert not graph_reply.accepted and not accepted, (node, command)
            assert graph_reply.code == code == expected, (node, command, graph_reply.code, code)
            assert graph_reply.reason == reason, (node, command)
            assert graph_reply.payload == payload, (node, command)
    finally:
        _drives(client, False)


def _trajectory(q: np.ndarray, dt: float) -> JointTrajectory:
    tr = JointTrajectory(joint_names=[j.name for j in CFG.arm.joints])
    for i, row in enumerate(q):
        t = i * dt
        tr.points.append(JointTrajectoryPoint(positions=[float(x) for x in row],
                                              time_from_start=Duration(sec=int(t), nanosec=int(round((t % 1) * 1e9)))))
    return tr


def test_arm_refuses_a_colliding_trajectory_before_any_motion(graph):
    from cell_interfaces.action import ExecuteTrajectory

    _procs, client = graph
    _drives(client, True)
    try:
        q0 = np.array(client.state("arm").joint_positions)
        q1 = q0.copy()
        q1[1] += 1.2  # swing the upper arm down into the work tray
        q = np.linspace(q0, q1, 101)
        ok, res = client.run_action(ExecuteTrajectory, "/cell/arm/execute_trajectory",
                                    ExecuteTrajectory.Goal(trajectory=_trajectory(q, 0.05), speed_class="transit",
                                                           user="op1", task="test"), 30.0)
        assert ok and not res.success
        assert res.code.startswith("MOTION_") and "collision" in res.reason
        assert 0 < res.first_failing_index <= 100
        time.sleep(0.3)
        assert np.allclose(client.state("arm").joint_positions, q0, atol=1e-3)  # nothing moved
        # a NaN sample is rejected, never a silent pass
        qn = q.copy()
        qn[5, 2] = math.nan
        ok, res = client.run_action(ExecuteTrajectory, "/cell/arm/execute_trajectory",
                                    ExecuteTrajectory.Goal(trajectory=_trajectory(qn, 0.05), user="op1"), 30.0)
        assert ok and not res.success and res.code == "INVALID"
    finally:
        _drives(client, False)


def test_arm_action_follows_a_checked_trajectory(graph):
    from cell_interfaces.action import ExecuteTrajectory

    from aseptic_cell.motion import Scene
    from aseptic_cell.motion.planning import plan_joint_move

    _procs, client = graph
    _drives(client, True)
    try:
        scene = Scene.from_config(CFG.arm, CFG.geometry)
        q0 = np.array(client.state("arm").joint_positions)
        goal = np.array(CFG.arm.poses["decon"])
        q, dt = plan_joint_move(scene, q0, goal, [j.max_velocity for j in CFG.arm.joints],
                                [j.max_acceleration for j in CFG.arm.joints], speed_limit_m_s=0.8, dt=0.05)
        q[0] = q0
        t0 = time.monotonic()
        ok, res = client.run_action(ExecuteTrajectory, "/cell/arm/execute_trajectory",
                                    ExecuteTrajectory.Goal(trajectory=_trajectory(q, dt), speed_class="transit",
                                                           user="op1", task="to decon"), 60.0)
        assert ok and res.success, res.reason
        action_round_trip_s = time.monotonic() - t0
        client.wait_state("arm", lambda s: np.allclose(s.joint_positions, goal, atol=0.02) and not s.moving, 5.0,
                          "arm state at the goal")
        assert action_round_trip_s < 30.0
        assert client.move_arm("park", CFG.arm.poses["park"], user="op1").accepted
    finally:
        _drives(client, False)


def test_autoclave_program_action_reports_f0(graph):
    _procs, client = graph
    res = client.run_cycle("autoclave", "P134-3", batch_id="T-AC", timeout_s=120.0)
    assert res.success, res.reason
    report = json.loads(res.json_report)
    # F0 >= 3 min x 10^((134 - 121.1)/10) = 58.5 min at the plateau alone [FEDF0]
    assert report["f0_min"] >= 58.0
    client.wait_state("autoclave", lambda s: s.sterile_load_available and s.last_result == "PASS", 5.0,
                      "autoclave state shows the released load")


def test_vhp_cycle_refused_at_precheck_when_robot_not_in_decon_pose(graph):
    _procs, client = graph
    res = client.run_cycle("vhp", "VHP-ISO-SHORT", batch_id="T-VHP", timeout_s=180.0)
    assert not res.success and res.result == "FAIL"
    assert "robot" in res.reason.lower() or "leak" in res.reason.lower()
    client.wait_state("vhp", lambda s: not s.cycle_active, 120.0, "aeration finished")
    # the isolator is never released by a failed cycle
    client.wait_state("isolator", lambda s: s.decon_status == "NOT_DECONTAMINATED", 5.0, "isolator not released")


def test_vhp_cycle_to_pass_releases_the_isolator_at_the_aeration_endpoint(graph):
    """The whole device-level VHP sequence on each backend: robot parked in its decon pose with
    drives off, gloves extended, enclosure leak test, then every cycle phase to a PASS whose report
    carries the cycle record (phases, concentration, RH/RS, ΔP, aeration end value), and the
    isolator released only below the aeration endpoint."""
    _procs, client = graph
    ports = [g.id for g in CFG.layout.isolator.glove_ports]
    _drives(client, True)
    reply = client.move_arm("decon", CFG.arm.poses["decon"], user="op1")
    assert reply.accepted, reply
    _drives(client, False)
    try:
        for p in ports:
            reply = client.glove(p, "extend", user="op1")
            assert reply.accepted, reply
        reply = client.command("isolator", "start_leak_test", user="op1", reason="VHP pre-check")
        assert reply.accepted, reply
        client.wait_state("isolator", lambda s: s.leak_test_result == "PASS", 60.0, "leak test PASS")

        # the validated cycle (an engineering cycle's PASS never releases the isolator)
        res = client.run_cycle("vhp", "VHP-ISO-STD", batch_id="T-VHP-PASS", timeout_s=240.0)
        assert res.success and res.result == "PASS", res.reason
        report = json.loads(res.json_report)
        recipe = CFG.vhp_cycles.get("VHP-ISO-STD")
        release_ppm = recipe.aerate.release_ppm
        assert report["recipe_id"] == "VHP-ISO-STD" and report["passed"] is True, report
        assert report["aeration_end_ppm"] < release_ppm, report
        # the recorded dwell concentration (cycle record) held the recipe's band on average
        assert report["dwell_mean_ppm"] >= recipe.decontaminate.min_ppm, report
        client.wait_state("isolator", lambda s: s.decon_status == "DECONTAMINATED_RELEASED", 10.0,
                          "isolator released")
        client.wait_state("vhp", lambda s: not s.cycle_active and s.h2o2_ppm < release_ppm, 10.0,
                          "VHP unit idle below the release concentration")
    finally:
        for p in ports:
            client.glove(p, "retract", user="op1")
        _drives(client, True)
        client.move_arm("park", CFG.arm.poses["park"], user="op1")
        _drives(client, False)


def test_rtp_pick_is_refused_while_the_alpha_door_is_closed(graph):
    """The RTP door's swept volume is a keep-out unless the door is fully open (robot rule RB-04)."""
    _procs, client = graph
    _drives(client, True)
    try:
        r = client.command("arm", "move_to_pose", {"pose": "rtp_pick"}, user="op1")
        assert not r.accepted and r.code == "MOTION_COLLISION" and "rtp_door_swept" in r.reason
    finally:
        _drives(client, False)

