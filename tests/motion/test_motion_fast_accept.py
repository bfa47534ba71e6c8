"""Fast acceptance of the certified trajectory check (``check_trajectory(fast_accept=True)``,
used by the planner): samples passed on the float32 fast path of scene copies with larger
margins, and runs of collinear samples certified as one straight segment. These tests try
to break it: motions that touch an obstacle between samples or come within the margin at a
sample must still be refused, and what it accepts must be free by the exact path on a dense
check and by coal."""

from __future__ import annotations

import numpy as np
import pytest

from aseptic_cell.motion import Scene, _ccheck
from aseptic_cell.motion.planner import time_parameterise

from .conftest import near_contact_configs, random_configs
from .test_motion_large_scenes import _coal_collides, _random_box_geometry, arm, base_geometry  # noqa: F401


def _hidden_collisions(scene: Scene, rng: np.random.Generator, n: int):
    """Straight moves a -> b whose ends are free (exact) but which collide in between on a
    dense exact check, and straight moves that are free on it."""
    q = random_configs(rng, n)
    free = q[scene.clearance(q).distance >= scene.margin + 0.005]
    a = free[:-1]
    b = a + rng.uniform(-1.0, 1.0, a.shape)
    b[:, 2] = np.clip(b[:, 2], -3.1, 3.1)
    keep = scene.clearance(b).distance >= scene.margin + 0.005
    a, b = a[keep], b[keep]
    t = np.linspace(0.0, 1.0, 601)
    pts = a[:, None, :] + t[None, :, None] * (b - a)[:, None, :]
    d = scene.clearance(pts.reshape(-1, 6)).distance.reshape(len(a), -1)
    return a, b, d


def test_collision_between_samples_is_refused_with_and_without_runs(scene):
    """A move whose samples are all free but which touches an obstacle between two of them:
    as two samples (fast acceptance of the ends, no run) and as 3..6 collinear samples (one
    run, certified as a segment), fast acceptance refuses every one, with the same index
    and reason as the exact check."""
    rng = np.random.default_rng(41)
    a, b, d = _hidden_collisions(scene, rng, 12000)
    tested = 0
    for i in np.flatnonzero((d < scene.margin).any(axis=1)):
        for n in (2, 3, 4, 6):
            q = a[i] + np.linspace(0.0, 1.0, n)[:, None] * (b[i] - a[i])
            if not (scene.clearance(q).distance >= scene.margin).all():
                continue  # a sample itself collides: not the case under test
            exact = scene.check_trajectory(q, 100.0)
            fast = scene.check_trajectory(q, 100.0, fast_accept=True)
            assert not exact.ok and exact.kind == "collision"
            assert not fast.ok, (n, fast)
            assert (fast.first_failing_index, fast.reason) == (exact.first_failing_index, exact.reason)
            tested += 1
        if tested >= 60:
            break
    assert tested >= 30


def test_sample_within_the_margin_is_refused(scene):
    """Samples just inside the margin (clearance within 1e-12 rad of the boundary): a
    trajectory through one is refused; fast acceptance cannot pass a sample the exact path
    puts below the margin."""
    rng = np.random.default_rng(42)
    pts = near_contact_configs(scene, rng, 80)
    d = scene.clearance(pts).distance
    inside = pts[d < scene.margin]
    assert len(inside) >= 20
    for q_in in inside[:30]:
        # a tiny straight move through the sample (a run of 5 samples with it in the middle)
        step = np.full(6, 1e-7)
        q = q_in + np.arange(-2, 3)[:, None] * step
        res = scene.check_trajectory(q, 100.0, fast_accept=True)
        assert not res.ok and res.kind == "collision", res


def test_accepted_trajectories_are_free_on_a_dense_check_and_by_coal(arm, base_geometry):  # noqa: F811
    """Random scenes (80 boxes, a third oriented): timed multi-segment trajectories (the
    planner's timing, runs of collinear samples) through random free waypoints. Whatever
    fast acceptance passes is passed by the exact check too, is free on a dense exact check
    of every sample interval, and coal finds no collision below the margin at the closest
    dense configurations; and it refuses the ones that collide."""
    import coal

    accepted = refused = 0
    for seed in (43, 44):
        rng = np.random.default_rng(seed)
        geom = _random_box_geometry(rng, 80, base_geometry)
        scene = Scene.from_config(arm, geom)
        q = random_configs(rng, 4000)
        free = q[scene.clearance(q).distance >= scene.margin + 0.01]
        closest = []
        for k in range(0, min(len(free) - 2, 90), 3):
            wp = free[k:k + 3].copy()
            wp[1] = wp[0] + 0.3 * (wp[1] - wp[0])  # shorter segments: more of them pass
            wp[2] = wp[1] + 0.3 * (wp[2] - wp[1])
            samples, _ = time_parameterise(scene, wp, 0.02, scene.speed_limits["transit"])
            fast = scene.check_trajectory(samples, 0.02, fast_accept=True)
            exact = scene.check_trajectory(samples, 0.02)
            t = np.linspace(0.0, 1.0, 41)[1:]
            dense = (samples[:-1, None, :] + t[None, :, None] * np.diff(samples, axis=0)[:, None, :]).reshape(-1, 6)
            dd = scene.clearance(dense).distance
            # the same verdict as the exact check (same first failure)
            assert (fast.ok, fast.kind, fast.first_failing_index) == (exact.ok, exact.kind,
                                                                       exact.first_failing_index)
            if fast.ok:
                accepted += 1
                assert dd.min() >= scene.margin
                assert fast.clearance <= dd.min() + 1e-12  # exact minimum or a lower bound
                closest.append(dense[np.argsort(dd)[:3]])
            else:
                refused += 1
        if closest:
            assert not _coal_collides(coal, scene, geom, np.concatenate(closest)).any()
    assert accepted >= 10 and refused >= 5, (accepted, refused)


def test_clearance_is_the_exact_minimum_or_a_labelled_lower_bound(scene):
    park, decon = np.array(scene.arm.poses["park"]), np.array(scene.arm.poses["decon"])
    q = park + np.linspace(0.0, 1.0, 1000)[:, None] * (decon - park)
    exact = scene.check_trajectory(q, 0.01)
    fast = scene.check_trajectory(q, 0.01, fast_accept=True)
    assert exact.ok and fast.ok and exact.clearance_exact and exact.fast_accepted == 0
    assert fast.fast_accepted > 900  # one run: its inner samples are not evaluated
    assert fast.evaluations < exact.evaluations / 10
    if fast.clearance_exact:
        assert fast.clearance == pytest.approx(exact.clearance, abs=1e-12)
    else:
        assert fast.closest_pair is None
        assert scene.margin <= fast.clearance <= exact.clearance


def test_bad_acceptance_scenes_are_rejected(scene, arm, base_geometry):  # noqa: F811
    q = np.tile(np.array(scene.arm.poses["park"]), (3, 1))
    mask = scene._mask_arg(None)
    args = (scene._capsule, q, mask, 0.02, 2, 1.0, 0.25, 0.01, 16)
    other = Scene.from_config(arm, _random_box_geometry(np.random.default_rng(1), 5, base_geometry))
    with pytest.raises(ValueError, match="geometry differs"):
        _ccheck.check_trajectory(*args, (other.inflated(0.01)._capsule,))
    with pytest.raises(ValueError, match="ascending"):
        _ccheck.check_trajectory(*args, (scene.inflated(0.02)._capsule, scene.inflated(0.01)._capsule))
    with pytest.raises(ValueError, match="larger"):
        _ccheck.check_trajectory(*args, (scene._capsule,))
    with pytest.raises(ValueError, match="certified"):
        scene.check_trajectory(q, 0.02, mode="samples", fast_accept=True)
    assert _ccheck.check_trajectory(*args, (scene.inflated(0.01)._capsule,))[0] == 0
