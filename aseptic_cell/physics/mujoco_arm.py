"""The arm in MuJoCo: the generated URDF (aseptic_cell.assets) with position actuators added
through ``MjSpec``, the isolator's walls and equipment as static boxes, and contacts reported
for exactly the pairs the project's motion check considers (every link against every obstacle
except the configured allowed contacts, and the configured self-collision pairs).

Capsules are cylinders plus two spheres (as in the URDF): MuJoCo 4.0.x misses capsule / thin box
contacts. Gravity is compensated per body (``gravcomp``), as a robot controller does, so the
servos track without steady-state sag.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_KP = 3000.0
"""Position servo stiffness (N m / rad) [M]: an engineering choice for a UR5e-size arm."""
DEFAULT_KV = 150.0
"""Position servo damping (N m s / rad) [M]."""
DEFAULT_TIMESTEP_S = 0.001
ARMATURE_KG_M2 = 0.1
"""Reflected rotor inertia per joint (kg m^2) [M]: a geared joint's motor side. Without it the
wrist's tiny link inertia and the servo gains make the 1 ms integration unstable."""


@dataclass(frozen=True)
class Contact:
    link: str
    other: str
    distance: float  # m, < 0 = penetration


def _quat_from_rpy(rpy: Any) -> list[float]:
    import math

    r, p, y = (float(v) / 2.0 for v in rpy)
    cr, sr, cp, sp, cy, sy = math.cos(r), math.sin(r), math.cos(p), math.sin(p), math.cos(y), math.sin(y)
    return [
        cr * cp * cy + sr * sp * sy,
        sr * cp * cy - cr * sp * sy,
        cr * sp * cy + sr * cp * sy,
        cr * cp * sy - sr * sp * cy,
    ]


class ArmPhysics:
    """One MuJoCo model and state of the arm in the isolator.

    Args:
        arm: ArmConfig; geometry: GeometryConfig.
        urdf: URDF text (default: generated from ``arm``).
        kinds: which box kinds are bodies (default walls and equipment; keep-outs are rules).
    """

    def __init__(
        self,
        arm: Any,
        geometry: Any,
        urdf: str | None = None,
        *,
        kinds: tuple[str, ...] = ("wall", "equipment"),
        kp: float = DEFAULT_KP,
        kv: float = DEFAULT_KV,
        timestep_s: float = DEFAULT_TIMESTEP_S,
    ) -> None:
        import mujoco

        from ..assets.urdf import urdf_text

        self.mj = mujoco
        self.joint_names = [j.name for j in arm.joints]
        self.kp, self.kv = float(kp), float(kv)
        spec = mujoco.MjSpec.from_string(urdf if urdf is not None else urdf_text(arm))
        spec.option.timestep = float(timestep_s)
        spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
        for jnt in spec.joints:
            jnt.armature = ARMATURE_KG_M2
        link_names = {lk.name for lk in arm.links}
        for body in spec.bodies:
            if body.name != "world":
                body.gravcomp = 1.0
        boxes = [b for b in geometry.boxes if b.kind in kinds]
        for b in boxes:
            spec.worldbody.add_geom(
                name=f"box:{b.name}",
                type=mujoco.mjtGeom.mjGEOM_BOX,
                size=[float(h) for h in b.half_extents],
                pos=[float(c) for c in b.center],
                quat=_quat_from_rpy(b.rpy),
                rgba=[0.6, 0.6, 0.65, 0.3],
            )
        for lim in arm.joints:
            spec.add_actuator(
                name=f"servo:{lim.name}",
                target=lim.name,
                trntype=mujoco.mjtTrn.mjTRN_JOINT,
                gainprm=[self.kp] + [0.0] * 9,
                biasprm=[0.0, -self.kp, -self.kv] + [0.0] * 7,
                gaintype=mujoco.mjtGain.mjGAIN_FIXED,
                biastype=mujoco.mjtBias.mjBIAS_AFFINE,
            )
        # contacts only through explicit pairs, mirroring the motion check's pair list
        for g in spec.geoms:
            g.contype, g.conaffinity = 0, 0

        def link_of(geom_name: str) -> str | None:
            base = geom_name.rsplit("_", 1)[0]
            return base if base in link_names else None

        arm_geoms: dict[str, list[str]] = {}
        for g in spec.geoms:
            link = link_of(g.name or "")
            if link is not None:
                arm_geoms.setdefault(link, []).append(g.name)
        allowed = {tuple(p) for p in arm.allowed_contacts}
        pairs: list[tuple[str, str]] = []
        for link, geoms in arm_geoms.items():
            for b in boxes:
                if (link, b.name) in allowed:
                    continue
                pairs += [(g, f"box:{b.name}") for g in geoms]
        for a, b2 in arm.self_collision_pairs:
            pairs += [(g1, g2) for g1 in arm_geoms.get(a, []) for g2 in arm_geoms.get(b2, [])]
        for g1, g2 in pairs:
            spec.add_pair(geomname1=g1, geomname2=g2, margin=0.0, gap=0.0)
        self.model = spec.compile()
        self.data = mujoco.MjData(self.model)
        m = self.model
        self._qadr = np.array([m.jnt_qposadr[m.joint(n).id] for n in self.joint_names])
        self._vadr = np.array([m.jnt_dofadr[m.joint(n).id] for n in self.joint_names])
        self._act = np.array([m.actuator(f"servo:{n}").id for n in self.joint_names])
        self._geom_owner: dict[int, str] = {}
        for i in range(m.ngeom):
            name = m.geom(i).name
            owner = name[4:] if name.startswith("box:") else link_of(name)
            if owner is not None:
                self._geom_owner[i] = owner
        self._self_pairs = {frozenset(p): (str(p[0]), str(p[1])) for p in arm.self_collision_pairs}
        self._is_box = [m.geom(i).name.startswith("box:") for i in range(m.ngeom)]
        self.pair_geoms = [(int(m.pair_geom1[i]), int(m.pair_geom2[i])) for i in range(m.npair)]
        self.steps = 0

    # ------------------------------------------------------------------ state
    @property
    def time(self) -> float:
        return float(self.data.time)

    def q(self) -> np.ndarray:
        return self.data.qpos[self._qadr].copy()

    def qd(self) -> np.ndarray:
        return self.data.qvel[self._vadr].copy()

    def set_q(self, q: Any) -> None:
        """Place the arm at ``q`` at rest, servos holding it there (no dynamics)."""
        self.data.qpos[self._qadr] = np.asarray(q, dtype=np.float64)
        self.data.qvel[:] = 0.0
        self.data.ctrl[self._act] = np.asarray(q, dtype=np.float64)
        self.mj.mj_forward(self.model, self.data)

    def command(self, q_ref: np.ndarray, qd_ref: np.ndarray | None = None) -> None:
        """Servo reference. With a velocity reference the affine servo gives
        kp (q_ref - q) + kv (qd_ref - qd): ctrl = q_ref + kv / kp * qd_ref."""
        ctrl = np.asarray(q_ref, dtype=np.float64).copy()
        if qd_ref is not None:
            ctrl += (self.kv / self.kp) * np.asarray(qd_ref, dtype=np.float64)
        self.data.ctrl[self._act] = ctrl

    def step(self, n: int = 1) -> None:
        self.mj.mj_step(self.model, self.data, nstep=int(n))
        self.steps += int(n)

    # ------------------------------------------------------------------ contacts
    def _owners(self, g1: int, g2: int) -> tuple[str, str]:
        """(link, obstacle or link): the arm's link first, as the motion check names pairs."""
        a, b = self._geom_owner.get(g1, "?"), self._geom_owner.get(g2, "?")
        if self._is_box[g1] and not self._is_box[g2]:
            return b, a
        return self._self_pairs.get(frozenset((a, b)), (a, b))

    def contacts(self) -> list[Contact]:
        """Contacts of the last step / forward pass (penetrating pairs), one per owner pair."""
        best: dict[tuple[str, str], float] = {}
        for i in range(self.data.ncon):
            c = self.data.contact[i]
            if c.dist >= 0.0:
                continue
            key = self._owners(int(c.geom1), int(c.geom2))
            best[key] = min(best.get(key, 0.0), float(c.dist))
        return [Contact(a, b, d) for (a, b), d in sorted(best.items(), key=lambda kv: kv[1])]

    def closest(self, distmax: float = 1.0) -> Contact:
        """Smallest signed distance over all pairs (``mj_geomDistance``), with its owners."""
        fromto = np.zeros(6)
        best = Contact("", "", float(distmax))
        for g1, g2 in self.pair_geoms:
            d = float(self.mj.mj_geomDistance(self.model, self.data, g1, g2, distmax, fromto))
            if d < best.distance:
                best = Contact(*self._owners(g1, g2), d)
        return best
