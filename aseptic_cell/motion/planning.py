"""Joint-space motion for robot tasks.

* :func:`plan_joint_move` -- a straight minimum-jerk (quintic) move timed to the joint
  velocity/acceleration limits and stretched until the TCP respects its speed class. A
  proposal only: every trajectory is proven by the certified check before it runs
  (:meth:`aseptic_cell.motion.Scene.check_trajectory`).
* :func:`plan_pose_move` -- the run-time entry point for a move to a named pose: the
  straight move if it is certified free, otherwise the QA-approved path of the motion
  library (:mod:`.library`) re-certified against the live keep-outs; else a refusal.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .library import MotionLibrary

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


class MotionRefused(Exception):
    """A move that cannot be proven safe. ``code`` is one of :data:`REFUSAL_CODES`."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


#: UNKNOWN_POSE: not a named pose of arm.yaml; NO_CELL_STATE: keep-out conditions unknown
#: (``conditions=None``); INVALID: bad q0 / limits arguments; LIMIT / SPEED: the straight
#: move breaks a joint limit or the TCP speed class; NO_APPROVED_PATH: the straight move
#: collides and no approved, unchanged library path ends at the pose; PATH_REFUSED: the
#: approved path (or the lead-in to its start) fails the certified check now.
REFUSAL_CODES = (
    "UNKNOWN_POSE", "NO_CELL_STATE", "INVALID", "LIMIT", "SPEED", "NO_APPROVED_PATH", "PATH_REFUSED",
)


def plan_pose_move(scene: Any, library: MotionLibrary | None, q0: Any, to_pose: str, vmax: Any, amax: Any, *,
                   speed_limit_m_s: float, dt: float = 0.02, conditions: Iterable[str] | None,
                   speed_class: str = "transit") -> tuple[np.ndarray, float]:
    """Plan the move of the arm from ``q0`` to the named pose ``to_pose``.

    1. The straight minimum-jerk move (:func:`plan_joint_move`), certified against
       ``conditions`` with ``speed_class``: returned if it passes.
    2. If it collides: among the library's paths ending at ``to_pose`` that are approved
       and unchanged (hash), the one whose start pose is nearest to ``q0`` (max joint
       difference); the move is q0 -> its waypoints (q0 replaces the start waypoint
       when within arm.yaml's ``pose_tolerance_rad`` of it, else a straight lead-in to it),
       rest-to-rest minimum-jerk segments within ``vmax``/``amax`` and
       ``speed_limit_m_s``, and is certified against the live ``conditions``. The path's
       start and end waypoints must still equal the poses of arm.yaml.

    Returns:
        (samples (N, 6) float64 with samples[0] == q0 and samples[-1] == the pose, dt).

    Raises:
        MotionRefused: see :data:`REFUSAL_CODES`; ``reason`` says why (for a missing
            approval it names the unapproved or changed candidates).
    """
    from .planner import time_parameterise
    from .scene import as_joint_array

    poses = scene.arm.poses
    if to_pose not in poses:
        raise MotionRefused("UNKNOWN_POSE", f"unknown pose {to_pose!r}; known: {sorted(poses)}")
    if conditions is None:
        raise MotionRefused("NO_CELL_STATE", "isolator state unknown: keep-out zones cannot be established")
    conds = set(conditions)
    try:
        q_start = as_joint_array(q0, allow_single=True).reshape(6)
        vmax_a = np.asarray(vmax, dtype=np.float64).reshape(6)
        amax_a = np.asarray(amax, dtype=np.float64).reshape(6)
    except ValueError as exc:
        raise MotionRefused("INVALID", str(exc)) from None
    goal = np.array(poses[to_pose], dtype=np.float64)
    q, dt_eff = plan_joint_move(scene, q_start, goal, vmax_a, amax_a, speed_limit_m_s=speed_limit_m_s, dt=dt)
    q[0] = q_start
    res = scene.check_trajectory(q, dt_eff, speed_class=speed_class, conditions=conds)
    if res.ok:
        return q, dt_eff
    if res.kind != "collision":
        raise MotionRefused("SPEED" if res.kind == "speed" else "LIMIT", res.reason)
    straight = res.reason
    usable, notes = [], []
    for lp in (library.candidates(to_pose) if library is not None else []):
        ok, why = lp.status()
        if ok and lp.from_pose in poses and np.array_equal(lp.waypoints[0], poses[lp.from_pose]) \
                and np.array_equal(lp.waypoints[-1], goal):
            usable.append(lp)
        else:
            notes.append(why if not ok else
                         f"path {lp.name!r}: its end waypoints no longer match arm.yaml's poses")
    if not usable:
        detail = "; ".join(notes) if notes else "the library has no path to it"
        raise MotionRefused("NO_APPROVED_PATH",
                            f"straight move to {to_pose} collides ({straight}) "
                            f"and no approved path: {detail}")
    lp = min(usable, key=lambda p: (float(np.max(np.abs(p.waypoints[0] - q_start))), p.name))
    tol = float(getattr(scene.arm, "pose_tolerance_rad", 0.0))
    if float(np.max(np.abs(lp.waypoints[0] - q_start))) <= tol:
        waypoints = np.concatenate([q_start[None], lp.waypoints[1:]])
    else:  # a straight lead-in to the path's start pose, certified with the rest
        waypoints = np.concatenate([q_start[None], lp.waypoints])
    samples, _ = time_parameterise(scene, waypoints, dt, speed_limit_m_s, vmax=vmax_a, amax=amax_a)
    samples[0] = q_start
    chk = scene.check_trajectory(samples, dt, speed_class=speed_class, conditions=conds)
    if not chk.ok:
        raise MotionRefused("PATH_REFUSED", f"approved path {lp.name!r} from {lp.from_pose} is not safe now: "
                            f"{chk.reason}")
    return samples, dt
