"""Scenes of any practical size: no 64-box cap, the BVH broad phase, and the conservative
guarantee on every SIMD level and both broad phases, against the exact path and coal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from aseptic_cell.config.robot import ArmConfig, Box, GeometryConfig
from aseptic_cell.motion import Scene, _ccheck, scene_from_files
from aseptic_cell.motion import reference as ref
from aseptic_cell.motion.scenes import dense_geometry

from .conftest import CONFIG_DIR, random_configs


@pytest.fixture(scope="module")
def arm() -> ArmConfig:
    return ArmConfig.model_validate(yaml.safe_load((CONFIG_DIR / "arm.yaml").read_text()))


@pytest.fixture(scope="module")
def base_geometry() -> GeometryConfig:
    return GeometryConfig.model_validate(yaml.safe_load((CONFIG_DIR / "geometry.yaml").read_text()))


@pytest.fixture(scope="module")
def dense(arm, base_geometry) -> Scene:
    return Scene.from_config(arm, dense_geometry(arm, base_geometry, 160, seed=3))


@pytest.fixture
def restore_simd():
    level = _ccheck.simd_level()
    yield
    _ccheck.set_simd_level(level)


def _v3(v: object) -> tuple[float, float, float]:
    a, b, c = (float(x) for x in np.asarray(v, dtype=float))
    return (a, b, c)


def _random_box_geometry(rng: np.random.Generator, n: int, base: GeometryConfig,
                         size: tuple[float, float] = (0.01, 0.08)) -> GeometryConfig:
    """n random boxes (a third of them oriented) in the arm's reach, plus the floor."""
    boxes = [base.boxes[0]]
    for i in range(n):
        rpy = _v3(rng.uniform(-np.pi, np.pi, 3)) if i % 3 == 0 else (0.0, 0.0, 0.0)
        c = rng.uniform([-0.9, -0.9, 0.0], [0.9, 0.9, 1.2])
        if np.hypot(c[0], c[1]) < 0.25 and c[2] < 0.4:  # not on the base
            c[0] += 0.5
        boxes.append(Box(name=f"b{i}", kind="equipment", center=_v3(c),
                         half_extents=_v3(rng.uniform(*size, 3)), rpy=rpy))
    return GeometryConfig(interior=base.interior, boxes=boxes, near_product_zones=base.near_product_zones)


def test_scene_from_files_loads_more_than_a_thousand_boxes(tmp_path: Path, arm, base_geometry):
    geom = _random_box_geometry(np.random.default_rng(1), 1100, base_geometry, size=(0.004, 0.012))
    (tmp_path / "arm.yaml").write_text((CONFIG_DIR / "arm.yaml").read_text())
    (tmp_path / "geometry.yaml").write_text(yaml.safe_dump(geom.model_dump(mode="json")))
    scene = scene_from_files(tmp_path)
    assert len(scene.box_names) == 1101
    rng = np.random.default_rng(0)
    q = random_configs(rng, 3000)
    fast = scene.check_configs(q)
    exact = scene.clearance(q)
    assert not (fast & (exact.distance < scene.margin)).any()
    assert fast.sum() > 0
    # boxes far down the list decide some verdicts (nothing is silently dropped)
    assert (np.array([scene.box_names.index(n) for n in exact.other if n.startswith("b")]) > 1000).any()
    assert _ccheck.set_broad_phase(scene._capsule, "bvh") == "bvh"  # a scene this size uses the BVH


def test_box_beyond_64_is_seen(arm, base_geometry):
    """A box with index > 64 that the arm touches at park makes park collide (no silent
    truncation of the box set)."""
    geom = dense_geometry(arm, base_geometry, 100, seed=2)
    park = np.array([arm.poses["park"]])
    tcp = Scene.from_config(arm, geom).fk(park[0]).tcp
    extra = Box(name="on_the_tool", kind="keepout", center=_v3(tcp),
                half_extents=(0.02, 0.02, 0.02))
    scene = Scene.from_config(arm, GeometryConfig(interior=geom.interior, boxes=[*geom.boxes, extra],
                                                  near_product_zones=geom.near_product_zones))
    assert len(scene.box_names) == 101
    assert not scene.check_configs(park)[0]
    res = scene.clearance(park)
    assert res.other[0] == "on_the_tool" and res.distance[0] < scene.margin


@pytest.mark.parametrize("level", _ccheck.simd_levels())
def test_dense_scene_conservative_on_every_level_and_broad_phase(dense, level, restore_simd):
    _ccheck.set_simd_level(level)
    rng = np.random.default_rng(21)
    q = random_configs(rng, 6000)
    d = dense.clearance(q).distance
    # near-contact configurations: bisect between free and colliding ones on the exact path
    free, col = q[d >= dense.margin][:400], q[d < dense.margin][:400]
    m = min(len(free), len(col))
    a, b = free[:m].copy(), col[:m].copy()
    for _ in range(40):
        mid = 0.5 * (a + b)
        ok = dense.clearance(mid).distance >= dense.margin
        a[ok], b[~ok] = mid[ok], mid[~ok]
    q = np.concatenate([q, a, b])
    exact = dense.clearance(q).distance
    verdicts = {}
    for mode in ("bvh", "flat"):
        prev = _ccheck.set_broad_phase(dense._capsule, mode)
        try:
            fast = dense.check_configs(q)
            exact_mode = dense.clearance(q).distance
        finally:
            _ccheck.set_broad_phase(dense._capsule, prev)
        np.testing.assert_array_equal(exact_mode, exact)  # exact path: same minimum either way
        assert not (fast & (exact < dense.margin)).any(), mode
        verdicts[mode] = fast
    np.testing.assert_array_equal(verdicts["bvh"], verdicts["flat"])
    clear = exact >= dense.margin + 0.03
    assert clear.sum() > 100 and verdicts["bvh"][clear].mean() > 0.97


def test_exact_path_flat_and_bvh_agree_exactly(arm, base_geometry):
    """Up to 128 boxes the exact path bounds every box with SIMD and visits the nearest first
    (no BVH): the same minimum clearance and closest pair as the BVH, bit for bit, and the
    same as the pure-Python reference."""
    scene = Scene.from_config(arm, dense_geometry(arm, base_geometry, 100, seed=4))
    rng = np.random.default_rng(23)
    q = random_configs(rng, 3000)
    assert _ccheck.set_broad_phase(scene._capsule, "auto") == "auto"  # fast path BVH, exact path flat
    flat = scene.clearance(q)
    prev = _ccheck.set_broad_phase(scene._capsule, "bvh")
    try:
        bvh = scene.clearance(q)
    finally:
        _ccheck.set_broad_phase(scene._capsule, prev)
    np.testing.assert_array_equal(flat.distance, bvh.distance)
    # the closest pair too, except on exact ties (a link passing through several boxes is at
    # clearance -radius from each of them; which one is named depends on the visit order)
    differ = [i for i in range(len(q)) if (flat.link[i], flat.other[i]) != (bvh.link[i], bvh.other[i])]
    assert len(differ) < 0.05 * len(q)
    assert all(flat.distance[i] < 0.0 and flat.link[i] == bvh.link[i] for i in differ)
    want, _ = ref.clearance(scene.arm, scene.geometry, q[:4])  # slow (pure Python): a few
    np.testing.assert_allclose(flat.distance[:4], want, atol=1e-6)


def test_identical_verdicts_across_levels_on_dense_scene(dense, restore_simd):
    rng = np.random.default_rng(22)
    q = random_configs(rng, 5000)
    got = {}
    for level in _ccheck.simd_levels():
        _ccheck.set_simd_level(level)
        got[level] = dense.check_configs(q).copy()
    for level, v in got.items():
        np.testing.assert_array_equal(v, got["generic"], err_msg=level)
    assert 0 < got["generic"].sum() < len(q)


def _coal_collides(coal, scene: Scene, geom: GeometryConfig, q: np.ndarray) -> np.ndarray:
    """coal's verdict: some link capsule inflated by the margin intersects a box, or a
    self pair's capsules inflated by half the margin each intersect."""
    margin = scene.margin
    allowed = {tuple(p) for p in scene.arm.allowed_contacts}
    links = scene.arm.links
    objs = []
    for b in geom.boxes:
        objs.append((b.name, coal.CollisionObject(
            coal.Box(*(2 * np.asarray(b.half_extents))),
            coal.Transform3s(ref.rpy_matrix(b.rpy), np.asarray(b.center, dtype=float)))))
    req = coal.CollisionRequest()
    frames = ref.fk(scene.arm, q)
    e0s, e1s = ref.link_segments(scene.arm, frames)
    idx = {lk.name: i for i, lk in enumerate(links)}
    out = np.zeros(len(q), dtype=bool)

    def capsule(k: int, i: int, r: float):
        e0, e1 = e0s[i, k], e1s[i, k]
        z = (e1 - e0) / np.linalg.norm(e1 - e0)
        x = np.cross(z, [1.0, 0.0, 0.0] if abs(z[0]) < 0.9 else [0.0, 1.0, 0.0])
        x /= np.linalg.norm(x)
        R = np.stack([x, np.cross(z, x), z], axis=1)
        return coal.CollisionObject(coal.Capsule(r, float(np.linalg.norm(e1 - e0))),
                                    coal.Transform3s(R, 0.5 * (e0 + e1)))

    for i in range(len(q)):
        hit = False
        for k, lk in enumerate(links):
            cap = capsule(k, i, lk.radius + margin)
            for name, o in objs:
                if (lk.name, name) in allowed:
                    continue
                res = coal.CollisionResult()
                if coal.collide(cap, o, req, res):
                    hit = True
                    break
            if hit:
                break
        for la, lb in scene.arm.self_collision_pairs:
            if hit:
                break
            ka, kb = idx[la], idx[lb]
            res = coal.CollisionResult()
            hit = coal.collide(capsule(ka, i, links[ka].radius + 0.5 * margin),
                               capsule(kb, i, links[kb].radius + 0.5 * margin), req, res)
        out[i] = hit
    return out


@pytest.mark.parametrize("seed", [31, 32])
def test_never_free_when_coal_finds_a_collision(arm, base_geometry, seed, restore_simd):
    """Random scenes (80 boxes, a third oriented; BVH forced): coal is the oracle."""
    import coal

    rng = np.random.default_rng(seed)
    geom = _random_box_geometry(rng, 80, base_geometry)
    scene = Scene.from_config(arm, geom)
    _ccheck.set_broad_phase(scene._capsule, "bvh")
    q = random_configs(rng, 1500)
    d = scene.clearance(q).distance
    # plus configurations near the boundary (by the exact path; coal decides the verdict)
    free, col = q[d >= scene.margin][:60], q[d < scene.margin][:60]
    m = min(len(free), len(col))
    a, b = free[:m].copy(), col[:m].copy()
    for _ in range(30):
        mid = 0.5 * (a + b)
        ok = scene.clearance(mid).distance >= scene.margin
        a[ok], b[~ok] = mid[ok], mid[~ok]
    sample = np.concatenate([q[:100], a[:40], b[:40]])
    coal_hit = _coal_collides(coal, scene, geom, sample)
    assert coal_hit.sum() > 40 and (~coal_hit).sum() > 20
    for level in _ccheck.simd_levels():
        _ccheck.set_simd_level(level)
        fast = scene.check_configs(sample)
        assert not (fast & coal_hit).any(), (level, sample[fast & coal_hit][:2])
