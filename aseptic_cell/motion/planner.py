"""Collision-free joint-space planning: the C planner over the float32 fast path (the
straight move; else the shortest path on a lazy roadmap, ``src/roadmap.c``; else
RRT-Connect, ``src/plan.c``; then shortcutting), then time parameterisation within the
joint velocity and acceleration limits and the TCP speed class, then the certified
trajectory check of the result. Use it as :meth:`aseptic_cell.motion.Scene.plan`.

The roadmap (fixed vertices, edges checked only when a candidate path uses them, every
verdict memoised) is kept per planning scene, active box set and SIMD level, so repeated
queries on one cell (the station moves, under changing keep-outs) reuse what earlier
ones checked. The memo is a cache of pure verdicts: a query's result does not depend on
what was planned before; the seed drives the RRT-Connect fallback and the shortcutting.

The search runs on a copy of the scene whose safety margin is larger by a planning
buffer; edges are checked at configurations no more than the buffer of link motion
apart, so a path found there keeps the real margin between its checked configurations
(argument in ``plan.c``). If the start or the goal is free on the real scene but inside
the buffer, the search is retried with a quarter of the buffer.

Every returned trajectory has passed :meth:`Scene.check_trajectory` in certified mode
(collisions proven free between samples, limits, certified TCP speed), with the same
conditions; a result that does not is a refusal, never a path.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import _ccheck
from .planning import _PEAK_ACC, _PEAK_VEL

if TYPE_CHECKING:  # pragma: no cover
    from .scene import Scene, SpeedClass, TrajectoryCheck

#: Planning buffer added to the safety margin for the search (m).
PLAN_BUFFER_M = 0.01
#: RRT extension length (rad, largest joint move per extension).
EXTEND_RAD = 0.5
#: Default search budget (RRT-Connect iterations) and shortcut attempts.
MAX_SAMPLES = 20000
SHORTCUT_ITERS = 60
#: Lazy roadmap (``src/roadmap.c``), one per planning scene, active box set and SIMD level,
#: kept between calls: vertices, neighbours per vertex, the fixed seed of its vertices, the
#: limit of lazy searches per query, and how many roadmaps a scene keeps. The limit is far
#: above the edge count on purpose: each search either returns or removes a colliding edge,
#: so the search ends anyway, and a lower budget would make the outcome depend on what the
#: memo already knew (0 disables the roadmap). A query that the roadmap cannot answer tries a
#: second, larger roadmap (ROADMAP_VERTICES_LARGE, built on first need) before RRT-Connect:
#: with 1,500 vertices only, 6 of the 20 station pairs of the 1,024-box benchmark scene fell
#: back to RRT-Connect (10-23 ms each, the station p95 above 10 ms); with 3,000 none did, but
#: 3,000 for every query made the search of the others slower (benchmarks/planning.py).
ROADMAP_VERTICES = 1500
ROADMAP_VERTICES_LARGE = 3000
ROADMAP_K = 10
ROADMAP_SEED = 0x5EED
ROADMAP_ROUNDS = 1 << 30
ROADMAP_CACHE = 8
_METHODS = {0: "straight", 1: "roadmap", 2: "rrt"}
#: Fraction of the joint velocity / acceleration limits and of the TCP speed class the
#: time parameterisation aims at (the certified check then verifies the real limits).
LIMIT_FRACTION = 0.9
_MAX_WAYPOINTS = 4096

_CODES = {1: "start_in_collision", 2: "goal_in_collision", 3: "no_path", 4: "no_path"}


@dataclass(frozen=True)
class PlanResult:
    """Outcome of :meth:`Scene.plan`.

    Attributes:
        ok: a certified trajectory was found.
        code: ``"ok"``, ``"start_in_collision"``, ``"goal_in_collision"``, ``"no_path"``
            (no path within the search budget) or ``"not_certified"`` (the timed path
            failed the certified check; never returned as a path).
        reason: human-readable refusal reason, ``""`` when ok.
        waypoints: (M, 6) joint waypoints after shortcutting (start .. goal); empty on refusal.
        samples: (N, 6) timed trajectory sampled every ``dt`` seconds; empty on refusal.
        dt: sample period (s).
        check: the certified :class:`TrajectoryCheck` of ``samples`` (None if not reached).
        iterations: searches used: lazy roadmap searches (``method == "roadmap"``) or
            RRT-Connect iterations (``"rrt"``); 0 for a straight move.
        plan_ms: wall time of the whole call (ms).
        search_ms: of which the search in C (roadmap or RRT-Connect, shortcutting, ms).
        method: how the path was found: ``"straight"``, ``"roadmap"`` or ``"rrt"``.
        edges_checked: roadmap edges checked by this call (the others were known).
    """

    ok: bool
    code: str
    reason: str
    waypoints: np.ndarray
    samples: np.ndarray
    dt: float
    check: TrajectoryCheck | None
    iterations: int
    plan_ms: float
    search_ms: float = 0.0
    method: str = ""
    edges_checked: int = 0

    @property
    def duration_s(self) -> float:
        return float(max(len(self.samples) - 1, 0) * self.dt)


def _planning_scene(scene: Scene, buffer: float) -> Scene:
    return scene.inflated(buffer)


def _roadmap(ps: Scene, active: bytes, n: int = ROADMAP_VERTICES) -> object:
    """The lazy roadmap of planning scene ``ps`` for ``active`` at the current SIMD level
    (built on first use). Its memo of edge verdicts makes later queries faster; it never
    changes their result (``src/roadmap.c``)."""
    cache: dict[tuple[bytes, str, int], object] = ps.__dict__.setdefault("_roadmaps", {})
    key = (active, _ccheck.simd_level(), n)
    rm = cache.get(key)
    if rm is None:
        if len(cache) >= ROADMAP_CACHE:
            cache.pop(next(iter(cache)))
        rm = cache[key] = _ccheck.roadmap_new(ps._capsule, active, n, ROADMAP_K, ROADMAP_SEED)
    return rm


def clear_roadmaps(scene: Scene) -> None:
    """Drop the cached roadmaps of ``scene``'s planning scenes (the next call builds them
    again; for benchmarks of the first query)."""
    for ps in scene.__dict__.get("_inflated", {}).values():
        ps.__dict__.pop("_roadmaps", None)


def _segment_samples(qa: np.ndarray, qb: np.ndarray, steps: int) -> np.ndarray:
    u = np.arange(1, steps + 1) / steps
    s = 10 * u**3 - 15 * u**4 + 6 * u**5
    return qa[None, :] + s[:, None] * (qb - qa)[None, :]


def _all_samples(waypoints: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """The first waypoint, then every segment's ``_segment_samples`` (same values), in one
    vectorised pass."""
    seg = np.repeat(np.arange(len(steps)), steps)
    starts = np.cumsum(steps) - steps
    u = (np.arange(int(steps.sum())) - starts[seg] + 1) / steps[seg]
    s = 10 * u**3 - 15 * u**4 + 6 * u**5
    qa = waypoints[:-1][seg]
    body = qa + s[:, None] * (waypoints[1:][seg] - qa)
    return np.ascontiguousarray(np.concatenate([waypoints[:1], body]))


def _tcp(scene: Scene, q: np.ndarray) -> np.ndarray:
    """TCP positions of (N, 6) joints (``scene.fk(q).tcp`` without building the frames)."""
    out = np.empty((q.shape[0], 7, 12))
    _ccheck.fk(scene._capsule, q, out)
    return out[:, 6, 9:] + out[:, 6, :9].reshape(-1, 3, 3) @ scene.tcp


def time_parameterise_numpy(scene: Scene, waypoints: np.ndarray, dt: float, speed_limit: float,
                            stretch: np.ndarray | None = None, *, vmax: np.ndarray | None = None,
                            amax: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rest-to-rest minimum-jerk segments between consecutive waypoints, each timed to
    ``LIMIT_FRACTION`` of the joint limits (the scene's, or ``vmax``/``amax``) and
    stretched until its chordal TCP speed is within ``LIMIT_FRACTION * speed_limit``;
    samples every ``dt``. Returns (samples, segment end indices). The samples stay on the
    straight joint segments. The NumPy reference of :func:`time_parameterise` (tests)."""
    vmax = scene.limits[:, 2] if vmax is None else vmax
    amax = scene.limits[:, 3] if amax is None else amax
    waypoints = np.ascontiguousarray(waypoints, dtype=np.float64)
    nseg = len(waypoints) - 1
    # min_jerk_duration of every segment at once (the same operations, the same values)
    d = np.abs(np.diff(waypoints, axis=0))
    if not np.all(np.isfinite(d)):
        raise ValueError("joint positions must be finite")
    t_v = _PEAK_VEL * d / (LIMIT_FRACTION * np.asarray(vmax, float))
    t_a = np.sqrt(_PEAK_ACC * d / (LIMIT_FRACTION * np.asarray(amax, float)))
    T = np.maximum(np.maximum(np.maximum(t_v.max(axis=1), t_a.max(axis=1)), 0.0), 4 * dt)
    if stretch is not None:
        T = T * stretch[:nseg]
    steps = np.maximum(4, np.ceil(T / dt - 1e-9)).astype(int)
    for _ in range(12):
        samples = _all_samples(waypoints, steps)
        ends = np.cumsum(steps)
        # chordal TCP speed per segment (all segments in one FK call)
        speed = np.linalg.norm(np.diff(_tcp(scene, samples), axis=0), axis=1) / dt
        peaks = np.maximum.reduceat(speed, np.concatenate([[0], ends[:-1]]))
        over = peaks > LIMIT_FRACTION * speed_limit
        if not over.any():
            break
        factor = np.maximum(1.05, peaks[over] / (LIMIT_FRACTION * speed_limit))
        steps[over] = np.ceil(steps[over] * factor).astype(int)
    return samples, ends


def time_parameterise(scene: Scene, waypoints: np.ndarray, dt: float, speed_limit: float,
                      stretch: np.ndarray | None = None, *, vmax: np.ndarray | None = None,
                      amax: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rest-to-rest minimum-jerk segments between consecutive waypoints, each timed to
    ``LIMIT_FRACTION`` of the joint limits (the scene's, or ``vmax``/``amax``) and
    stretched until its chordal TCP speed is within ``LIMIT_FRACTION * speed_limit``;
    samples every ``dt``. Returns (samples, segment end indices). The samples stay on the
    straight joint segments. Each pass (samples, TCP, chord speed peaks) runs in C
    (``_ccheck.timing_pass``) with the operations of :func:`time_parameterise_numpy`."""
    vmax = scene.limits[:, 2] if vmax is None else vmax
    amax = scene.limits[:, 3] if amax is None else amax
    waypoints = np.ascontiguousarray(waypoints, dtype=np.float64)
    nseg = len(waypoints) - 1
    # min_jerk_duration of every segment at once (the same operations, the same values)
    d = np.abs(np.diff(waypoints, axis=0))
    if not np.all(np.isfinite(d)):
        raise ValueError("joint positions must be finite")
    t_v = _PEAK_VEL * d / (LIMIT_FRACTION * np.asarray(vmax, float))
    t_a = np.sqrt(_PEAK_ACC * d / (LIMIT_FRACTION * np.asarray(amax, float)))
    T = np.maximum(np.maximum(np.maximum(t_v.max(axis=1), t_a.max(axis=1)), 0.0), 4 * dt)
    if stretch is not None:
        T = T * stretch[:nseg]
    steps = np.maximum(4, np.ceil(T / dt - 1e-9)).astype(np.int64)
    if nseg < 1:
        return time_parameterise_numpy(scene, waypoints, dt, speed_limit, stretch, vmax=vmax, amax=amax)
    peaks = np.empty(nseg)
    for _ in range(12):
        samples = np.empty((int(steps.sum()) + 1, 6))
        _ccheck.timing_pass(scene._capsule, waypoints, steps, float(dt), samples, peaks)
        ends = np.cumsum(steps)
        over = peaks > LIMIT_FRACTION * speed_limit
        if not over.any():
            break
        factor = np.maximum(1.05, peaks[over] / (LIMIT_FRACTION * speed_limit))
        steps[over] = np.ceil(steps[over] * factor).astype(np.int64)
    return samples, ends


def plan(
    scene: Scene,
    q_start: object,
    q_goal: object,
    *,
    conditions: Iterable[str] | None = None,
    speed_class: SpeedClass | None = None,
    seed: int = 0,
    dt: float = 0.02,
    max_samples: int = MAX_SAMPLES,
    shortcut_iters: int = SHORTCUT_ITERS,
    buffer_m: float = PLAN_BUFFER_M,
    roadmap: bool = True,
) -> PlanResult:
    """Plan q_start -> q_goal (see :meth:`Scene.plan`)."""
    from .scene import as_joint_array

    t0 = time.perf_counter()
    qs = as_joint_array(q_start, allow_single=True).reshape(1, 6)
    qg = as_joint_array(q_goal, allow_single=True).reshape(1, 6)
    if not (isinstance(seed, int) and 0 <= seed < 2**64):
        raise ValueError("seed must be an int in [0, 2**64)")
    cls = speed_class or "transit"
    if cls not in scene.speed_limits:
        raise ValueError(f"speed_class must be None, 'near_product' or 'transit', got {speed_class!r}")
    limit = scene.speed_limits[cls]  # near-product zones: stretched below on the certified check
    conds = scene.active_conditions if conditions is None else frozenset(conditions)

    search_ms = 0.0
    method, checked = "", 0

    def refuse(code: str, reason: str, iters: int = 0, check: TrajectoryCheck | None = None) -> PlanResult:
        empty = np.zeros((0, 6))
        return PlanResult(False, code, reason, empty, empty, dt, check, iters,
                          (time.perf_counter() - t0) * 1e3, search_ms, method, checked)

    # start and goal on the real scene first: a refusal names the pair. The fast path's
    # "free" is certain (conservative); only an end it cannot clear needs the exact path.
    both = np.concatenate([qs, qg])
    fast_free = scene.check_configs(both, conditions=conds)
    ends = None
    for i, (name, q) in enumerate((("start", qs), ("goal", qg))):
        lim = scene.limits
        if not ((q[0] >= lim[:, 0]) & (q[0] <= lim[:, 1])).all():
            return refuse(f"{name}_in_collision", f"{name} outside the joint limits")
        if fast_free[i]:
            continue
        if ends is None:
            ends = scene.clearance(both, conditions=conds)
        if ends.distance[i] < scene.margin:
            return refuse(f"{name}_in_collision",
                          f"{name} in collision: {ends.link[i]} vs {ends.other[i]} "
                          f"(clearance {ends.distance[i] * 1000:.1f} mm < margin "
                          f"{scene.margin * 1000:.1f} mm)")
    out = np.empty((_MAX_WAYPOINTS, 6))
    code, n, iters = 1, 0, 0
    for buf in (buffer_m, buffer_m / 4):
        ps = _planning_scene(scene, buf)
        active = ps._mask_arg(conds)
        ts = time.perf_counter()
        if roadmap and ROADMAP_ROUNDS > 0:
            # the roadmap (no RRT budget), then the larger roadmap and RRT-Connect
            code, n, iters, m, c = _ccheck.plan(ps._capsule, qs, qg, active, seed, 0, int(shortcut_iters),
                                                float(buf), EXTEND_RAD, out, _roadmap(ps, active),
                                                ROADMAP_ROUNDS)
            checked += c
            if code in (3, 4):
                code, n, iters, m, c = _ccheck.plan(ps._capsule, qs, qg, active, seed, int(max_samples),
                                                    int(shortcut_iters), float(buf), EXTEND_RAD, out,
                                                    _roadmap(ps, active, ROADMAP_VERTICES_LARGE),
                                                    ROADMAP_ROUNDS)
                checked += c
        else:
            code, n, iters, m, c = _ccheck.plan(ps._capsule, qs, qg, active, seed, int(max_samples),
                                                int(shortcut_iters), float(buf), EXTEND_RAD, out,
                                                None, ROADMAP_ROUNDS)
            checked += c
        search_ms += (time.perf_counter() - ts) * 1e3
        method = _METHODS.get(m, "rrt")
        if code not in (1, 2):  # start/goal inside the buffer only: retry with a smaller one
            break
    if code != 0:
        name = _CODES.get(code, "no_path")
        if name == "no_path":
            where = (f"on the roadmaps ({ROADMAP_VERTICES} and {ROADMAP_VERTICES_LARGE} vertices) nor "
                     if roadmap and ROADMAP_ROUNDS > 0 else "")
            return refuse(name, f"no path {where}within the budget of {max_samples} samples", iters)
        return refuse(name, f"{name.split('_')[0]} within {scene.margin * 1000 + buf * 1000:.1f} mm of "
                            f"an obstacle (planning buffer); no room to plan", iters)
    waypoints = out[:n].copy()
    stretch = np.ones(max(n - 1, 1))
    check = None
    for _ in range(8):
        samples, seg_ends = time_parameterise(scene, waypoints, dt, limit, stretch)
        check = scene.check_trajectory(samples, dt, speed_class=cls, conditions=conds, fast_accept=True)
        if check.ok:
            return PlanResult(True, "ok", "", waypoints, samples, dt, check, iters,
                              (time.perf_counter() - t0) * 1e3, search_ms, method, checked)
        if check.kind not in ("speed", "limit") or check.first_failing_index is None:
            break
        seg = int(np.searchsorted(seg_ends, check.first_failing_index))
        stretch[min(seg, len(stretch) - 1)] *= 1.5
    reason = check.reason if check is not None else "not checked"
    return refuse("not_certified", f"planned path not certified: {reason}", iters, check)
