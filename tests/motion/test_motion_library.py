"""Motion library under change control and the run-time entry point plan_pose_move."""

from __future__ import annotations

import time

import numpy as np
import pytest

from aseptic_cell.auth import AuthError, PermissionDenied, UserDirectory
from aseptic_cell.motion.cli import main as motion_cli
from aseptic_cell.motion.library import LibraryError, LibraryPath, MotionLibrary
from aseptic_cell.motion.planning import MotionRefused, plan_pose_move

from .conftest import CONFIG_DIR

FROM, TO = "rtp_pick", "incubator_place"   # the straight move between them collides


class _Clock:
    def now(self) -> float:
        return time.time()


@pytest.fixture(scope="module")
def users() -> UserDirectory:
    return UserDirectory.from_file(CONFIG_DIR / "users.yaml", _Clock())


@pytest.fixture(scope="module")
def planned(scene) -> LibraryPath:
    res = scene.plan(scene.arm.poses[FROM], scene.arm.poses[TO], seed=2)
    assert res.ok, res.reason
    return LibraryPath(name=f"{FROM}__{TO}", from_pose=FROM, to_pose=TO, waypoints=res.waypoints)


@pytest.fixture(scope="module")
def approved(planned, users, tmp_path_factory) -> MotionLibrary:
    lib = MotionLibrary()
    lib.propose(LibraryPath(**{**planned.__dict__, "waypoints": planned.waypoints.copy()}))
    lib.approve(planned.name, users, "qa1", "qa1-demo-2026")
    path = lib.save(tmp_path_factory.mktemp("lib") / "motion_library.yaml")
    return MotionLibrary.load(path)  # through the file: the approval survives a round trip


def _move(scene, lib, q0=None, conditions=frozenset(), to=TO):
    q0 = np.array(scene.arm.poses[FROM]) if q0 is None else q0
    return plan_pose_move(scene, lib, q0, to, scene.limits[:, 2], scene.limits[:, 3],
                          speed_limit_m_s=scene.speed_limits["transit"], dt=0.02, conditions=conditions)


def test_task_whose_straight_move_collides_completes_through_the_approved_path(scene, approved):
    with pytest.raises(MotionRefused) as exc:
        _move(scene, None)
    assert exc.value.code == "NO_APPROVED_PATH" and "collides" in exc.value.reason
    q, dt = _move(scene, approved)
    np.testing.assert_array_equal(q[0], scene.arm.poses[FROM])
    np.testing.assert_allclose(q[-1], scene.arm.poses[TO], atol=1e-12)
    chk = scene.check_trajectory(q, dt, conditions=set())
    assert chk.ok, chk.reason


def test_the_same_task_without_the_approval_is_refused(scene, approved):
    lib = MotionLibrary.load(approved.source)
    lib.revoke(f"{FROM}__{TO}")
    with pytest.raises(MotionRefused) as exc:
        _move(scene, lib)
    assert exc.value.code == "NO_APPROVED_PATH" and "not approved" in exc.value.reason


def test_a_changed_path_is_refused(scene, approved):
    lib = MotionLibrary.load(approved.source)
    lp = lib.paths[f"{FROM}__{TO}"]
    lp.waypoints[1, 0] += 1e-9  # any change at all
    assert lp.status() == (False, f"path {lp.name!r} changed since it was recorded (hash mismatch)")
    with pytest.raises(MotionRefused) as exc:
        _move(scene, lib)
    assert "hash mismatch" in exc.value.reason
    # re-stamping the hash does not help: the approval covers the old content
    lp.content_hash = lp.computed_hash()
    assert lp.status()[1].endswith("changed since its approval (hash mismatch)")
    with pytest.raises(LibraryError):  # nor can a changed path be approved
        lp2 = lib.paths[lp.name]
        lp2.waypoints[1, 1] += 1e-9
        lib.approve(lp.name, UserDirectory.from_file(CONFIG_DIR / "users.yaml", _Clock()), "qa1", "x")


def test_only_qa_may_approve_and_the_password_is_checked(planned, users):
    lib = MotionLibrary()
    lib.propose(LibraryPath(**{**planned.__dict__, "waypoints": planned.waypoints.copy()}))
    with pytest.raises(PermissionDenied):
        lib.approve(planned.name, users, "eng1", "eng1-demo-2026")
    with pytest.raises(AuthError):
        lib.approve(planned.name, users, "qa1", "wrong-password")
    assert lib.paths[planned.name].approval is None


def test_approved_path_is_recertified_against_live_keepouts(scene, approved):
    """With the GP2 glove reach active the approved path (or its start) is not safe now."""
    conds = {"glove_in_use:GP2", "glove_in_use:GP3", "door_closed:incubator"}
    with pytest.raises(MotionRefused) as exc:
        _move(scene, approved, conditions=conds)
    assert exc.value.code == "PATH_REFUSED" and "not safe now" in exc.value.reason


def test_straight_move_used_when_free_and_other_refusals(scene, approved):
    q, dt = _move(scene, approved, q0=np.array(scene.arm.poses["park"]), to="rtp_pick")
    assert len(q) >= 2 and scene.check_trajectory(q, dt, conditions=set()).ok
    with pytest.raises(MotionRefused) as exc:
        _move(scene, approved, to="nowhere")
    assert exc.value.code == "UNKNOWN_POSE"
    with pytest.raises(MotionRefused) as exc:
        plan_pose_move(scene, approved, scene.arm.poses[FROM], TO, scene.limits[:, 2], scene.limits[:, 3],
                       speed_limit_m_s=0.8, conditions=None)
    assert exc.value.code == "NO_CELL_STATE"


def test_lead_in_from_near_the_start_pose(scene, approved):
    q0 = np.array(scene.arm.poses[FROM]) + np.array([0.05, 0.0, 0.0, 0.0, 0.0, 0.0])
    q, dt = _move(scene, approved, q0=q0)
    np.testing.assert_array_equal(q[0], q0)
    assert scene.check_trajectory(q, dt, conditions=set()).ok


def test_cli_plan_then_approve(tmp_path, monkeypatch, capsys):
    lib_file = tmp_path / "motion_library.yaml"
    assert motion_cli(["plan", "--from", FROM, "--to", TO, "--by", "eng1", "--library", str(lib_file)]) == 0
    lib = MotionLibrary.load(lib_file)
    lp = lib.paths[f"{FROM}__{TO}"]
    assert lp.status() == (False, f"path {lp.name!r} is not approved")
    assert lp.review["certified"] and lp.review["duration_s"] > 0 and len(lp.review["clearance_profile"]) > 10
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("qa1-demo-2026\n"))
    assert motion_cli(["approve", "--name", lp.name, "--user", "qa1", "--password-stdin",
                       "--library", str(lib_file)]) == 0
    assert MotionLibrary.load(lib_file).paths[lp.name].status() == (True, "approved")
    assert "APPROVED" in capsys.readouterr().out
    assert motion_cli(["plan", "--from", "park", "--to", "nowhere", "--library", str(lib_file)]) == 2


def test_shipped_library_is_approved_and_certified(scene):
    """config/motion_library.yaml: every path approved, unchanged, ending at arm.yaml's poses,
    and certified on the shipped scene under the conditions it was planned for."""
    from aseptic_cell.motion.cli import review_of

    lib = MotionLibrary.load(CONFIG_DIR / "motion_library.yaml")
    assert len(lib.paths) >= 5
    for lp in lib.paths.values():
        assert lp.status() == (True, "approved"), lp.name
        np.testing.assert_array_equal(lp.waypoints[0], scene.arm.poses[lp.from_pose])
        np.testing.assert_array_equal(lp.waypoints[-1], scene.arm.poses[lp.to_pose])
        review = review_of(scene, lp)
        assert review["certified"], (lp.name, review["check_reason"])
