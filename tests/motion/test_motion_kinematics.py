"""Forward kinematics and exact distances: C extension vs the numpy reference and coal."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aseptic_cell.motion import _ccheck
from aseptic_cell.motion import reference as ref

from .conftest import near_contact_configs, random_configs


def test_fk_matches_reference(scene):
    rng = np.random.default_rng(1)
    q = rng.uniform(-2 * np.pi, 2 * np.pi, (500, 6))
    q[:, 2] = rng.uniform(-np.pi, np.pi, 500)
    got = scene.fk(q)
    want = ref.fk(scene.arm, q)
    np.testing.assert_allclose(got.frames, want, atol=1e-12, rtol=0)
    np.testing.assert_allclose(got.tcp, want[:, 6, :3, 3], atol=1e-12, rtol=0)
    single = scene.fk(q[0])
    assert single.frames.shape == (7, 4, 4) and single.tcp.shape == (3,)
    np.testing.assert_array_equal(single.frames, got.frames[0])


def test_fk_zero_pose_known_ur5e_values(scene):
    # UR5e at q = 0 (standard DH): flange at x = a2 + a3 = -0.8172, y = -(d4 + d6) = -0.2329,
    # z = d1 - d5 = 0.0628 (Universal Robots DH table).
    tcp = scene.fk(np.zeros(6)).tcp
    np.testing.assert_allclose(tcp, [-0.8172, -0.2329, 0.0628], atol=1e-12)


def test_sincos_far_from_zero_is_accurate(scene):
    q = np.zeros((4, 6))
    q[:, 0] = [1e-9, np.pi / 4, 3 * np.pi - 1e-7, -6.2831]
    got = scene.fk(q).frames[:, 1, :3, :3]
    want = ref.fk(scene.arm, q)[:, 1, :3, :3]
    np.testing.assert_allclose(got, want, atol=2e-15)


def test_exact_clearance_matches_reference_random_and_near_contact(scene):
    rng = np.random.default_rng(2)
    q = np.concatenate([random_configs(rng, 200), near_contact_configs(scene, rng, 100)])
    got = scene.clearance(q)
    want, names = ref.clearance(scene.arm, scene.geometry, q)
    np.testing.assert_allclose(got.distance, want, atol=1e-9, rtol=0)
    # the closest pair agrees wherever the reference's best is clearly unique
    agree = [(a, b) == n for a, b, n in zip(got.link, got.other, names, strict=False)]
    assert np.mean(agree) > 0.95


def test_exact_clearance_with_conditions_matches_reference(scene):
    rng = np.random.default_rng(3)
    q = random_configs(rng, 150)
    conds = {"glove_in_use:GP1", "door_closed:rtp1_alpha", "container_open:workstation"}
    got = scene.clearance(q, conditions=conds).distance
    want, _ = ref.clearance(scene.arm, scene.geometry, q, conds)
    np.testing.assert_allclose(got, want, atol=1e-9, rtol=0)


def _seg_box(e0, e1, c, R, h):
    out = np.empty(len(e0))
    _ccheck.seg_box_dist(
        np.ascontiguousarray(e0), np.ascontiguousarray(e1), np.ascontiguousarray(c),
        np.ascontiguousarray(R.reshape(len(e0), 9)), np.ascontiguousarray(h), out,
    )
    return out


def _seg_seg(p0, p1, q0, q1):
    out = np.empty(len(p0))
    _ccheck.seg_seg_dist(*(np.ascontiguousarray(v) for v in (p0, p1, q0, q1)), out)
    return out


def _random_rotations(rng, n):
    qs = rng.normal(size=(n, 4))
    qs /= np.linalg.norm(qs, axis=1, keepdims=True)
    w, x, y, z = qs.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=1,
    )


def test_segment_primitives_match_reference():
    rng = np.random.default_rng(4)
    n = 3000
    e0, e1, c = rng.uniform(-1, 1, (n, 3)), rng.uniform(-1, 1, (n, 3)), rng.uniform(-0.5, 0.5, (n, 3))
    e1[:200] = e0[:200]  # degenerate segments
    e1[200:400, 1:] = e0[200:400, 1:]  # segments parallel to a box axis
    R = _random_rotations(rng, n)
    R[200:400] = np.eye(3)
    h = rng.uniform(0.01, 0.4, (n, 3))
    np.testing.assert_allclose(_seg_box(e0, e1, c, R, h), ref.segment_box_distance(e0, e1, c, R, h),
                               atol=1e-9)
    q0, q1 = rng.uniform(-1, 1, (n, 3)), rng.uniform(-1, 1, (n, 3))
    q1[:300] = q0[:300] + 0.7 * (e1[:300] - e0[:300])  # parallel segments
    np.testing.assert_allclose(_seg_seg(e0, e1, q0, q1), ref.segment_segment_distance(e0, e1, q0, q1),
                               atol=1e-9)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=12, max_size=12),
    st.lists(st.floats(0.001, 0.5, allow_nan=False), min_size=3, max_size=3),
)
def test_segment_box_property(coords, half):
    e0, e1 = np.array([coords[:3]]), np.array([coords[3:6]])
    c = np.array([coords[6:9]])
    h = np.array([half])
    R = _random_rotations(np.random.default_rng(abs(hash(tuple(coords))) % 2**32), 1)
    got = _seg_box(e0, e1, c, R, h)[0]
    want = ref.segment_box_distance(e0, e1, c, R, h)[0]
    assert got == pytest.approx(want, abs=1e-9)
    # the distance never exceeds the distance of either end point
    assert got <= ref.point_box_distance(e0, c, R, h)[0] + 1e-12


def _coal_pose(coal, R, t):
    return coal.Transform3s(np.ascontiguousarray(R), np.ascontiguousarray(t, dtype=float))


def _capsule_pose(e0, e1):
    """Rotation taking z to the segment direction, translation at its midpoint."""
    axis = e1 - e0
    length = float(np.linalg.norm(axis))
    z = axis / length
    x = np.cross(z, [1.0, 0.0, 0.0])
    if np.linalg.norm(x) < 1e-6:
        x = np.cross(z, [0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=1), 0.5 * (e0 + e1), length


def test_capsule_distances_match_coal():
    coal = pytest.importorskip("coal", reason="coal (PyPI) is the independent oracle")
    rng = np.random.default_rng(5)
    req = coal.DistanceRequest()
    req.gjk_tolerance = 1e-8
    checked_box = checked_cap = 0
    for _ in range(400):
        e0, e1 = rng.uniform(-1, 1, 3), rng.uniform(-1, 1, 3)
        r = rng.uniform(0.01, 0.1)
        c, h = rng.uniform(-0.5, 0.5, 3), rng.uniform(0.02, 0.4, 3)
        R = _random_rotations(rng, 1)[0]
        mine = _seg_box(e0[None], e1[None], c[None], R[None], h[None])[0] - r
        if mine > 1e-3:  # separated pairs only (coal's GJK distance)
            Rc, tc, length = _capsule_pose(e0, e1)
            res = coal.DistanceResult()
            d = coal.distance(coal.Capsule(r, length), _coal_pose(coal, Rc, tc), coal.Box(*(2 * h)),
                              _coal_pose(coal, R, c), req, res)
            assert abs(d - mine) <= 1e-6
            checked_box += 1
        q0, q1 = rng.uniform(-1, 1, 3), rng.uniform(-1, 1, 3)
        r2 = rng.uniform(0.01, 0.1)
        mine = _seg_seg(e0[None], e1[None], q0[None], q1[None])[0] - r - r2
        if mine > 1e-3:
            Ra, ta, la = _capsule_pose(e0, e1)
            Rb, tb, lb = _capsule_pose(q0, q1)
            res = coal.DistanceResult()
            d = coal.distance(coal.Capsule(r, la), _coal_pose(coal, Ra, ta), coal.Capsule(r2, lb),
                              _coal_pose(coal, Rb, tb), req, res)
            assert abs(d - mine) <= 1e-6
            checked_cap += 1
    assert checked_box > 100 and checked_cap > 100


def test_scene_clearance_matches_coal(scene):
    """Minimum clearance over the whole scene for free configurations, per coal."""
    coal = pytest.importorskip("coal", reason="coal (PyPI) is the independent oracle")
    rng = np.random.default_rng(6)
    q = random_configs(rng, 400)
    res = scene.clearance(q)
    q = q[res.distance > 1e-3][:40]
    mine = res.distance[res.distance > 1e-3][:40]
    req = coal.DistanceRequest()
    req.gjk_tolerance = 1e-8
    frames = ref.fk(scene.arm, q)
    e0, e1 = ref.link_segments(scene.arm, frames)
    links = scene.arm.links
    allowed = {tuple(p) for p in scene.arm.allowed_contacts}
    boxes = [(b.name, coal.Box(*(2 * np.asarray(b.half_extents))),
              _coal_pose(coal, ref.rpy_matrix(b.rpy), b.center))
             for b in scene.geometry.boxes if b.active == "always"]
    for i in range(len(q)):
        best = np.inf
        caps = []
        for k, link in enumerate(links):
            R, t, length = _capsule_pose(e0[i, k], e1[i, k])
            caps.append((coal.Capsule(link.radius, length), _coal_pose(coal, R, t)))
            for name, geom, pose in boxes:
                if (link.name, name) in allowed:
                    continue
                best = min(best, coal.distance(caps[k][0], caps[k][1], geom, pose, req,
                                               coal.DistanceResult()))
        idx = {lk.name: j for j, lk in enumerate(links)}
        for a, b in scene.arm.self_collision_pairs:
            ca, cb = caps[idx[a]], caps[idx[b]]
            best = min(best, coal.distance(ca[0], ca[1], cb[0], cb[1], req, coal.DistanceResult()))
        assert abs(best - mine[i]) <= 1e-6
