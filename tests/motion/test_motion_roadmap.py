"""scene.plan on the lazy roadmap (src/roadmap.c): its edge memo changes times, never
results; colliding edges found on a candidate path are removed and the search runs
again; the RRT-Connect fallback and the refusals stay."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from aseptic_cell.config.robot import ArmConfig, Box, GeometryConfig
from aseptic_cell.motion import Scene, _ccheck
from aseptic_cell.motion import planner as P
from aseptic_cell.motion.scenes import dense_geometry

from .conftest import CONFIG_DIR
from .test_motion_planner import _assert_certified, _pose, _straight_collides


@pytest.fixture(scope="module")
def dense_scene() -> Scene:
    arm = ArmConfig.model_validate(yaml.safe_load((CONFIG_DIR / "arm.yaml").read_text()))
    geo = GeometryConfig.model_validate(yaml.safe_load((CONFIG_DIR / "geometry.yaml").read_text()))
    return Scene.from_config(arm, dense_geometry(arm, geo, 256, seed=7))


def _edges_free(sc: Scene, waypoints: np.ndarray, conditions=()) -> bool:
    """Every straight segment of the path free on the planning scene's fast path."""
    ps = P._planning_scene(sc, P.PLAN_BUFFER_M)
    act = ps._mask_arg(set(conditions))
    return all(_ccheck.motion_free(ps._capsule, a[None], b[None], act, P.PLAN_BUFFER_M)
               for a, b in zip(waypoints[:-1], waypoints[1:], strict=True))


def test_memo_changes_time_not_result(scene):
    """The same query cold (fresh roadmap), warm (memo filled by it and other queries)
    and after the cache is dropped gives the same path; a warm repeat checks no edge."""
    qa, qb = _pose(scene, "rtp_pick"), _pose(scene, "incubator_place")
    P.clear_roadmaps(scene)
    cold = scene.plan(qa, qb, seed=4)
    _assert_certified(scene, cold, qa, qb)
    assert cold.method == "roadmap" and cold.edges_checked > 0
    for a, b in (("park", "incubator_place"), ("incubator_approach", "rtp_pick")):
        scene.plan(_pose(scene, a), _pose(scene, b), seed=1)
    warm = scene.plan(qa, qb, seed=4)
    assert warm.edges_checked == 0  # (fewer searches too: known colliding edges are skipped)
    np.testing.assert_array_equal(warm.waypoints, cold.waypoints)
    np.testing.assert_array_equal(warm.samples, cold.samples)
    P.clear_roadmaps(scene)
    again = scene.plan(qa, qb, seed=4)
    np.testing.assert_array_equal(again.waypoints, cold.waypoints)


def test_colliding_edges_are_removed_and_searched_around(scene):
    """A keep-out placed on the path the roadmap returns without it: under its condition
    the first candidate path collides, the lazy search runs again (more than one round)
    and the result avoids the box, with every edge free and the trajectory certified."""
    qa, qb = _pose(scene, "rtp_pick"), _pose(scene, "incubator_place")
    base = scene.plan(qa, qb, seed=2)
    assert base.ok and base.method == "roadmap" and len(base.waypoints) >= 3
    # a box around the elbow at the first interior waypoint of that path
    q_mid = base.waypoints[1]
    c = scene.fk(q_mid).frames[3, :3, 3]
    box = Box(name="test_block", kind="keepout", active="container_open:test_block",
              center=(float(c[0]), float(c[1]), float(c[2])), half_extents=(0.05, 0.05, 0.05))
    sc = Scene.from_config(scene.arm, scene.geometry.model_copy(
        update={"boxes": [*scene.geometry.boxes, box]}))
    cond = {"container_open:test_block"}
    assert not sc.check_configs(q_mid[None], conditions=cond)[0]
    plain = sc.plan(qa, qb, seed=2)  # condition off: the same path as before
    np.testing.assert_array_equal(plain.waypoints, base.waypoints)
    res = sc.plan(qa, qb, conditions=cond, seed=2)
    _assert_certified(sc, res, qa, qb, cond)
    assert res.method == "roadmap" and res.iterations > 1
    assert not any(np.array_equal(w, q_mid) for w in res.waypoints)
    assert _edges_free(sc, res.waypoints, cond)
    assert not _edges_free(sc, base.waypoints, cond)


def test_roadmap_and_rrt_paths_are_certified_on_a_dense_scene(dense_scene):
    qa, qb = _pose(dense_scene, "park"), _pose(dense_scene, "incubator_place")
    assert _straight_collides(dense_scene, qa, qb)
    for rm in (True, False):
        res = dense_scene.plan(qa, qb, seed=3, roadmap=rm)
        _assert_certified(dense_scene, res, qa, qb)
        assert res.method == ("roadmap" if rm else "rrt")
        assert _edges_free(dense_scene, res.waypoints)


def test_fallback_and_refusals_with_the_roadmap(scene, monkeypatch):
    """No roadmap path (a search budget of zero rounds): RRT-Connect plans; with its budget
    exhausted too the refusal is no_path; endpoints in collision are refused first."""
    qa, qb = _pose(scene, "rtp_pick"), _pose(scene, "incubator_place")
    monkeypatch.setattr(P, "ROADMAP_ROUNDS", 0)
    res = scene.plan(qa, qb, seed=3)
    _assert_certified(scene, res, qa, qb)
    assert res.method == "rrt"
    r = scene.plan(qa, qb, max_samples=1)
    assert not r.ok and r.code == "no_path" and "budget" in r.reason
    monkeypatch.undo()
    bad = qa.copy()
    bad[1] = 0.3
    assert scene.plan(bad, qb).code == "start_in_collision"
    assert scene.plan(qa, bad).code == "goal_in_collision"


def test_roadmap_capsule_checks_its_scene_and_active_set(scene):
    ps = P._planning_scene(scene, P.PLAN_BUFFER_M)
    act = ps._mask_arg(None)
    rm = P._roadmap(ps, act)
    n, edges, _, _ = _ccheck.roadmap_info(rm)
    assert n == P.ROADMAP_VERTICES and edges >= n * P.ROADMAP_K // 2
    out = np.empty((64, 6))
    q = _pose(scene, "park")[None]
    other = P._planning_scene(scene, P.PLAN_BUFFER_M / 4)
    with pytest.raises(ValueError, match="another scene"):
        _ccheck.plan(other._capsule, q, q, act, 0, 10, 0, 0.01, 0.5, out, rm, 5)
    with pytest.raises(ValueError, match="active box set"):
        _ccheck.plan(ps._capsule, q, q, b"\x00" * len(act), 0, 10, 0, 0.01, 0.5, out, rm, 5)


@pytest.mark.parametrize("level", _ccheck.simd_levels())
def test_roadmap_per_simd_level_certified(scene, level):
    """Each SIMD level plans on its own roadmap (verdicts of its own fast path) and every
    path passes the certified check."""
    prev = _ccheck.simd_level()
    try:
        _ccheck.set_simd_level(level)
        qa, qb = _pose(scene, "incubator_approach"), _pose(scene, "rtp_pick")
        res = scene.plan(qa, qb, seed=6)
        _assert_certified(scene, res, qa, qb)
        assert res.method in ("straight", "roadmap")
        ps = P._planning_scene(scene, P.PLAN_BUFFER_M)
        assert (ps._mask_arg(None), level, P.ROADMAP_VERTICES) in ps.__dict__["_roadmaps"]
    finally:
        _ccheck.set_simd_level(prev)
