"""Float32 SIMD fast path: never calls a colliding configuration free; same verdicts on
every SIMD level; scene selection by conditions; shipped poses."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from aseptic_cell.motion import _ccheck, simd_level

from .conftest import near_contact_configs, random_configs


@pytest.fixture
def restore_simd():
    level = _ccheck.simd_level()
    yield
    _ccheck.set_simd_level(level)


def _assert_conservative(scene, q, conditions=None):
    fast = scene.check_configs(q, conditions=conditions)
    exact = scene.clearance(q, conditions=conditions).distance
    in_limits = ((q >= scene.limits[:, 0]) & (q <= scene.limits[:, 1])).all(axis=1)
    unsafe = fast & ((exact < scene.margin) | ~in_limits)
    assert not unsafe.any(), f"fast path called colliding configs free: {q[unsafe][:3]}"
    return fast, exact


@pytest.mark.parametrize("level", _ccheck.simd_levels())
def test_fast_path_never_frees_a_collision(scene, level, restore_simd):
    _ccheck.set_simd_level(level)
    rng = np.random.default_rng(10)
    q = np.concatenate([random_configs(rng, 20000), near_contact_configs(scene, rng, 2000)])
    fast, exact = _assert_conservative(scene, q)
    # ...and it is useful: nearly every config with real clearance is accepted
    clear = exact >= scene.margin + 0.03
    assert clear.sum() > 1000
    assert fast[clear].mean() > 0.97


def test_fast_path_conservative_with_all_keepouts_active(scene):
    rng = np.random.default_rng(11)
    conds = set(scene.known_conditions)
    q = random_configs(rng, 5000)
    fast, exact = _assert_conservative(scene, q, conds)
    assert (exact < scene.margin).sum() > 0 and fast.sum() > 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arrays(np.float64, (64, 6), elements=st.floats(-np.pi, np.pi, allow_nan=False)))
def test_fast_path_property(scene, q):
    _assert_conservative(scene, q)


def test_simd_levels_identical_verdicts(scene, restore_simd):
    rng = np.random.default_rng(12)
    q = np.concatenate([random_configs(rng, 20000), near_contact_configs(scene, rng, 2000)])
    verdicts = {}
    for level in _ccheck.simd_levels():
        _ccheck.set_simd_level(level)
        verdicts[level] = scene.check_configs(q).copy()
    base = verdicts["generic"]
    assert 0 < base.sum() < len(base)
    for level, v in verdicts.items():
        np.testing.assert_array_equal(v, base, err_msg=level)


def test_simd_env_var_forces_lower_level():
    env = dict(os.environ, ASEPTIC_CELL_SIMD="generic")
    out = subprocess.run(
        [sys.executable, "-c", "from aseptic_cell.motion import simd_level; print(simd_level())"],
        env=env, capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == "generic"


def test_simd_level_reported_and_unsupported_level_refused(restore_simd):
    levels = _ccheck.simd_levels()
    assert levels[0] == "generic" and simd_level() in levels
    with pytest.raises(ValueError):
        _ccheck.set_simd_level("sse9")
    if "avx512" not in levels:
        with pytest.raises(ValueError):
            _ccheck.set_simd_level("avx512")


def test_fast_path_rejects_out_of_limit_configs(scene):
    q = np.array([scene.arm.poses["park"]] * 2)
    q[1, 2] = 3.3  # elbow beyond +-pi
    assert scene.check_configs(q).tolist() == [True, False]
    assert scene.check_configs(q, refine=True).tolist() == [True, False]


def test_refine_gives_exact_verdict(scene):
    rng = np.random.default_rng(13)
    q = near_contact_configs(scene, rng, 400)
    exact = scene.clearance(q).distance >= scene.margin
    np.testing.assert_array_equal(scene.check_configs(q, refine=True), exact)


def test_shipped_poses_are_collision_free(scene):
    names = list(scene.arm.poses)
    assert {"park", "decon"} <= set(names)
    q = np.array([scene.arm.poses[n] for n in names])
    res = scene.clearance(q)
    bad = [(n, d, a, b) for n, d, a, b in zip(names, res.distance, res.link, res.other, strict=True)
           if d < scene.margin]
    assert not bad, f"named poses in collision: {bad}"
    assert scene.check_configs(q, refine=True).all()
    park_decon = np.array([scene.arm.poses["park"], scene.arm.poses["decon"]])
    assert scene.check_configs(park_decon).all()  # they pass even the conservative fast path


def test_conditional_keepout_selected_per_call(scene):
    """A configuration inside only the GP1 glove reach envelope is free unless GP1 is in use."""
    rng = np.random.default_rng(14)
    q = random_configs(rng, 20000)
    base_free = scene.clearance(q).distance >= scene.margin
    with_glove = scene.clearance(q, conditions={"glove_in_use:GP1"})
    hit = base_free & (with_glove.distance < scene.margin)
    assert hit.any()
    i = int(np.flatnonzero(hit)[0])
    assert with_glove.other[i] == "glove_gp1_reach"
    qi = q[i : i + 1]
    assert scene.check_configs(qi)[0]
    assert not scene.check_configs(qi, conditions={"glove_in_use:GP1"})[0]
    scene.set_active({"glove_in_use:GP1"})
    try:
        assert "glove_gp1_reach" in scene.active_boxes
        assert not scene.check_configs(qi)[0]
    finally:
        scene.set_active(set())
    assert scene.check_configs(qi)[0]


def test_allowed_contact_base_floor_is_not_reported(scene):
    q = np.array([scene.arm.poses["park"]])
    res = scene.clearance(q)
    assert (res.link[0], res.other[0]) != ("base", "floor")  # base touches the floor by design


def test_conditions_are_validated(scene):
    with pytest.raises(ValueError):
        scene.set_active({"glove_in_use"})
    with pytest.raises(ValueError):
        scene.set_active({"door_closed:no_such_door"})
    scene.set_active({"door_closed:no_such_door"}, strict=False)
    scene.set_active(set())
