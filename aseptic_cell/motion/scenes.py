"""Generated denser scenes (benchmarks and tests): the shipped isolator plus racks of
small containers along the walls and on the tray, as a cell holding many patients'
containers would have. The named poses stay collision-free (boxes that would touch
the arm at any of them, with the safety margin and a clearance reserve, are not
placed), so station-to-station queries remain meaningful.
"""

from __future__ import annotations

import numpy as np

from aseptic_cell.config.robot import ArmConfig, Box, GeometryConfig

from . import reference as ref

#: Clearance kept between generated boxes and the arm at every named pose (m).
POSE_RESERVE_M = 0.05


def _pose_segments(arm: ArmConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Link segments (S, 3), (S, 3) and radii (S,) of the arm at every named pose."""
    qs = np.array(list(arm.poses.values()), dtype=np.float64)
    e0, e1 = ref.link_segments(arm, ref.fk(arm, qs))
    radii = np.tile([float(lk.radius) for lk in arm.links], len(qs))
    return e0.reshape(-1, 3), e1.reshape(-1, 3), radii


def _touches_poses(segs: tuple[np.ndarray, np.ndarray, np.ndarray], c: np.ndarray, R: np.ndarray,
                   h: np.ndarray, margin: float) -> bool:
    a, b, r = segs
    # the box lies within |h| of its centre: segments farther than that need no exact test
    near = ref.point_segment_distance(c, a, b) - float(np.linalg.norm(h)) - r < margin
    if not near.any():
        return False
    d = ref.segment_box_distance(a[near], b[near], c, R, h) - r[near]
    return bool((d < margin).any())


def dense_geometry(arm: ArmConfig, base: GeometryConfig, n_boxes: int, *, seed: int = 0) -> GeometryConfig:
    """``base`` plus generated boxes up to ``n_boxes`` boxes in total (deterministic per seed).

    Generated boxes: containers of 15-60 mm half extent in racks within 0.3 m of the
    side, front and back walls at any height, or on the tray (z < 0.2 m) outside
    0.3 m of the arm's axis; every tenth rack turned about z (an oriented box).
    """
    if n_boxes < len(base.boxes):
        raise ValueError(f"n_boxes {n_boxes} is below the base scene's {len(base.boxes)} boxes")
    rng = np.random.default_rng(seed)
    lo = np.array(base.interior.min, dtype=np.float64)
    hi = np.array(base.interior.max, dtype=np.float64)
    segs = _pose_segments(arm)
    margin = float(arm.safety_margin_m) + POSE_RESERVE_M
    boxes = list(base.boxes)
    tries = 0
    while len(boxes) < n_boxes:
        tries += 1
        if tries > 200 * n_boxes:
            raise RuntimeError("could not place the requested number of boxes")
        h = rng.uniform(0.015, 0.06, 3)
        c = rng.uniform(lo + h, hi - h)
        near_wall = (
            c[0] < lo[0] + 0.3 or c[0] > hi[0] - 0.3 or c[1] < lo[1] + 0.3 or c[1] > hi[1] - 0.3
        )
        on_tray = c[2] < 0.2 and float(np.hypot(c[0], c[1])) > 0.3
        if not (near_wall or on_tray):
            continue
        i = len(boxes)
        yaw = float(rng.uniform(-0.6, 0.6)) if i % 10 == 0 else 0.0
        R = ref.rpy_matrix((0.0, 0.0, yaw))
        if _touches_poses(segs, c, R, h, margin):
            continue
        boxes.append(
            Box(
                name=f"rack_item_{i}",
                kind="equipment",
                center=(float(c[0]), float(c[1]), float(c[2])),
                half_extents=(float(h[0]), float(h[1]), float(h[2])),
                rpy=(0.0, 0.0, yaw),
            )
        )
    return GeometryConfig(interior=base.interior, boxes=boxes, near_product_zones=base.near_product_zones)
