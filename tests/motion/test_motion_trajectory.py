"""Trajectory checks: limits, TCP speed classes, collisions at and between samples
(certified / fixed / samples modes), input validation."""

from __future__ import annotations

import numpy as np
import pytest

from aseptic_cell.motion import reference as ref

from .conftest import random_configs


def _park(scene):
    return np.array(scene.arm.poses["park"], dtype=float)


def _line(qa, qb, n):
    t = np.linspace(0.0, 1.0, n)[:, None]
    return qa[None] + t * (qb - qa)[None]


# ---------------------------------------------------------------- limits


def test_velocity_limit_reported_with_joint_and_index(scene):
    # wrist_3 spins up at 5.9 rad/s^2 (< 6): the flange origin (TCP) lies on its axis,
    # so only the velocity limit (3.14 rad/s) can fail, at the first sample above it.
    dt = 0.01
    t = np.arange(80) * dt
    q = np.tile(_park(scene), (80, 1))
    q[:, 5] = 0.5 * 5.9 * t**2
    res = scene.check_trajectory(q, dt)
    want = ref.limit_violations(scene.arm, q, dt)[0]
    assert want[1] == "velocity" and want[2] == 5
    assert not res.ok and res.kind == "limit"
    assert res.first_failing_index == want[0]
    assert res.reason.startswith("limit: joint 6 velocity ")
    assert "> 3.14 rad/s" in res.reason and "wrist_3_joint" in res.reason


def test_velocity_limit_message_format(scene):
    dt = 0.01
    q = np.tile(_park(scene), (5, 1))
    q[:, 5] += 3.5 * dt * np.arange(5)  # constant 3.5 rad/s from the first step
    res = scene.check_trajectory(q, dt)
    assert res.first_failing_index == 1
    assert res.reason.startswith("limit: joint 6 velocity 3.5 > 3.14 rad/s")


def test_acceleration_and_position_limits(scene):
    dt = 0.01
    q = np.tile(_park(scene), (10, 1))
    q[6:, 5] += 0.001  # a step: acceleration 10 rad/s^2 > 6 at sample 5
    res = scene.check_trajectory(q, dt)
    assert (res.ok, res.first_failing_index, res.kind) == (False, 5, "limit")
    assert res.reason.startswith("limit: joint 6 acceleration 10 > 6 rad/s^2")

    q = np.tile(_park(scene), (6, 1))
    q[3:, 2] = 3.2  # elbow beyond +pi at sample 3 (velocity fails there too; position wins)
    res = scene.check_trajectory(q, 10.0)
    assert res.first_failing_index == 3
    assert res.reason.startswith("limit: joint 3 position 3.2 outside [-3.142, 3.142] rad")


# ---------------------------------------------------------------- speed classes


@pytest.fixture(scope="module")
def zone_pose(scene):
    """A free configuration with the TCP well inside the workstation near-product zone,
    where a base rotation moves the TCP sideways."""
    rng = np.random.default_rng(20)
    q = random_configs(rng, 100000)
    ok = scene.clearance(q).distance > 0.05
    q = q[ok]
    tcp = scene.fk(q).tcp
    zone = scene.geometry.near_product_zones[0]
    inside = (np.abs(tcp - np.array(zone.center)) < np.array(zone.half_extents) - 0.06).all(axis=1)
    radius = np.hypot(tcp[:, 0], tcp[:, 1])
    pick = np.flatnonzero(inside & (radius > 0.35))
    assert pick.size, "no free configuration with the TCP in the near-product zone"
    return q[pick[0]], float(radius[pick[0]])


def _base_rotation(q0, omega, dt, n):
    q = np.tile(q0, (n, 1))
    q[:, 0] += omega * dt * np.arange(n)
    return q


def test_near_product_speed_violation(scene, zone_pose):
    q0, radius = zone_pose
    dt = 0.01
    q = _base_rotation(q0, 0.40 / radius, dt, 6)  # TCP ~0.40 m/s
    res = scene.check_trajectory(q, dt)
    assert not res.ok and res.kind == "speed" and res.first_failing_index == 1
    assert res.reason.startswith("speed: TCP 0.4 m/s > 0.25 m/s in near_product zone workstation_zone")
    slow = _base_rotation(q0, 0.20 / radius, dt, 6)  # 0.2 m/s is allowed
    assert scene.check_trajectory(slow, dt).ok


def test_speed_class_outside_zones(scene):
    # upper arm swing far from the zone: > 0.8 m/s transit limit fails, near_product class fails earlier
    park = _park(scene)
    dt = 0.01
    q = np.tile(park, (4, 1))
    q[:, 0] += 2.0 * dt * np.arange(4)  # base at 2 rad/s; park TCP radius ~0.5 m -> ~1 m/s
    tcp = scene.fk(q).tcp
    speed = np.linalg.norm(tcp[1] - tcp[0]) / dt
    assert speed > 0.8
    res = scene.check_trajectory(q, dt)
    assert res.kind == "speed" and res.first_failing_index == 1 and "(transit)" in res.reason
    q2 = np.tile(park, (4, 1))
    q2[:, 0] += (0.5 / speed * 2.0) * dt * np.arange(4)  # ~0.5 m/s
    assert scene.check_trajectory(q2, dt).ok
    res = scene.check_trajectory(q2, dt, speed_class="near_product")
    assert res.kind == "speed" and "> 0.25 m/s (near_product)" in res.reason


# ---------------------------------------------------------------- collisions


def _free_and_colliding(scene, rng, n):
    q = random_configs(rng, n)
    d = scene.clearance(q).distance
    return q[d >= scene.margin + 0.02], q[d < scene.margin]


def test_collision_at_sample_reports_pair_and_index(scene):
    rng = np.random.default_rng(21)
    free, col = _free_and_colliding(scene, rng, 2000)
    q = np.array([free[0], free[0], col[0], free[0]])
    res = scene.check_trajectory(q, 100.0, mode="samples")
    want = scene.clearance(col[:1])
    assert (res.ok, res.kind, res.first_failing_index) == (False, "collision", 2)
    assert res.reason.startswith(f"collision: {want.link[0]} vs {want.other[0]}")
    assert res.failing_pair == (want.link[0], want.other[0])


def test_certified_fails_when_a_midpoint_collides(scene):
    """Segments whose end points are free but which collide in between (dense exact check):
    the certified mode must fail every one of them; the samples-only mode does not see it."""
    rng = np.random.default_rng(22)
    free, _ = _free_and_colliding(scene, rng, 12000)
    a = free[:-1]
    b = a + rng.uniform(-1.0, 1.0, a.shape)
    b[:, 2] = np.clip(b[:, 2], -3.1, 3.1)
    b_ok = scene.clearance(b).distance >= scene.margin
    a, b = a[b_ok], b[b_ok]
    dense = np.linspace(0.0, 1.0, 401)
    pts = a[:, None, :] + dense[None, :, None] * (b - a)[:, None, :]
    d = scene.clearance(pts.reshape(-1, 6)).distance.reshape(len(a), -1)
    hidden = (d < scene.margin).any(axis=1)
    assert hidden.sum() >= 20
    for i in np.flatnonzero(hidden)[:60]:
        q = np.array([a[i], b[i]])
        res = scene.check_trajectory(q, 100.0, mode="certified")
        assert not res.ok and res.kind == "collision" and res.first_failing_index == 1, res
        assert "between samples 0 and 1" in res.reason
        assert scene.check_trajectory(q, 100.0, mode="samples").ok
    # ...and what it certifies is free on a dense check (never a false "ok")
    certified = 0
    for i in np.flatnonzero(~hidden)[:60]:
        res = scene.check_trajectory(np.array([a[i], b[i]]), 100.0, mode="certified")
        if res.ok:
            certified += 1
            fine = a[i] + np.linspace(0, 1, 2001)[:, None] * (b[i] - a[i])
            assert scene.clearance(fine).distance.min() >= scene.margin
    assert certified >= 20


def test_certified_minimum_subdivision_is_a_failure(scene):
    """With no bisection allowed a close-but-free move cannot be certified: it must fail."""
    rng = np.random.default_rng(23)
    q = random_configs(rng, 20000)
    d = scene.clearance(q).distance
    qa = q[(d > scene.margin + 0.002) & (d < scene.margin + 0.01)][0]
    qb = qa.copy()
    qb[0] += 0.05
    pts = qa + np.linspace(0, 1, 501)[:, None] * (qb - qa)
    if scene.clearance(pts).distance.min() < scene.margin:
        pytest.skip("sampled move is not free")
    res = scene.check_trajectory(np.array([qa, qb]), 100.0, max_depth=0)
    assert not res.ok and "not certified free between samples 0 and 1" in res.reason
    assert scene.check_trajectory(np.array([qa, qb]), 100.0).ok


def test_fixed_mode_checks_between_samples_at_its_step(scene):
    rng = np.random.default_rng(24)
    free, _ = _free_and_colliding(scene, rng, 6000)
    for qa in free:
        qb = qa.copy()
        qb[1] += 0.8
        pts = qa + np.linspace(0, 1, 801)[:, None] * (qb - qa)
        d = scene.clearance(pts).distance
        if d[0] >= scene.margin and d[-1] >= scene.margin and (d < scene.margin).sum() > 40:
            break
    else:
        pytest.fail("no suitable segment")
    q = np.array([qa, qb])
    res = scene.check_trajectory(q, 100.0, mode="fixed", fixed_step=0.005)
    assert not res.ok and res.kind == "collision" and "between samples 0 and 1" in res.reason
    assert scene.check_trajectory(q, 100.0, mode="fixed", fixed_step=10.0).ok  # no guarantee mode


def test_certified_long_trajectory_ok_and_clearance_is_sample_minimum(scene):
    park, decon = _park(scene), np.array(scene.arm.poses["decon"])
    q = _line(park, decon, 1000)
    dt = 0.01
    res = scene.check_trajectory(q, dt)
    assert res.ok and res.first_failing_index is None and res.reason == ""
    exact = scene.clearance(q)
    assert res.clearance == pytest.approx(exact.distance.min(), abs=1e-12)
    i = int(np.argmin(exact.distance))
    assert res.closest_pair == (exact.link[i], exact.other[i])


def test_keepout_condition_applies_to_trajectories(scene):
    rng = np.random.default_rng(25)
    q = random_configs(rng, 20000)
    free = scene.clearance(q).distance >= scene.margin + 0.01
    glove = scene.clearance(q, conditions={"glove_in_use:GP1"}).distance < scene.margin
    qi = q[np.flatnonzero(free & glove)[0]]
    traj = np.array([qi, qi])
    assert scene.check_trajectory(traj, 1.0).ok
    res = scene.check_trajectory(traj, 1.0, conditions={"glove_in_use:GP1"})
    assert not res.ok and "glove_gp1_reach" in res.reason


# ---------------------------------------------------------------- validation


BAD_ARRAYS = [
    pytest.param(lambda p: np.array([p, p * np.nan]), id="nan"),
    pytest.param(lambda p: np.array([p, p + np.inf]), id="inf"),
    pytest.param(lambda p: np.array([p[:5]]), id="shape-n5"),
    pytest.param(lambda p: np.array([[p]]), id="shape-3d"),
    pytest.param(lambda p: np.array([p], dtype=np.float32), id="float32"),
    pytest.param(lambda p: np.array([p]).astype(np.int64), id="int64"),
    pytest.param(lambda p: np.array([p], dtype=object), id="object"),
    pytest.param(lambda p: [["a"] * 6], id="strings"),
    pytest.param(lambda p: np.array([p + 1e6]), id="huge"),
]


@pytest.mark.parametrize("make", BAD_ARRAYS)
@pytest.mark.parametrize("call", ["check_configs", "clearance", "check_trajectory", "fk"])
def test_bad_input_raises_value_error(scene, make, call):
    bad = make(_park(scene))
    with pytest.raises(ValueError):
        if call == "check_trajectory":
            scene.check_trajectory(bad, 0.01)
        else:
            getattr(scene, call)(bad)


@pytest.mark.parametrize("dt", [0.0, -0.01, float("nan"), float("inf"), "0.01", None])
def test_bad_dt_raises(scene, dt):
    with pytest.raises(ValueError):
        scene.check_trajectory(np.array([_park(scene)] * 2), dt)


def test_bad_mode_or_speed_class_raises(scene):
    q = np.array([_park(scene)] * 2)
    with pytest.raises(ValueError):
        scene.check_trajectory(q, 0.01, mode="dense")
    with pytest.raises(ValueError):
        scene.check_trajectory(q, 0.01, speed_class="fast")
    with pytest.raises(ValueError):
        scene.check_trajectory(q[:0], 0.01)


def test_c_layer_rejects_nan_and_wrong_buffers_directly(scene):
    from aseptic_cell.motion import _ccheck

    out = np.empty(1, dtype=np.uint8)
    q = np.array([_park(scene)])
    q[0, 3] = np.nan
    with pytest.raises(ValueError):
        _ccheck.fast_check(scene._capsule, q, 0, out)
    with pytest.raises(ValueError):
        _ccheck.fast_check(scene._capsule, q.astype(np.float32), 0, out)
    with pytest.raises(ValueError):
        _ccheck.fast_check(scene._capsule, np.zeros(7), 0, out)
    with pytest.raises(ValueError):
        _ccheck.fast_check(scene._capsule, np.zeros((1, 6)), 0, np.empty(2, dtype=np.uint8))
    d, p = np.empty(1), np.empty(1, dtype=np.int32)
    with pytest.raises(ValueError):
        _ccheck.clearance(scene._capsule, np.zeros((1, 6))[:, ::2].copy(), 0, d, p)


def test_noncontiguous_input_is_accepted(scene):
    big = np.zeros((4, 12))
    big[:, ::2] = _park(scene)
    q = big[:, ::2]  # strided view, float64
    assert not q.flags.c_contiguous
    assert scene.check_configs(q).all()
