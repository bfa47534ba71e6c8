"""The isolator as a Foxglove ``SceneUpdate``: walls and equipment grey, keep-out zones red while
active and green while released (their condition from the isolator state), the arm's capsules
from the latest joint positions (forward kinematics of the configured DH table)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

FRAME = "isolator"


def _quat(r: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a rotation matrix."""
    w = math.sqrt(max(0.0, 1.0 + r[0, 0] + r[1, 1] + r[2, 2])) / 2.0
    x = math.copysign(math.sqrt(max(0.0, 1.0 + r[0, 0] - r[1, 1] - r[2, 2])) / 2.0, r[2, 1] - r[1, 2])
    y = math.copysign(math.sqrt(max(0.0, 1.0 - r[0, 0] + r[1, 1] - r[2, 2])) / 2.0, r[0, 2] - r[2, 0])
    z = math.copysign(math.sqrt(max(0.0, 1.0 - r[0, 0] - r[1, 1] + r[2, 2])) / 2.0, r[1, 0] - r[0, 1])
    return x, y, z, w


def active_conditions(iso: Any) -> set[str]:
    """Keep-out conditions in force from an IsolatorState (doors we cannot see count as closed)."""
    if iso is None:
        return set()
    cond = {f"glove_in_use:{g.port_id}" for g in iso.glove_ports if g.in_use}
    open_doors = {f"{r.rtp_id.lower()}_alpha" for r in iso.rtps if r.alpha_open and r.alpha_locked}
    if iso.hatch_door_b_open:
        open_doors.add("hatch_b")
    return cond | {
        f"door_closed:{d}" for d in ("rtp1_alpha", "hatch_b", "autoclave_unload", "incubator") if d not in open_doors
    }


Prim = tuple[np.ndarray, np.ndarray, tuple[float, float, float], tuple[float, float, float, float]]
"""centre, rotation matrix, size (x, y, z), colour (r, g, b, a)"""

RED = (0.9, 0.1, 0.1, 0.35)
GREEN = (0.1, 0.8, 0.2, 0.15)
ARM = (0.2, 0.4, 0.8, 1.0)


def scene_parts(cfg: Any, q: np.ndarray | None, conditions: set[str]) -> dict[str, list[Prim]]:
    """The scene as plain primitives: structure and keep-out cubes, the arm's cylinders and spheres."""
    from ..assets.numbers import rpy_matrix, z_to

    parts: dict[str, list[Prim]] = {"structure": [], "keepouts": [], "arm_cylinders": [], "arm_spheres": []}
    for b in cfg.geometry.boxes:
        size = (2 * b.half_extents[0], 2 * b.half_extents[1], 2 * b.half_extents[2])
        centre, rot = np.asarray(b.center, dtype=float), rpy_matrix(b.rpy)
        if b.kind == "keepout":
            on = b.active == "always" or b.active in conditions
            parts["keepouts"].append((centre, rot, size, RED if on else GREEN))
        else:
            colour = (0.7, 0.72, 0.75, 0.25 if b.kind == "wall" else 0.9)
            parts["structure"].append((centre, rot, size, colour))
    if q is not None:
        from ..devices.arm_jtc_backend import dh_frames

        frames = dh_frames(cfg.arm, q)
        for link in cfg.arm.links:
            t = frames[link.frame]
            p0 = t[:3, :3] @ np.asarray(link.p0) + t[:3, 3]
            p1 = t[:3, :3] @ np.asarray(link.p1) + t[:3, 3]
            d, length = 2 * link.radius, float(np.linalg.norm(p1 - p0))
            if length > 0:
                parts["arm_cylinders"].append((0.5 * (p0 + p1), z_to(p1 - p0), (d, d, length), ARM))
            for p in (p0, p1):
                parts["arm_spheres"].append((p, np.eye(3), (d, d, d), ARM))
    return parts


def scene_update(cfg: Any, q: np.ndarray | None, conditions: set[str]) -> Any:
    """The scene as a foxglove.SceneUpdate (entities structure, keepouts, arm)."""
    from foxglove.messages import (
        Color,
        CubePrimitive,
        CylinderPrimitive,
        Pose,
        Quaternion,
        SceneEntity,
        SceneUpdate,
        SpherePrimitive,
        Vector3,
    )

    def kw(p: Prim) -> dict[str, Any]:
        x, y, z, w = _quat(p[1])
        return {
            "pose": Pose(
                position=Vector3(x=float(p[0][0]), y=float(p[0][1]), z=float(p[0][2])),
                orientation=Quaternion(x=x, y=y, z=z, w=w),
            ),
            "size": Vector3(x=p[2][0], y=p[2][1], z=p[2][2]),
            "color": Color(r=p[3][0], g=p[3][1], b=p[3][2], a=p[3][3]),
        }

    parts = scene_parts(cfg, q, conditions)
    entities = [
        SceneEntity(frame_id=FRAME, id="structure", cubes=[CubePrimitive(**kw(p)) for p in parts["structure"]]),
        SceneEntity(frame_id=FRAME, id="keepouts", cubes=[CubePrimitive(**kw(p)) for p in parts["keepouts"]]),
    ]
    if q is not None:
        entities.append(
            SceneEntity(
                frame_id=FRAME,
                id="arm",
                cylinders=[CylinderPrimitive(bottom_scale=1.0, top_scale=1.0, **kw(p)) for p in parts["arm_cylinders"]],
                spheres=[SpherePrimitive(**kw(p)) for p in parts["arm_spheres"]],
            )
        )
    return SceneUpdate(entities=entities)
