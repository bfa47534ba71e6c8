"""Collision scene of the arm inside the isolator, and the checks that use it.

A :class:`Scene` is built once from :class:`~aseptic_cell.config.robot.ArmConfig` and
:class:`~aseptic_cell.config.robot.GeometryConfig`. It precomputes everything the C
extension (``aseptic_cell.motion._ccheck``) needs and then answers, without a
per-configuration Python loop:

* :meth:`Scene.check_configs` -- float32 SIMD fast path, conservative: ``True`` means
  the configuration is certainly free (within position limits, every clearance at
  least the safety margin); ``False`` means "colliding or too close to tell".
* :meth:`Scene.clearance` -- exact double-precision minimum clearance and closest pair.
* :meth:`Scene.check_trajectory` -- limits, TCP speed classes and collisions for a
  sampled trajectory, with the motion between samples either certified, checked at
  a fixed resolution, or not checked.
* :meth:`Scene.fk` -- link frames and TCP position.

Geometry model: each link is a capsule (segment + radius) attached to a DH frame;
obstacles are oriented boxes. The clearance of a link to a box is the distance
between the segment and the box minus the radius; of two links, the segment
distance minus both radii. A configuration *collides* when any clearance is below
``safety_margin_m`` (contact at 0 and penetration are both "below"). Pairs listed in
``allowed_contacts`` are not checked.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from aseptic_cell.config.robot import ArmConfig, GeometryConfig

from . import _ccheck

if TYPE_CHECKING:  # pragma: no cover
    from .planner import PlanResult

Mode = Literal["certified", "fixed", "samples"]
SpeedClass = Literal["near_product", "transit"]

_MODES = {"samples": 0, "fixed": 1, "certified": 2}
_CONDITION = re.compile(r"^(glove_in_use|container_open|door_closed):[A-Za-z0-9_.\-]+$")

#: float32 unit roundoff (2^-24).
F32_U = 2.0**-24
#: Factor on u * M for the float32 error bound of the fast path. Counting the
#: operations of the sphere/box test (end points rounded to float, sphere centre
#: interpolation, subtraction of the box centre, rotation into the box frame,
#: |x| - h, sum of squares, rounded box data) gives a distance error below about
#: 55 u M, with M the largest coordinate magnitude in the scene; 128 doubles that.
F32_ERROR_FACTOR = 128.0
#: Bound on the double-precision FK error (sin/cos to a few ulp, 6 chained frames).
FK_ERROR_M = 1e-9
#: Sphere spacing along a capsule, as a fraction of the inflated radius. Smaller
#: spacing = more spheres and less over-approximation (covering radius
#: sqrt(R^2 + (s/2)^2)); 1.2 R gives <= 17 % inflation.
SPHERE_SPACING = 1.2
#: Default joint step (rad) of the documented fixed-resolution mode.
FIXED_STEP_RAD = 0.01
#: Default bisection depth of the certified mode: the minimum subdivision is
#: 1/2^16 of a sample interval; a motion still undecided there is a failure.
CERTIFY_MAX_DEPTH = 16
#: Fast acceptance of ``check_trajectory(fast_accept=True)``: the margins (m, above the
#: safety margin) of the scene copies a sample may be accepted by on the fast path, in
#: steps of sqrt(2) so that a sample is offered at most 1.41 times its motion bound
#: (measured: fewer steps accept fewer samples). 10 mm is also the planner's buffer (one
#: scene copy serves both).
FAST_ACCEPT_LEVELS_M = (0.005, 0.007, 0.01, 0.014, 0.02, 0.028, 0.04, 0.056, 0.08, 0.113, 0.16)


def rpy_matrix(rpy: Iterable[float]) -> np.ndarray:
    """Rotation matrix for roll-pitch-yaw (URDF convention: R = Rz(y) Ry(p) Rx(r))."""
    r, p, y = (float(v) for v in rpy)
    cr, sr, cp, sp, cy, sy = math.cos(r), math.sin(r), math.cos(p), math.sin(p), math.cos(y), math.sin(y)
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


def _f32_up(x: float) -> np.float32:
    """Smallest float32 >= x."""
    f = np.float32(x)
    if float(f) < x:
        f = np.nextafter(f, np.float32(np.inf))
    return f


def as_joint_array(q: object, *, allow_single: bool = False) -> np.ndarray:
    """Validate a joint array: float64, shape (N, 6) (or (6,) if allowed), all finite.

    Raises:
        ValueError: wrong type, dtype, shape, or a NaN/inf value.
    """
    if isinstance(q, np.ndarray):
        if q.dtype != np.float64:
            raise ValueError(f"joint array must be float64, got {q.dtype}")
        arr = q
    else:
        try:
            arr = np.array(q, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"joint array must be numeric: {exc}") from None
    if arr.ndim == 1 and allow_single:
        if arr.shape != (6,):
            raise ValueError(f"a single configuration must have shape (6,), got {arr.shape}")
    elif arr.ndim != 2 or arr.shape[1] != 6:
        raise ValueError(f"joint array must have shape (N, 6), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("joint array contains NaN or inf")
    return np.ascontiguousarray(arr)


@dataclass(frozen=True)
class FKResult:
    """Forward kinematics: ``frames[..., k]`` is the 4x4 pose of DH frame k (0 = base)."""

    frames: np.ndarray  # (N, 7, 4, 4) or (7, 4, 4)
    tcp: np.ndarray  # (N, 3) or (3,)


@dataclass(frozen=True)
class ClearanceResult:
    """Exact minimum clearance per configuration and the closest pair.

    ``distance`` (m) is the surface distance of the closest pair (<= 0 means
    contact; penetration depth is not measured). ``link`` and ``other`` name the
    closest pair (``other`` is a box or, for self-collision, a link).
    """

    distance: np.ndarray
    pair_id: np.ndarray
    link: np.ndarray
    other: np.ndarray
    margin: float

    @property
    def free(self) -> np.ndarray:
        """Exact verdict: every clearance at least the safety margin."""
        return self.distance >= self.margin


@dataclass(frozen=True)
class TrajectoryCheck:
    """Verdict on a sampled trajectory.

    Attributes:
        ok: every check passed.
        first_failing_index: first sample that cannot be reached safely (samples
            before it may be executed), ``None`` if ok. A failure between samples i-1
            and i, a velocity between them, or an acceleration at i report index i.
        reason: e.g. ``"collision: forearm vs wall_left ..."``,
            ``"limit: joint 2 velocity 3.5 > 3.14 rad/s"``,
            ``"speed: TCP 0.31 m/s > 0.25 m/s in near_product zone workstation_zone"``;
            ``""`` when ok.
        kind: ``"ok"``, ``"collision"``, ``"limit"`` or ``"speed"``.
        clearance: minimum exact clearance over all samples (m).
        closest_pair: names of the pair with that clearance.
        failing_pair: names of the pair that failed (collision failures only).
        evaluations: number of exact clearance evaluations (diagnostics).
        speed_chord_max: largest chord TCP speed |tcp[i] - tcp[i-1]| / dt (m/s).
        speed_bound_max: largest certified bound on the TCP speed between samples
            (m/s, certified mode; 0 otherwise).
        clearance_exact: ``clearance`` is the exact minimum over the samples (always,
            except with ``fast_accept``, where it may be a lower bound of it).
        fast_accepted: samples accepted on the fast path (``fast_accept``; no exact
            clearance computed for them).
    """

    ok: bool
    first_failing_index: int | None
    reason: str
    kind: str
    clearance: float
    closest_pair: tuple[str, str] | None
    failing_pair: tuple[str, str] | None = None
    evaluations: int = 0
    speed_chord_max: float = 0.0
    speed_bound_max: float = 0.0
    clearance_exact: bool = True
    fast_accepted: int = 0


@dataclass
class Scene:
    """The arm's collision model in the isolator. Build with :meth:`from_config`."""

    arm: ArmConfig
    geometry: GeometryConfig
    tcp_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    _capsule: object = field(init=False, repr=False)

    def __post_init__(self) -> None:
        arm, geom = self.arm, self.geometry
        self.link_names: list[str] = [lk.name for lk in arm.links]
        self.box_names: list[str] = [b.name for b in geom.boxes]
        self.zone_names: list[str] = [z.name for z in geom.near_product_zones]
        self.joint_names: list[str] = [j.name for j in arm.joints]
        self.margin = float(arm.safety_margin_m)
        self.speed_limits = {k: v.max_tcp_speed_m_s for k, v in arm.speed_classes.items()}
        L, B = len(arm.links), len(geom.boxes)
        if L > _ccheck.MAX_LINKS or B > _ccheck.MAX_BOXES:
            raise ValueError(f"scene too large: {L} links (max {_ccheck.MAX_LINKS}), "
                             f"{B} boxes (max {_ccheck.MAX_BOXES})")
        self._nwords = max(1, (B + 63) // 64)
        link_idx = {n: i for i, n in enumerate(self.link_names)}
        box_idx = {n: i for i, n in enumerate(self.box_names)}

        # --- kinematics
        self.dh = np.array([[r.a, r.d, r.alpha] for r in arm.dh], dtype=np.float64)
        base_R = rpy_matrix(arm.base.rpy)
        self.base = np.eye(4)
        self.base[:3, :3] = base_R
        self.base[:3, 3] = arm.base.xyz
        self.limits = np.array(
            [[j.min, j.max, j.max_velocity, j.max_acceleration] for j in arm.joints], dtype=np.float64
        )
        self.tcp = np.array(self.tcp_offset, dtype=np.float64)

        # --- links
        self.link_frame = np.array([lk.frame for lk in arm.links], dtype=np.int32)
        self.link_p0 = np.array([lk.p0 for lk in arm.links], dtype=np.float64)
        self.link_p1 = np.array([lk.p1 for lk in arm.links], dtype=np.float64)
        self.link_r = np.array([lk.radius for lk in arm.links], dtype=np.float64)

        # --- allowed contacts: (link, box) removes a box from the link's mask,
        # (link, link) removes a self-collision pair
        # box sets are Python ints (bit b = box b), any number of boxes
        full = (1 << B) - 1
        self.link_box_mask: list[int] = [full] * L
        skip_pairs: set[frozenset[str]] = set()
        for a, b in arm.allowed_contacts:
            if b in box_idx:
                self.link_box_mask[link_idx[a]] &= full & ~(1 << box_idx[b])
            elif b in link_idx:
                skip_pairs.add(frozenset((a, b)))
            else:
                raise ValueError(f"allowed_contacts names unknown box or link {b!r}")
        pairs = [
            (link_idx[a], link_idx[b])
            for a, b in arm.self_collision_pairs
            if frozenset((a, b)) not in skip_pairs
        ]
        self.pairs = np.array(
            [(a, b, min(self.link_frame[a], self.link_frame[b])) for a, b in pairs], dtype=np.int32
        ).reshape(-1, 3)

        # --- boxes and zones
        self.box_center = np.array([b.center for b in geom.boxes], dtype=np.float64)
        self.box_R = np.array([rpy_matrix(b.rpy) for b in geom.boxes], dtype=np.float64)
        self.box_half = np.array([b.half_extents for b in geom.boxes], dtype=np.float64)
        self.box_active = [b.active for b in geom.boxes]
        self.known_conditions = sorted({a for a in self.box_active if a != "always"})
        self._always_mask = sum(1 << i for i, a in enumerate(self.box_active) if a == "always")
        self._cond_bits: dict[str, int] = {}
        for i, a in enumerate(self.box_active):
            if a != "always":
                self._cond_bits[a] = self._cond_bits.get(a, 0) | (1 << i)
        zs = geom.near_product_zones
        self.zone_center = np.array([z.center for z in zs], dtype=np.float64).reshape(-1, 3)
        self.zone_R = np.array([rpy_matrix(z.rpy) for z in zs]).reshape(-1, 3, 3)
        self.zone_half = np.array([z.half_extents for z in zs], dtype=np.float64).reshape(-1, 3)

        # --- motion bounds: lip[k, j] >= distance of link k's segment points from joint
        # j's axis, for every configuration. Joint j turns about z of frame j; the
        # path from that axis to a point on frame f is a_j x_{j+1} (perpendicular to
        # the axis) + sum_{i>j} (d_i z_i + a_i x_{i+1}) (|.| = hypot(a_i, d_i)) + R_f p.
        reach = np.hypot(self.dh[:, 0], self.dh[:, 1])
        pmax = np.maximum(np.linalg.norm(self.link_p0, axis=1), np.linalg.norm(self.link_p1, axis=1))

        def lip_row(frame: int, pnorm: float) -> np.ndarray:
            row = np.zeros(6)
            for j in range(frame):
                row[j] = abs(self.dh[j, 0]) + reach[j + 1 : frame].sum() + pnorm
            return row

        self.lip = np.array([lip_row(int(f), float(p)) for f, p in zip(self.link_frame, pmax, strict=False)])
        self.tcp_lip = lip_row(6, float(np.linalg.norm(self.tcp)))

        # --- float32 fast path: rounding bound, sphere covers, float boxes
        m_scene = max(
            float(np.max(np.linalg.norm(self.box_center, axis=1) + np.linalg.norm(self.box_half, axis=1))),
            float(np.linalg.norm(self.base[:3, 3]) + reach.sum() + pmax.max() + self.link_r.max()),
        )
        self.f32_eps = F32_ERROR_FACTOR * F32_U * m_scene + FK_ERROR_M
        spheres, sphere_link, bound = [], [], []
        for k in range(L):
            length = float(np.linalg.norm(self.link_p1[k] - self.link_p0[k]))
            r_env = self.link_r[k] + self.margin + self.f32_eps
            r_self = self.link_r[k] + 0.5 * self.margin + self.f32_eps
            n = 1 if length == 0.0 else max(2, math.ceil(length / (SPHERE_SPACING * r_env)) + 1)
            half_gap = 0.0 if n == 1 else 0.5 * length / (n - 1)
            R_env = math.sqrt(r_env**2 + half_gap**2)
            R_self = math.sqrt(r_self**2 + half_gap**2)
            for i in range(n):
                t = 0.5 if n == 1 else i / (n - 1)
                spheres.append((np.float32(t), _f32_up(R_env), _f32_up(R_self)))
                sphere_link.append(k)
            bound.append(
                (_f32_up(0.5 * length + R_env + self.f32_eps), _f32_up(0.5 * length + R_self + self.f32_eps))
            )
        if len(spheres) > _ccheck.MAX_SPHERES:
            raise ValueError(f"sphere cover needs {len(spheres)} spheres (max {_ccheck.MAX_SPHERES})")
        self.spheres = np.array(spheres, dtype=np.float32).reshape(-1, 3)
        self.sphere_link = np.array(sphere_link, dtype=np.int32)
        self.bound_r = np.array(bound, dtype=np.float32).reshape(-1, 2)
        # Boxes a link's sphere cover can never reach are skipped by the fast path
        # (the exact path keeps them so its minimum clearance stays exact). Joint 1
        # turns about an axis through o1 = base + d_1 z_0, which never moves; every
        # point of a link on frame f >= 1 stays within |a_1| + sum_{1<i<f} hypot(a_i,
        # d_i) + |p| of o1. Links on frame 0 do not move at all.
        from . import reference as _ref  # exact segment/box distance for static links

        o1 = self.base[:3, 3] + self.dh[0, 1] * self.base[:3, 2]
        box_to_o1 = (
            _ref.point_box_distance(o1, self.box_center, self.box_R, self.box_half) if B else np.zeros(0)
        )
        self.fast_box_mask: list[int] = []
        for k in range(L):
            f = int(self.link_frame[k])
            r_cover = float(self.bound_r[k, 0])
            if f == 0:
                e0 = self.base[:3, :3] @ self.link_p0[k] + self.base[:3, 3]
                e1 = self.base[:3, :3] @ self.link_p1[k] + self.base[:3, 3]
                r_max = float(self.spheres[self.sphere_link == k, 1].max())
                dists = (
                    _ref.segment_box_distance(e0, e1, self.box_center, self.box_R, self.box_half)
                    if B
                    else np.zeros(0)
                )
                reachable = np.asarray(dists) <= r_max + 2 * self.f32_eps
            else:
                rho = abs(self.dh[0, 0]) + reach[1:f].sum() + pmax[k]
                reachable = box_to_o1 <= rho + r_cover + 2 * self.f32_eps
            self.fast_box_mask.append(sum(1 << int(b) for b in np.flatnonzero(reachable)))
        fboxes = np.zeros((B, 15), dtype=np.float32)
        fboxes[:, :3] = self.box_center
        fboxes[:, 3:12] = self.box_R.reshape(B, 9)
        h32 = self.box_half.astype(np.float32)
        h32 = np.where(h32.astype(np.float64) < self.box_half, np.nextafter(h32, np.float32(np.inf)), h32)
        fboxes[:, 12:] = h32

        # --- pair labels (pair id -> names), see ccheck.h
        first = [self.link_names[k] for k in range(L) for _ in range(B)]
        second = [self.box_names[b] for _ in range(L) for b in range(B)]
        first += [self.link_names[a] for a, _, _ in self.pairs]
        second += [self.link_names[b] for _, b, _ in self.pairs]
        self._pair_first = np.array(first + [""], dtype=object)  # index -1 -> ""
        self._pair_second = np.array(second + [""], dtype=object)

        boxes = np.concatenate([self.box_center, self.box_R.reshape(B, 9), self.box_half], axis=1)
        boxes = boxes.reshape(B, 15)
        zones = np.concatenate(
            [self.zone_center, self.zone_R.reshape(-1, 9), self.zone_half], axis=1
        ) if len(self.zone_names) else np.zeros((0, 15))
        base12 = np.concatenate([self.base[:3, :3].reshape(-1), self.base[:3, 3]])
        links = np.concatenate([self.link_p0, self.link_p1, self.link_r[:, None]], axis=1)
        c = np.ascontiguousarray
        self._capsule = _ccheck.scene_new(
            c(self.dh), c(base12), c(self.limits), c(self.tcp), c(links), c(self.link_frame),
            self._words_array(self.link_box_mask), c(self.lip), c(self.tcp_lip), c(boxes), c(fboxes),
            c(self.pairs), c(zones, dtype=np.float64), c(self.spheres), c(self.sphere_link), c(self.bound_r),
            self._words_array(self.fast_box_mask), self.margin,
        )
        self._conditions: frozenset[str] = frozenset()
        self._mask = self._always_mask
        self._mask_words: dict[int, bytes] = {}

    def _words_array(self, masks: list[int]) -> np.ndarray:
        """Box-set ints as a (len(masks) * nwords,) uint64 array of little-endian words."""
        nb = 8 * self._nwords
        raw = b"".join(int(m).to_bytes(nb, "little") for m in masks)
        return np.frombuffer(raw, dtype="<u8").astype(np.uint64)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_config(
        cls, arm_cfg: ArmConfig, geom_cfg: GeometryConfig, *, tcp_offset: Iterable[float] = (0.0, 0.0, 0.0)
    ) -> Scene:
        """Build the scene from validated configuration models."""
        return cls(arm_cfg, geom_cfg, tuple(float(v) for v in tcp_offset))  # type: ignore[arg-type]

    # ------------------------------------------------------------------ conditions
    def mask_for(self, conditions: Iterable[str], *, strict: bool = True) -> int:
        """Bit mask of the boxes active under ``conditions`` (``always`` boxes included).

        Raises:
            ValueError: a malformed condition, or (``strict``) one that no box uses.
        """
        mask = self._always_mask
        conds = set(conditions) if not isinstance(conditions, str) else {conditions}
        for cond in conds:
            if not isinstance(cond, str) or not _CONDITION.match(cond):
                raise ValueError(f"malformed condition {cond!r} (expected e.g. 'door_closed:rtp1_alpha')")
            if strict and cond not in self.known_conditions:
                raise ValueError(f"condition {cond!r} activates no box; known: {self.known_conditions}")
        for cond in conds:
            mask |= self._cond_bits.get(cond, 0)
        return mask

    def set_active(self, conditions: Iterable[str], *, strict: bool = True) -> None:
        """Select the conditional boxes for subsequent checks (e.g. ``{"glove_in_use:GP1"}``)."""
        mask = self.mask_for(conditions, strict=strict)
        if isinstance(conditions, str):
            conditions = {conditions}
        self._conditions = frozenset(conditions)
        self._mask = mask

    @property
    def active_conditions(self) -> frozenset[str]:
        return self._conditions

    @property
    def active_boxes(self) -> list[str]:
        return [n for i, n in enumerate(self.box_names) if (self._mask >> i) & 1]

    def _mask_arg(self, conditions: Iterable[str] | None) -> bytes:
        """Active box set for the C calls, as little-endian 64-bit words (cached)."""
        mask = self._mask if conditions is None else self.mask_for(conditions)
        words = self._mask_words.get(mask)
        if words is None:
            words = mask.to_bytes(8 * self._nwords, "little")
            if len(self._mask_words) < 256:
                self._mask_words[mask] = words
        return words

    # ------------------------------------------------------------------ queries
    def fk(self, q: object) -> FKResult:
        """Link frames (4x4, frames 0..6) and TCP position for (N, 6) or (6,) joints."""
        arr = as_joint_array(q, allow_single=True)
        single = arr.ndim == 1
        qa = arr.reshape(-1, 6)
        out = np.empty((qa.shape[0], 7, 12))
        _ccheck.fk(self._capsule, qa, out)
        frames = np.zeros((qa.shape[0], 7, 4, 4))
        frames[..., :3, :3] = out[..., :9].reshape(-1, 7, 3, 3)
        frames[..., :3, 3] = out[..., 9:]
        frames[..., 3, 3] = 1.0
        tcp = frames[:, 6, :3, 3] + frames[:, 6, :3, :3] @ self.tcp
        if single:
            return FKResult(frames[0], tcp[0])
        return FKResult(frames, tcp)

    def check_configs(
        self, q: object, *, conditions: Iterable[str] | None = None, refine: bool = False
    ) -> np.ndarray:
        """Fast path: bool array, ``True`` = certainly free (conservative).

        With ``refine=True`` the configurations the fast path could not clear are
        re-checked on the exact path, so the answer is the exact verdict
        (within position limits and clearance >= margin).
        """
        arr = as_joint_array(q)
        mask = self._mask_arg(conditions)
        out = np.empty(arr.shape[0], dtype=np.uint8)
        _ccheck.fast_check(self._capsule, arr, mask, out)
        free = out.view(np.bool_)
        if refine:
            idx = np.flatnonzero(~free)
            if idx.size:
                sub = np.ascontiguousarray(arr[idx])
                in_lim = ((sub >= self.limits[:, 0]) & (sub <= self.limits[:, 1])).all(axis=1)
                d = np.empty(idx.size)
                p = np.empty(idx.size, dtype=np.int32)
                _ccheck.clearance(self._capsule, sub, mask, d, p)
                free[idx] = in_lim & (d >= self.margin)
        return free

    def clearance(self, q: object, *, conditions: Iterable[str] | None = None) -> ClearanceResult:
        """Exact minimum clearance (m) and closest pair for each configuration."""
        arr = as_joint_array(q)
        mask = self._mask_arg(conditions)
        d = np.empty(arr.shape[0])
        p = np.empty(arr.shape[0], dtype=np.int32)
        _ccheck.clearance(self._capsule, arr, mask, d, p)
        return ClearanceResult(d, p, self._pair_first[p], self._pair_second[p], self.margin)

    def inflated(self, extra_m: float) -> Scene:
        """This scene with the safety margin larger by ``extra_m`` (m), built once and kept
        (the planner searches on one; the fast acceptance of ``check_trajectory`` uses
        several)."""
        cache: dict[float, Scene] = self.__dict__.setdefault("_inflated", {})
        if extra_m not in cache:
            if not (math.isfinite(extra_m) and extra_m > 0):
                raise ValueError("extra_m must be a positive number of metres")
            arm = self.arm.model_copy(update={"safety_margin_m": self.margin + extra_m})
            cache[extra_m] = Scene(arm, self.geometry, self.tcp_offset)
        return cache[extra_m]

    def _accept_capsules(self) -> tuple[object, ...]:
        caps = self.__dict__.get("_accept_caps")
        if caps is None:
            caps = self.__dict__["_accept_caps"] = tuple(
                self.inflated(b)._capsule for b in FAST_ACCEPT_LEVELS_M)
        return caps

    def pair_names(self, pair_id: int) -> tuple[str, str] | None:
        if pair_id < 0:
            return None
        return (str(self._pair_first[pair_id]), str(self._pair_second[pair_id]))

    def check_trajectory(
        self,
        q: object,
        dt: float,
        *,
        mode: Mode = "certified",
        speed_class: SpeedClass | None = None,
        conditions: Iterable[str] | None = None,
        fixed_step: float = FIXED_STEP_RAD,
        max_depth: int = CERTIFY_MAX_DEPTH,
        fast_accept: bool = False,
    ) -> TrajectoryCheck:
        """Check a trajectory sampled every ``dt`` seconds (straight lines in joint space
        between samples).

        Checked at every sample, in order (the first failure wins): joint position
        limits; joint velocity (q[i] - q[i-1]) / dt; joint acceleration (central
        difference at interior samples); TCP speed estimated as the chord
        |tcp[i] - tcp[i-1]| / dt, limited to the near-product class whenever either
        end or the chord midpoint lies in a ``near_product_zones`` box, and to
        ``speed_class`` elsewhere (``None``: transit class); collisions at the sample.

        Motion between samples, by ``mode``:

        * ``"certified"`` -- proven free: each link's Cartesian motion is bounded by
          sum_j |dq_j| * (max distance of its points from joint j's axis), and the
          interval is bisected until the clearance bound holds; an interval still
          undecided after ``max_depth`` halvings fails (conservative).
        * ``"fixed"`` -- exact checks at interpolated configurations every
          ``fixed_step`` rad of the largest joint move. No guarantee between them.
        * ``"samples"`` -- samples only.

        ``fast_accept=True`` (certified mode only; the planner uses it): a sample whose
        every clearance the float32 fast path proves to be at least the margin plus the
        motion bound of both adjoining intervals (on a copy of the scene with a margin
        larger by one of ``FAST_ACCEPT_LEVELS_M``, the smallest that covers that bound)
        needs no exact clearance; the others are computed exactly and the motion between
        samples is certified as above, so the verdict never accepts what the exact check
        would refuse (argument in ``src/exact.c``). ``clearance`` is then the exact minimum
        over the samples when it lies below every acceptance bound used
        (``clearance_exact=True``), else a lower bound of that minimum
        (``clearance_exact=False``, ``closest_pair=None``).

        Raises:
            ValueError: bad shape/dtype, NaN/inf, non-positive dt, unknown mode or class.
        """
        arr = as_joint_array(q)
        if arr.shape[0] < 1:
            raise ValueError("trajectory needs at least one sample")
        if not isinstance(dt, (int, float)) or isinstance(dt, bool) or not math.isfinite(dt) or dt <= 0:
            raise ValueError(f"dt must be a finite positive number of seconds, got {dt!r}")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {sorted(_MODES)}, got {mode!r}")
        if speed_class is None:
            outside = self.speed_limits["transit"]
        elif speed_class in self.speed_limits:
            outside = self.speed_limits[speed_class]
        else:
            raise ValueError(f"speed_class must be None, 'near_product' or 'transit', got {speed_class!r}")
        zone_limit = self.speed_limits["near_product"]
        if not (math.isfinite(fixed_step) and fixed_step > 0):
            raise ValueError("fixed_step must be a positive number of radians")
        mask = self._mask_arg(conditions)
        if fast_accept and mode != "certified":
            raise ValueError("fast_accept needs mode='certified'")
        res = _ccheck.check_trajectory(
            self._capsule, arr, mask, float(dt), _MODES[mode], float(outside), float(zone_limit),
            float(fixed_step), int(max_depth), self._accept_capsules() if fast_accept else None,
        )
        (code, index, joint, zone, value, limit, pair, pair_c, min_c, min_pair, evals, v_chord, v_bound,
         min_bound, accepted) = res
        closest = self.pair_names(min_pair)
        exact = True
        if accepted and not min_c < min_bound:
            # every sample's clearance is >= min_bound (accepted ones by their bound, exact
            # ones because none below it was found): a lower bound, no closest pair
            min_c, closest, exact = min_bound, None, False
        def result(ok: bool, index: int | None, reason: str, kind: str,
                   failing: tuple[str, str] | None) -> TrajectoryCheck:
            return TrajectoryCheck(ok, index, reason, kind, float(min_c), closest, failing, int(evals),
                                   speed_chord_max=float(v_chord), speed_bound_max=float(v_bound),
                                   clearance_exact=exact, fast_accepted=int(accepted))

        if code == 0:
            return result(True, None, "", "ok", None)
        failing = self.pair_names(pair)
        pair_txt = f"{failing[0]} vs {failing[1]}" if failing else "unknown pair"
        jtxt = f"joint {joint + 1}"
        jname = self.joint_names[joint] if joint >= 0 else ""
        if code == 1:
            kind = "limit"
            lo, hi = self.limits[joint, 0], self.limits[joint, 1]
            reason = f"limit: {jtxt} position {value:.4g} outside [{lo:.4g}, {hi:.4g}] rad ({jname})"
        elif code == 2:
            kind = "limit"
            reason = f"limit: {jtxt} velocity {abs(value):.3g} > {limit:.3g} rad/s ({jname})"
        elif code == 3:
            kind = "limit"
            reason = f"limit: {jtxt} acceleration {abs(value):.3g} > {limit:.3g} rad/s^2 ({jname})"
        elif code == 4:
            kind = "speed"
            if zone >= 0:
                reason = (
                    f"speed: TCP {value:.3g} m/s > {limit:.3g} m/s in near_product zone "
                    f"{self.zone_names[zone]}"
                )
            else:
                cls_name = speed_class or "transit"
                reason = f"speed: TCP {value:.3g} m/s > {limit:.3g} m/s ({cls_name})"
        elif code == 5:
            kind = "collision"
            reason = (
                f"collision: {pair_txt} (clearance {pair_c * 1000:.2f} mm < margin "
                f"{self.margin * 1000:.1f} mm) at sample {index}"
            )
        elif code == 6:
            kind = "collision"
            reason = (
                f"collision: {pair_txt} between samples {index - 1} and {index}"
                f" (clearance {pair_c * 1000:.2f} mm < margin {self.margin * 1000:.1f} mm)"
            )
        elif code == 7:
            kind = "collision"
            reason = (
                f"collision: {pair_txt} not certified free between samples {index - 1} and {index}"
                f" (clearance bound {pair_c * 1000:.2f} mm < margin {self.margin * 1000:.1f} mm at the"
                f" minimum subdivision)"
            )
        elif code == 8:
            kind = "speed"
            cls_txt = f"({speed_class or 'transit'})"
            where = f"in near_product zone {self.zone_names[zone]}" if zone >= 0 else cls_txt
            reason = (
                f"speed: TCP speed bound {value:.3g} m/s > {limit:.3g} m/s {where}"
                f" between samples {index - 1} and {index}"
            )
        else:  # pragma: no cover - the C side only returns the codes above
            raise RuntimeError(f"unknown result code {code}")
        return result(False, int(index), reason, kind, failing)

    def plan(
        self,
        q_start: object,
        q_goal: object,
        *,
        conditions: Iterable[str] | None = None,
        speed_class: SpeedClass | None = None,
        seed: int = 0,
        dt: float = 0.02,
        **options: Any,
    ) -> PlanResult:
        """Plan a collision-free, timed, certified trajectory q_start -> q_goal.

        The straight move, else a lazy roadmap kept per active box set, else RRT-Connect
        (C, over the fast path, deterministic for ``seed``), with shortcutting,
        minimum-jerk timing within the joint limits and the TCP speed class, then the
        certified :meth:`check_trajectory` of the result under ``conditions``. Returns a
        :class:`~aseptic_cell.motion.planner.PlanResult`; ``ok=False`` with ``code``
        ``start_in_collision``, ``goal_in_collision``, ``no_path`` or ``not_certified``
        and a ``reason`` otherwise. ``options``: ``max_samples``, ``shortcut_iters``,
        ``buffer_m``, ``roadmap`` (False: RRT-Connect only).
        """
        from .planner import plan

        return plan(
            self, q_start, q_goal, conditions=conditions, speed_class=speed_class, seed=seed, dt=dt, **options
        )


def scene_from_files(config_dir: str | Path, **kwargs: object) -> Scene:
    """Load ``arm.yaml`` and ``geometry.yaml`` from ``config_dir`` and build a :class:`Scene`."""
    import yaml

    d = Path(config_dir)
    with open(d / "arm.yaml", encoding="utf-8") as f:
        arm = ArmConfig.model_validate(yaml.safe_load(f))
    with open(d / "geometry.yaml", encoding="utf-8") as f:
        geom = GeometryConfig.model_validate(yaml.safe_load(f))
    return Scene.from_config(arm, geom, **kwargs)  # type: ignore[arg-type]
