"""scene.plan: lazy roadmap / RRT-Connect in C over the fast path, shortcutting, timing,
certified check."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from aseptic_cell.config.robot import ArmConfig, GeometryConfig
from aseptic_cell.motion import Scene
from aseptic_cell.motion.planning import plan_joint_move
from aseptic_cell.motion.scenes import dense_geometry

from .conftest import CONFIG_DIR


def _pose(scene: Scene, name: str) -> np.ndarray:
    return np.array(scene.arm.poses[name])


def _straight_collides(scene: Scene, qa: np.ndarray, qb: np.ndarray, conditions=()) -> bool:
    vmax, amax = scene.limits[:, 2], scene.limits[:, 3]
    q, dt = plan_joint_move(scene, qa, qb, vmax, amax, speed_limit_m_s=scene.speed_limits["transit"])
    return scene.check_trajectory(q, dt, conditions=set(conditions)).kind == "collision"


def _assert_certified(scene: Scene, res, qa, qb, conditions=()) -> None:
    assert res.ok, res.reason
    np.testing.assert_array_equal(res.samples[0], qa)
    np.testing.assert_allclose(res.samples[-1], qb, atol=1e-12)
    again = scene.check_trajectory(res.samples, res.dt, conditions=set(conditions))
    assert again.ok, again.reason
    # the planner's own check (fast acceptance) reports the exact minimum or a lower bound
    assert res.check is not None and res.check.ok
    assert scene.margin <= res.check.clearance <= again.clearance + 1e-12
    if res.check.clearance_exact:
        assert res.check.clearance == pytest.approx(again.clearance, abs=1e-12)


def test_plans_around_an_obstacle_where_the_straight_move_collides(scene):
    qa, qb = _pose(scene, "rtp_pick"), _pose(scene, "incubator_place")
    assert _straight_collides(scene, qa, qb)
    res = scene.plan(qa, qb, seed=3)
    _assert_certified(scene, res, qa, qb)
    assert len(res.waypoints) >= 3 and res.iterations > 0
    assert res.duration_s > 0 and res.check is not None and res.check.clearance >= scene.margin


def test_deterministic_per_seed(scene):
    qa, qb = _pose(scene, "park"), _pose(scene, "incubator_place")
    a = scene.plan(qa, qb, seed=11)
    b = scene.plan(qa, qb, seed=11)
    np.testing.assert_array_equal(a.waypoints, b.waypoints)
    np.testing.assert_array_equal(a.samples, b.samples)
    # the RRT-Connect search (without the roadmap, whose vertices are fixed) follows the seed
    r = scene.plan(qa, qb, seed=11, roadmap=False)
    np.testing.assert_array_equal(r.waypoints, scene.plan(qa, qb, seed=11, roadmap=False).waypoints)
    others = [scene.plan(qa, qb, seed=s, roadmap=False).waypoints for s in (12, 13, 14)]
    assert any(o.shape != r.waypoints.shape or not np.array_equal(o, r.waypoints) for o in others)


def test_straight_move_when_free(scene):
    qa, qb = _pose(scene, "park"), _pose(scene, "rtp_pick")
    res = scene.plan(qa, qb, speed_class="near_product")
    _assert_certified(scene, res, qa, qb)
    assert len(res.waypoints) == 2 and res.iterations == 0
    assert res.check.speed_bound_max <= scene.speed_limits["near_product"]


def test_refusals_say_why(scene):
    park = _pose(scene, "park")
    bad = park.copy()
    bad[1] = 0.3  # upper arm down through the tray
    assert scene.clearance(bad[None]).distance[0] < scene.margin
    r = scene.plan(bad, park)
    assert not r.ok and r.code == "start_in_collision" and "start in collision" in r.reason
    assert len(r.samples) == 0
    r = scene.plan(park, bad)
    assert not r.ok and r.code == "goal_in_collision"
    qa, qb = _pose(scene, "rtp_pick"), _pose(scene, "incubator_place")
    r = scene.plan(qa, qb, max_samples=1, roadmap=False)
    assert not r.ok and r.code == "no_path" and "budget" in r.reason
    with pytest.raises(ValueError):
        scene.plan(park, [0.0] * 5)
    with pytest.raises(ValueError):
        scene.plan(park, park, speed_class="warp")


def test_conditions_are_respected(scene):
    """A conditional keep-out on the straight way between two poses: planned around only
    when its condition is active."""
    from aseptic_cell.config.robot import Box

    qa, qb = _pose(scene, "park"), _pose(scene, "decon")
    mid = scene.fk(0.5 * (qa + qb)).frames[3, :3, 3]  # the elbow half way
    box = Box(name="test_keepout", kind="keepout", active="container_open:test_station",
              center=(float(mid[0]), float(mid[1]), float(mid[2])), half_extents=(0.04, 0.04, 0.04))
    geo = scene.geometry.model_copy(update={"boxes": [*scene.geometry.boxes, box]})
    sc = Scene.from_config(scene.arm, geo)
    cond = {"container_open:test_station"}
    assert not _straight_collides(sc, qa, qb) and _straight_collides(sc, qa, qb, cond)
    free = sc.plan(qa, qb)
    assert free.ok and len(free.waypoints) == 2
    res = sc.plan(qa, qb, conditions=cond, seed=5)
    _assert_certified(sc, res, qa, qb, cond)
    assert len(res.waypoints) >= 3


@pytest.fixture(scope="module")
def dense_scene() -> Scene:
    arm = ArmConfig.model_validate(yaml.safe_load((CONFIG_DIR / "arm.yaml").read_text()))
    geo = GeometryConfig.model_validate(yaml.safe_load((CONFIG_DIR / "geometry.yaml").read_text()))
    return Scene.from_config(arm, dense_geometry(arm, geo, 256, seed=7))


def test_station_queries_on_a_dense_scene_are_certified(dense_scene):
    names = list(dense_scene.arm.poses)
    done = 0
    for a in names:
        for b in names:
            if a == b:
                continue
            qa, qb = _pose(dense_scene, a), _pose(dense_scene, b)
            res = dense_scene.plan(qa, qb, seed=1)
            _assert_certified(dense_scene, res, qa, qb)
            done += 1
    assert done == len(names) * (len(names) - 1)


def test_time_parameterise_in_c_matches_the_numpy_reference(scene):
    """The C timing passes give the same segment ends and the same samples (within 1e-12)
    as the NumPy reference on random paths, stretches, speed limits and joint limits."""
    from aseptic_cell.motion.planner import time_parameterise, time_parameterise_numpy

    rng = np.random.default_rng(17)
    for i in range(200):
        m = int(rng.integers(2, 6))
        w = rng.uniform(-1.5, 1.5, (m, 6)) * rng.uniform(0.01, 1.0)
        stretch = rng.uniform(1, 3, m - 1) if i % 2 else None
        limit = (0.25, 1.0, 0.1)[i % 3]
        kw = {"vmax": scene.limits[:, 2] * 0.5, "amax": scene.limits[:, 3] * 2} if i % 5 == 0 else {}
        dt = (0.02, 0.008)[i % 2]
        ref, ref_ends = time_parameterise_numpy(scene, w, dt, limit, stretch, **kw)
        got, got_ends = time_parameterise(scene, w, dt, limit, stretch, **kw)
        np.testing.assert_array_equal(got_ends, ref_ends)
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="finite"):
        time_parameterise(scene, np.array([[0.0] * 6, [np.nan] * 6]), 0.02, 0.25)
