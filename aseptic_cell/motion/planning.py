"""Simple joint-space planning for robot tasks: minimum-jerk (quintic) segments timed to the
joint velocity/acceleration limits and stretched until the TCP respects its speed class.
The plan is only a proposal: every trajectory is proven by the collision/limit check before
it runs (:meth:`aseptic_cell.motion.Scene.check_trajectory`).
"""

from __future__ import annotations

import math

import numpy as np

# Minimum-jerk profile s(u) = 10u^3 - 15u^4 + 6u^5: peak ds/du = 15/8 at u = 1/2 and
# peak |d2s/du2| = 10/sqrt(3) at u = 1/2 -/+ sqrt(3)/6 (Flash & Hogan 1985).
_PEAK_VEL = 15.0 / 8.0
_PEAK_ACC = 10.0 / math.sqrt(3.0)


def min_jerk_duration(q0: np.ndarray, q1: np.ndarray, vmax: np.ndarray, amax: np.ndarray,
                      margin: float = 0.9) -> float:
    """Shortest duration of a min-jerk move q0 -> q1 within ``margin`` of the joint limits."""
    d = np.abs(np.asarray(q1, float) - np.asarray(q0, float))
    if not np.all(np.isfinite(d)):
        raise ValueError("joint positions must be finite")
    t_v = _PEAK_VEL * d / (margin * vmax)
    t_a = np.sqrt(_PEAK_ACC * d / (margin * amax))
    return float(max(np.max(t_v), np.max(t_a), 0.0))


def sample_min_jerk(q0: np.ndarray, q1: np.ndarray, duration_s: float, dt: float) -> np.ndarray:
    """Samples every ``dt`` of the min-jerk move (first = q0, last = q1); (N, 6) float64."""
    n = max(2, int(math.ceil(duration_s / dt)) + 1)
    u = np.linspace(0.0, 1.0, n)
    s = 10 * u**3 - 15 * u**4 + 6 * u**5
    q0 = np.asarray(q0, float)
    q1 = np.asarray(q1, float)
    return np.ascontiguousarray(q0[None, :] + s[:, None] * (q1 - q0)[None, :])


def plan_joint_move(scene, q0, q1, vmax, amax, *, speed_limit_m_s: float, dt: float = 0.02,
                    margin: float = 0.9, max_stretch: int = 12) -> tuple[np.ndarray, float]:
    """Plan q0 -> q1: returns (samples, dt). Stretches the duration until the chordal TCP
    speed stays below ``margin * speed_limit_m_s``; the caller still checks the result."""
    duration = max(min_jerk_duration(q0, q1, np.asarray(vmax), np.asarray(amax), margin), 4 * dt)
    for _ in range(max_stretch):
        q = sample_min_jerk(q0, q1, duration, dt)
        dt_eff = duration / (len(q) - 1)
        tcp = scene.fk(q).tcp
        speed = np.linalg.norm(np.diff(tcp, axis=0), axis=1) / dt_eff
        peak = float(speed.max()) if len(speed) else 0.0
        if peak <= margin * speed_limit_m_s:
            return q, dt_eff
        duration *= max(1.05, peak / (margin * speed_limit_m_s))
    q = sample_min_jerk(q0, q1, duration, dt)
    return q, duration / (len(q) - 1)
