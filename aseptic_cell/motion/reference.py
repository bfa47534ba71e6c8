"""Slow, readable numpy reference of the motion checks -- the test oracle.

Independent of the C extension and of :class:`~aseptic_cell.motion.scene.Scene`'s
preprocessing: it reads the configuration models directly and uses different
algorithms where it can (distance minimisation by golden-section search on convex
one-dimensional functions instead of closed forms).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from aseptic_cell.config.robot import ArmConfig, GeometryConfig

_GOLDEN_ITERS = 90  # 0.618^90 ~ 1.6e-19 of the unit interval


def rpy_matrix(rpy: Iterable[float]) -> np.ndarray:
    """R = Rz(yaw) @ Ry(pitch) @ Rx(roll)."""
    r, p, y = rpy
    rx = np.array([[1, 0, 0], [0, math.cos(r), -math.sin(r)], [0, math.sin(r), math.cos(r)]])
    ry = np.array([[math.cos(p), 0, math.sin(p)], [0, 1, 0], [-math.sin(p), 0, math.cos(p)]])
    rz = np.array([[math.cos(y), -math.sin(y), 0], [math.sin(y), math.cos(y), 0], [0, 0, 1]])
    return rz @ ry @ rx


def dh_matrix(theta: np.ndarray, a: float, d: float, alpha: float) -> np.ndarray:
    """(N, 4, 4) standard DH transform Rz(theta) Tz(d) Tx(a) Rx(alpha)."""
    n = theta.shape[0]
    ct, st = np.cos(theta), np.sin(theta)
    ca, sa = math.cos(alpha), math.sin(alpha)
    T = np.zeros((n, 4, 4))
    T[:, 0, 0], T[:, 0, 1], T[:, 0, 2], T[:, 0, 3] = ct, -st * ca, st * sa, a * ct
    T[:, 1, 0], T[:, 1, 1], T[:, 1, 2], T[:, 1, 3] = st, ct * ca, -ct * sa, a * st
    T[:, 2, 1], T[:, 2, 2], T[:, 2, 3] = sa, ca, d
    T[:, 3, 3] = 1.0
    return T


def fk(arm: ArmConfig, q: np.ndarray) -> np.ndarray:
    """(N, 7, 4, 4): frame 0 = base in the isolator frame, frame k after joint k."""
    q = np.atleast_2d(q)
    base = np.eye(4)
    base[:3, :3] = rpy_matrix(arm.base.rpy)
    base[:3, 3] = arm.base.xyz
    frames = np.empty((q.shape[0], 7, 4, 4))
    frames[:, 0] = base
    for k, row in enumerate(arm.dh):
        frames[:, k + 1] = frames[:, k] @ dh_matrix(q[:, k], row.a, row.d, row.alpha)
    return frames


def link_segments(arm: ArmConfig, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World end points (N, L, 3) of every link capsule's segment."""
    e0 = np.empty((frames.shape[0], len(arm.links), 3))
    e1 = np.empty_like(e0)
    for k, link in enumerate(arm.links):
        T = frames[:, link.frame]
        e0[:, k] = T[:, :3, :3] @ np.asarray(link.p0) + T[:, :3, 3]
        e1[:, k] = T[:, :3, :3] @ np.asarray(link.p1) + T[:, :3, 3]
    return e0, e1


def point_box_distance(p: np.ndarray, c: np.ndarray, R: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Distance from points p (..., 3) to oriented boxes (center c, axes = columns of R, half extents h)."""
    local = np.einsum("...ji,...j->...i", R, p - c)
    excess = np.maximum(np.abs(local) - h, 0.0)
    return np.linalg.norm(excess, axis=-1)


def point_segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from points p to segments a-b (closed form projection, clamped)."""
    u = b - a
    uu = np.einsum("...i,...i->...", u, u)
    t = np.where(uu > 0, np.einsum("...i,...i->...", p - a, u) / np.where(uu > 0, uu, 1.0), 0.0)
    t = np.clip(t, 0.0, 1.0)
    return np.linalg.norm(p - (a + t[..., None] * u), axis=-1)


def _golden_min(f, shape: tuple[int, ...]) -> np.ndarray:
    """Minimum over t in [0, 1] of a convex f(t) (vectorised), endpoints included."""
    invphi = (math.sqrt(5.0) - 1.0) / 2.0
    lo, hi = np.zeros(shape), np.ones(shape)
    x1, x2 = hi - invphi * (hi - lo), lo + invphi * (hi - lo)
    f1, f2 = f(x1), f(x2)
    for _ in range(_GOLDEN_ITERS):
        left = f1 <= f2  # minimum in [lo, x2]
        hi = np.where(left, x2, hi)
        lo = np.where(left, lo, x1)
        nx1 = hi - invphi * (hi - lo)
        nx2 = lo + invphi * (hi - lo)
        # re-evaluate both points (simpler than reusing one; this is the oracle)
        x1, x2 = nx1, nx2
        f1, f2 = f(x1), f(x2)
    best = np.minimum(f1, f2)
    return np.minimum(best, np.minimum(f(np.zeros(shape)), f(np.ones(shape))))


def segment_box_distance(e0, e1, c, R, h) -> np.ndarray:
    """Distance between segments e0-e1 and oriented boxes; distance to a convex set is
    convex along a segment, so a golden-section search finds the minimum."""
    e0, e1 = np.asarray(e0, float), np.asarray(e1, float)
    shape = np.broadcast_shapes(e0.shape, e1.shape, np.shape(c))[:-1]

    def f(t):
        return point_box_distance(e0 + t[..., None] * (e1 - e0), c, R, h)

    return _golden_min(f, shape)


def segment_segment_distance(p0, p1, q0, q1) -> np.ndarray:
    """Distance between segments: min over s of the (convex) distance from P(s) to segment Q."""
    p0, p1, q0, q1 = (np.asarray(v, float) for v in (p0, p1, q0, q1))
    shape = np.broadcast_shapes(p0.shape, p1.shape, q0.shape, q1.shape)[:-1]

    def f(s):
        return point_segment_distance(p0 + s[..., None] * (p1 - p0), q0, q1)

    return _golden_min(f, shape)


def active_boxes(geom: GeometryConfig, conditions: Iterable[str] = ()) -> list[int]:
    conds = set(conditions)
    return [i for i, b in enumerate(geom.boxes) if b.active == "always" or b.active in conds]


def clearance(
    arm: ArmConfig, geom: GeometryConfig, q: np.ndarray, conditions: Iterable[str] = ()
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Minimum clearance (segment distance minus radii) over all checked pairs, and the
    closest pair, for each configuration in q (N, 6)."""
    q = np.atleast_2d(np.asarray(q, float))
    frames = fk(arm, q)
    e0, e1 = link_segments(arm, frames)
    allowed = {(a, b) for a, b in arm.allowed_contacts} | {(b, a) for a, b in arm.allowed_contacts}
    names, cols = [], []
    for bi in active_boxes(geom, conditions):
        box = geom.boxes[bi]
        c, R, h = np.asarray(box.center), rpy_matrix(box.rpy), np.asarray(box.half_extents)
        for k, link in enumerate(arm.links):
            if (link.name, box.name) in allowed:
                continue
            cols.append(segment_box_distance(e0[:, k], e1[:, k], c, R, h) - link.radius)
            names.append((link.name, box.name))
    index = {lk.name: i for i, lk in enumerate(arm.links)}
    for a, b in arm.self_collision_pairs:
        if (a, b) in allowed:
            continue
        ia, ib = index[a], index[b]
        d = segment_segment_distance(e0[:, ia], e1[:, ia], e0[:, ib], e1[:, ib])
        cols.append(d - arm.links[ia].radius - arm.links[ib].radius)
        names.append((a, b))
    table = np.stack(cols, axis=1)
    best = np.argmin(table, axis=1)
    return table[np.arange(q.shape[0]), best], [names[i] for i in best]


def limit_violations(arm: ArmConfig, q: np.ndarray, dt: float) -> list[tuple[int, str, int]]:
    """All (sample index, 'position'|'velocity'|'acceleration', joint) violations, in order."""
    q = np.asarray(q, float)
    out = []
    lo = np.array([j.min for j in arm.joints])
    hi = np.array([j.max for j in arm.joints])
    vmax = np.array([j.max_velocity for j in arm.joints])
    amax = np.array([j.max_acceleration for j in arm.joints])
    for i in range(q.shape[0]):
        for j in np.flatnonzero((q[i] < lo) | (q[i] > hi)):
            out.append((i, "position", int(j)))
        if i >= 1:
            for j in np.flatnonzero(np.abs((q[i] - q[i - 1]) / dt) > vmax):
                out.append((i, "velocity", int(j)))
        if 1 <= i < q.shape[0] - 1:
            for j in np.flatnonzero(np.abs((q[i + 1] - 2 * q[i] + q[i - 1]) / dt**2) > amax):
                out.append((i, "acceleration", int(j)))
    return out
