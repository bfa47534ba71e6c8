"""The robot arm's configuration (``config/arm.yaml``): DH table, joint limits, link capsules,
speed classes and named poses."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ...config.base import Finite, Identifier, Model, NonNegativeFinite, PositiveFinite, Vec3


class DHRow(Model):
    """One standard Denavit-Hartenberg row: T = Rz(theta) Tz(d) Tx(a) Rx(alpha)."""

    a: Finite = Field(description="link length a_i (m)")
    d: Finite = Field(description="link offset d_i (m)")
    alpha: Finite = Field(description="link twist alpha_i (rad)")


class JointLimits(Model):
    name: Identifier
    min: Finite = Field(description="lower position limit (rad)")
    max: Finite = Field(description="upper position limit (rad)")
    max_velocity: PositiveFinite = Field(description="rad/s")
    max_acceleration: PositiveFinite = Field(description="rad/s^2")

    @model_validator(mode="after")
    def _ordered(self) -> JointLimits:
        if self.min >= self.max:
            raise ValueError(f"joint {self.name}: min ({self.min}) must be below max ({self.max})")
        return self


class Pose(Model):
    xyz: Vec3 = (0.0, 0.0, 0.0)
    rpy: Vec3 = (0.0, 0.0, 0.0)


class LinkCapsule(Model):
    name: Identifier
    frame: int = Field(ge=0, le=6, description="DH frame the capsule is attached to (0 = base)")
    p0: Vec3
    p1: Vec3
    radius: PositiveFinite


class SpeedClass(Model):
    max_tcp_speed_m_s: PositiveFinite


class ArmConfig(Model):
    """A 6-axis arm: kinematics, limits, collision capsules, speed classes and named poses."""

    model: str
    dh: list[DHRow] = Field(min_length=6, max_length=6)
    joints: list[JointLimits] = Field(min_length=6, max_length=6)
    base: Pose = Pose()
    links: list[LinkCapsule] = Field(min_length=1)
    self_collision_pairs: list[tuple[Identifier, Identifier]] = []
    allowed_contacts: list[tuple[Identifier, Identifier]] = []
    safety_margin_m: NonNegativeFinite = 0.01
    speed_classes: dict[Literal["near_product", "transit"], SpeedClass]
    poses: dict[Identifier, list[Finite]]
    pose_tolerance_rad: PositiveFinite = 0.01
    tracking_time_constant_s: PositiveFinite = 0.05

    @model_validator(mode="after")
    def _consistent(self) -> ArmConfig:
        names = {link.name for link in self.links}
        if len(names) != len(self.links):
            raise ValueError("link names must be unique")
        for a, b in self.self_collision_pairs:
            for n in (a, b):
                if n not in names:
                    raise ValueError(f"self_collision_pairs names unknown link {n!r}")
        for a, _ in self.allowed_contacts:
            if a not in names:
                raise ValueError(f"allowed_contacts names unknown link {a!r}")
        for required in ("near_product", "transit"):
            if required not in self.speed_classes:
                raise ValueError(f"speed_classes must define {required!r}")
        for required in ("park", "decon"):
            if required not in self.poses:
                raise ValueError(f"poses must define {required!r}")
        for pose_name, q in self.poses.items():
            if len(q) != 6:
                raise ValueError(f"pose {pose_name!r} has {len(q)} joint values, expected 6")
            for j, (value, lim) in enumerate(zip(q, self.joints, strict=True)):
                if not lim.min <= value <= lim.max:
                    raise ValueError(
                        f"pose {pose_name!r} joint {j} ({lim.name}) = {value} is outside "
                        f"[{lim.min}, {lim.max}]"
                    )
        return self
