"""Fixtures for the motion-check tests (scene from the shipped config, samplers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aseptic_cell.motion import Scene, scene_from_files

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


@pytest.fixture(scope="session")
def scene() -> Scene:
    return scene_from_files(CONFIG_DIR)


def random_configs(rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniform configurations inside +-pi on every joint (within the elbow's limits)."""
    return rng.uniform(-np.pi, np.pi, (n, 6))


def near_contact_configs(scene: Scene, rng: np.random.Generator, n: int, iters: int = 40) -> np.ndarray:
    """Configurations on both sides of the collision boundary (clearance ~ margin).

    Bisects straight joint-space segments between exactly-free and exactly-colliding
    configurations; returns the last free and last colliding end of each, so about
    half are just inside and half just outside, within ~1e-12 rad of the boundary.
    """
    q = random_configs(rng, 8 * n)
    d = scene.clearance(q).distance
    free, col = q[d >= scene.margin], q[d < scene.margin]
    m = min(len(free), len(col), n // 2)
    a, b = free[:m].copy(), col[:m].copy()
    for _ in range(iters):
        mid = 0.5 * (a + b)
        ok = scene.clearance(mid).distance >= scene.margin
        a[ok] = mid[ok]
        b[~ok] = mid[~ok]
    return np.concatenate([a, b])
