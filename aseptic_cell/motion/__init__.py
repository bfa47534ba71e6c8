"""Arm motion safety: forward kinematics, collision and trajectory checks.

The hot path is the C extension :mod:`aseptic_cell.motion._ccheck` (float32 SIMD
fast path + double-precision exact path, GIL released); :mod:`.scene` is the
Python API over it and :mod:`.reference` a slow, readable numpy oracle for tests.
"""

from . import _ccheck
from .scene import (
    ClearanceResult,
    FKResult,
    Scene,
    TrajectoryCheck,
    as_joint_array,
    scene_from_files,
)


def simd_level() -> str:
    """SIMD level of the fast path in use: 'generic', 'avx2' or 'avx512'."""
    return _ccheck.simd_level()


__all__ = [
    "ClearanceResult",
    "FKResult",
    "Scene",
    "TrajectoryCheck",
    "as_joint_array",
    "scene_from_files",
    "simd_level",
]
