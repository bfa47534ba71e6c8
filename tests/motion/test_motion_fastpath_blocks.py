"""Fast path kernel structure: blocks of 16 configurations (partial last block), and the
culls (per-axis interval tests, bounding spheres) that only skip sphere tests which
miss -- the verdict must equal "within limits and no covering-sphere test hits",
computed here without any cull in numpy float32 with the kernel's arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from aseptic_cell.motion import _ccheck
from aseptic_cell.motion.scene import _f32_up

from .conftest import near_contact_configs, random_configs

BLOCK = 16


@pytest.fixture
def restore_simd():
    level = _ccheck.simd_level()
    yield
    _ccheck.set_simd_level(level)


def _sphere_verdict(scene, q: np.ndarray, mask: int) -> np.ndarray:
    """Free = within limits and no sphere of any link hits an active box or, for a
    self pair, a sphere of the other link (float32, same operation order as the kernel)."""
    f32 = np.float32
    frames = scene.fk(q).frames
    e0, dd = [], []
    for k in range(len(scene.link_names)):
        T = frames[:, scene.link_frame[k]]
        ends = []
        for v in (scene.link_p0[k], scene.link_p1[k]):
            a = T[:, :3, 3].copy()
            for c in range(3):
                if v[c] != 0.0:
                    a = a + T[:, :3, c] * v[c]
            ends.append(a.astype(f32))
        e0.append(ends[0])
        dd.append(ends[1] - ends[0])
    sph_t, r_env, r_self = (scene.spheres[:, i].astype(f32) for i in range(3))
    free = ((q >= scene.limits[:, 0]) & (q <= scene.limits[:, 1])).all(axis=1)
    for k in range(len(scene.link_names)):
        idx = np.flatnonzero(scene.sphere_link == k)
        boxes = int(scene.fast_box_mask[k]) & int(scene.link_box_mask[k]) & mask
        for b in range(len(scene.box_names)):
            if not (boxes >> b) & 1:
                continue
            bc = scene.box_center[b].astype(f32)
            ax = scene.box_R[b].astype(f32)
            h = np.array([_f32_up(x) for x in scene.box_half[b]], dtype=f32)
            aligned = bool((scene.box_R[b] == np.eye(3)).all())
            for s in idx:
                c = e0[k] + sph_t[s] * dd[k]
                d = c - bc
                if not aligned:
                    d = np.stack([ax[0, i] * d[:, 0] + ax[1, i] * d[:, 1] + ax[2, i] * d[:, 2]
                                  for i in range(3)], 1)
                e = np.maximum(np.abs(d) - h, f32(0))
                d2 = e[:, 0] * e[:, 0] + e[:, 1] * e[:, 1] + e[:, 2] * e[:, 2]
                free &= ~(d2 <= r_env[s] * r_env[s])
    for a, b, _ in scene.pairs:
        for sa in np.flatnonzero(scene.sphere_link == a):
            ca = e0[a] + sph_t[sa] * dd[a]
            for sb in np.flatnonzero(scene.sphere_link == b):
                d = ca - (e0[b] + sph_t[sb] * dd[b])
                d2 = d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] + d[:, 2] * d[:, 2]
                r = r_self[sa] + r_self[sb]
                free &= ~(d2 <= r * r)
    return free


@pytest.mark.parametrize("conditions", [None, "all"])
def test_culls_skip_only_missing_sphere_tests(scene, conditions, restore_simd):
    rng = np.random.default_rng(21)
    q = np.concatenate([random_configs(rng, 3000), near_contact_configs(scene, rng, 1000)])
    conds = set(scene.known_conditions) if conditions == "all" else None
    ref = _sphere_verdict(scene, q, scene._mask if conds is None else scene.mask_for(conds))
    assert 0 < ref.sum() < len(ref)
    for level in _ccheck.simd_levels():
        _ccheck.set_simd_level(level)
        np.testing.assert_array_equal(scene.check_configs(q, conditions=conds), ref, err_msg=level)


@pytest.mark.parametrize("n", [0, 1, 2, 15, 16, 17, 31, 33, 47])
def test_partial_blocks_match_full_batch(scene, n, restore_simd):
    """Any batch size gives the same verdicts as the same configurations in a large batch
    (the last block is padded internally; padding lanes never leak into results)."""
    rng = np.random.default_rng(22 + n)
    big = np.concatenate([random_configs(rng, 200), near_contact_configs(scene, rng, 100)])
    big[::7, 2] = 3.3  # some out of the elbow's limits
    for level in _ccheck.simd_levels():
        _ccheck.set_simd_level(level)
        whole = scene.check_configs(big)
        for start in (0, 5, 100, len(big) - n):
            part = np.ascontiguousarray(big[start : start + n])
            np.testing.assert_array_equal(scene.check_configs(part), whole[start : start + n], err_msg=level)


def test_batch_of_one_colliding_after_free_blocks(scene, restore_simd):
    """A lone colliding configuration in a partial block behind free ones is still caught."""
    rng = np.random.default_rng(23)
    q = random_configs(rng, 4000)
    d = scene.clearance(q).distance
    free, col = q[d >= scene.margin + 0.03], q[d < 0]
    batch = np.concatenate([free[: 2 * BLOCK], col[:1]])
    for level in _ccheck.simd_levels():
        _ccheck.set_simd_level(level)
        v = scene.check_configs(batch)
        assert not v[-1], level
        assert v[:-1].mean() > 0.9, level
