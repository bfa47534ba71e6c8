"""Number formatting and small geometry helpers shared by the asset writers."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np


def num(x: float) -> str:
    """A float as text that reads back as exactly the same double.

    ``repr`` gives the shortest round-trip form (up to 17 significant digits), so no digit
    is lost: the assets' kinematics equal the DH table to the last bit of the input.
    """
    v = float(x)
    if not math.isfinite(v):
        raise ValueError(f"non-finite number in an asset: {x!r}")
    if v == 0.0:
        return "0"  # also turns -0.0 into 0
    return repr(v)


def nums(xs: Iterable[float]) -> str:
    return " ".join(num(x) for x in xs)


def rpy_from_matrix(r: np.ndarray) -> tuple[float, float, float]:
    """URDF/SDF roll-pitch-yaw of a rotation matrix (R = Rz(yaw) Ry(pitch) Rx(roll))."""
    pitch = math.atan2(-r[2, 0], math.hypot(r[0, 0], r[1, 0]))
    if abs(math.cos(pitch)) < 1e-12:  # gimbal lock: put everything in yaw
        return 0.0, pitch, math.atan2(-r[0, 1], r[1, 1])
    return math.atan2(r[2, 1], r[2, 2]), pitch, math.atan2(r[1, 0], r[0, 0])


def rpy_matrix(rpy: Sequence[float]) -> np.ndarray:
    r, p, y = (float(v) for v in rpy)
    cr, sr, cp, sp, cy, sy = math.cos(r), math.sin(r), math.cos(p), math.sin(p), math.cos(y), math.sin(y)
    return np.array([
        [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
        [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
        [-sp, cp * sr, cp * cr],
    ])


def z_to(direction: np.ndarray) -> np.ndarray:
    """A rotation taking +z onto ``direction`` (unit or not, non-zero)."""
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    z = np.array([0.0, 0.0, 1.0])
    c = float(np.dot(z, d))
    if c > 1.0 - 1e-15:
        return np.eye(3)
    if c < -1.0 + 1e-15:
        return np.diag([1.0, -1.0, -1.0])  # half turn about x
    v = np.cross(z, d)
    s = float(np.linalg.norm(v))
    k = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + k + k @ k * ((1.0 - c) / (s * s))
