"""The signed envelope of the command plane (issue 12, aseptic_cell.security): what a verifier
accepts and refuses, without a graph (the graph's attacks are in tests/ros/test_attacks.py)."""

from __future__ import annotations

import os
import stat

import pytest
from cell_interfaces.action import ExecuteTrajectory
from cell_interfaces.srv import DeviceCommand
from trajectory_msgs.msg import JointTrajectoryPoint

from aseptic_cell.security import (
    PRINCIPALS,
    AuthRefused,
    SecurityError,
    Signer,
    Verifier,
    canonical_json,
    init_security_dir,
    load_trust,
)
from aseptic_cell.security.transport import confine_to_host

T = "/cell/isolator/command"


class Wall:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def trust(tmp_path_factory):
    return load_trust(init_security_dir(tmp_path_factory.mktemp("sec")))


def req(**kw) -> DeviceCommand.Request:
    return DeviceCommand.Request(**{"command": "open_door", "args_json": '{"door": "A"}', "user": "op1",
                                    "reason": "transfer", **kw})


def refused(v: Verifier, msg, scopes=("device",), target=T) -> str:
    with pytest.raises(AuthRefused) as info:
        v.verify(target, msg, scopes)
    return info.value.reason


def test_keys_are_private_files_and_init_is_idempotent(tmp_path):
    d = init_security_dir(tmp_path / "sec")
    key = (d / "keys" / "supervisor.key").read_text()
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(d / "keys" / "supervisor.key").st_mode) == 0o600
    init_security_dir(d)
    assert (d / "keys" / "supervisor.key").read_text() == key
    assert set(load_trust(d).scopes) == set(PRINCIPALS)


def test_a_signed_request_is_accepted_once(trust):
    wall = Wall()
    s, v = Signer("supervisor", trust, wall=wall), Verifier(trust, wall=wall)
    m = Signer("supervisor", trust, wall=wall).sign(T, req())
    got = v.verify(T, m, ("device",))
    assert got.principal == "supervisor"
    assert "replay" in refused(v, m)
    s.sign(T, m, role="operator")
    assert v.verify(T, m, ("device",)).claims == {"role": "operator"}


def test_tampered_retargeted_unsigned_forged_and_out_of_scope_requests_are_refused(trust, tmp_path):
    wall = Wall()
    s, v = Signer("supervisor", trust, wall=wall), Verifier(trust, wall=wall)
    assert "no auth envelope" in refused(v, req())
    m = s.sign(T, req())
    m.user = "mallory"
    assert "bad signature" in refused(v, m)
    assert "bad signature" in refused(v, s.sign("/cell/vhp/command", req()))
    assert "malformed" in refused(v, req(auth="not.an.envelope"))
    other = load_trust(init_security_dir(tmp_path / "other-cell"))  # same names, other keys
    assert "bad signature" in refused(v, Signer("supervisor", other, wall=wall).sign(T, req()))
    lm = Signer("lifecycle_manager", trust, wall=wall)
    assert "not trusted" in refused(v, lm.sign(T, req()))
    assert v.verify(T, lm.sign(T, req(command="safe_state")), ("device", "safe_state")).principal == \
        "lifecycle_manager"
    assert "not trusted" in refused(v, Signer("hmi", trust, wall=wall).sign(T, req()))


def test_stale_future_and_pre_start_envelopes_are_refused(trust):
    wall = Wall()
    s = Signer("supervisor", trust, wall=wall)
    v = Verifier(trust, wall=wall, started=wall.t - 600)
    old = s.sign(T, req())
    wall.t += trust.window_s + 1
    assert "time window" in refused(v, old)
    wall.t -= 2 * (trust.window_s + 1)  # signed "in the future" of the verifier's clock
    assert "time window" in refused(v, old)
    captured = s.sign(T, req())
    restarted = Verifier(trust, wall=wall, started=wall.t + 1)  # the receiver restarted after the capture
    wall.t += 2
    assert "before this node started" in refused(restarted, captured)


def test_every_field_is_covered_including_nested_trajectories(trust):
    wall = Wall()
    s, v = Signer("supervisor", trust, wall=wall), Verifier(trust, wall=wall)
    goal = ExecuteTrajectory.Goal(user="op1", speed_class="transit")
    goal.trajectory.points = [JointTrajectoryPoint(positions=[0.0] * 6), JointTrajectoryPoint(positions=[0.1] * 6)]
    target = "/cell/arm/execute_trajectory"
    s.sign(target, goal)
    goal.trajectory.points[1].positions[3] = 2.5
    assert "bad signature" in refused(v, goal, target=target)


def test_events_are_signed_as_bytes(trust):
    wall = Wall()
    s, v = Signer("arm", trust, wall=wall), Verifier(trust, wall=wall)
    ev = {"event": "recovered", "node": "arm", "user": "sup1", "t": 1.5}
    tok = s.token_for("/cell/events", canonical_json(ev))
    assert v.verify_token("/cell/events", tok, canonical_json(ev), ("event",)).principal == "arm"
    ev["user"] = "mallory"
    with pytest.raises(AuthRefused):
        v.verify_token("/cell/events", s.token_for("/cell/events", canonical_json({"x": 1})), canonical_json(ev),
                       ("event",))


def test_without_a_trust_list_everything_is_refused(tmp_path, monkeypatch):
    with pytest.raises(SecurityError):
        load_trust(tmp_path / "missing")
    monkeypatch.setenv("ASEPTIC_CELL_SECURITY_DIR", str(tmp_path / "missing"))
    with pytest.raises(SecurityError):
        Signer("supervisor")
    assert "no trust list" in refused(Verifier(), req(auth="x.y"))


def test_the_product_confines_the_graph_to_the_host_unless_multi_host():
    env = confine_to_host({})
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert env["FASTRTPS_DEFAULT_PROFILES_FILE"].endswith("config/fastdds_host_only.xml")
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == env["FASTRTPS_DEFAULT_PROFILES_FILE"]
    assert confine_to_host({"FASTRTPS_DEFAULT_PROFILES_FILE": "/site.xml"})["FASTDDS_DEFAULT_PROFILES_FILE"] == \
        "/site.xml"
    assert confine_to_host({"ASEPTIC_CELL_MULTI_HOST": "1"}) == {"ASEPTIC_CELL_MULTI_HOST": "1"}
