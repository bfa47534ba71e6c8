"""Isolator geometry configuration (``config/geometry.yaml``); the arm's own model
(``config/arm.yaml``) lives with the arm (``aseptic_cell/devices/arm/config.py``) and is re-exported here."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..devices.arm.config import ArmConfig, DHRow, JointLimits, LinkCapsule, Pose, SpeedClass
from .base import Identifier, Model, PositiveFinite, Vec3

__all__ = ["ArmConfig", "Box", "DHRow", "GeometryConfig", "Interior", "JointLimits", "LinkCapsule", "Pose",
           "SpeedClass", "Zone"]

_ACTIVE = re.compile(r"^(always|(glove_in_use|container_open|door_closed):[A-Za-z0-9_.\-]+)$")


class Box(Model):
    """An oriented box obstacle (wall, equipment or keep-out zone)."""

    name: Identifier
    kind: Literal["wall", "equipment", "keepout"]
    center: Vec3
    half_extents: tuple[PositiveFinite, PositiveFinite, PositiveFinite]
    rpy: Vec3 = (0.0, 0.0, 0.0)
    active: str = Field(
        default="always",
        description="'always', or a condition 'glove_in_use:<port>', 'container_open:<station>', "
        "'door_closed:<door>' (a door's swept volume: active unless the door is confirmed fully open and "
        "locked) under which the box is part of the scene",
    )

    @field_validator("active")
    @classmethod
    def _active_form(cls, v: str) -> str:
        if not _ACTIVE.match(v):
            raise ValueError(
                "must be 'always' or one of 'glove_in_use:<id>', 'container_open:<id>', 'door_closed:<id>'"
            )
        return v


class Zone(Model):
    name: Identifier
    center: Vec3
    half_extents: tuple[PositiveFinite, PositiveFinite, PositiveFinite]
    rpy: Vec3 = (0.0, 0.0, 0.0)


class Interior(Model):
    min: Vec3
    max: Vec3

    @model_validator(mode="after")
    def _ordered(self) -> Interior:
        if any(lo >= hi for lo, hi in zip(self.min, self.max, strict=True)):
            raise ValueError("interior.min must be below interior.max on every axis")
        return self


class GeometryConfig(Model):
    """Isolator interior, fixed equipment and keep-out zones."""

    interior: Interior
    boxes: list[Box] = Field(min_length=1)
    near_product_zones: list[Zone] = []

    @model_validator(mode="after")
    def _unique(self) -> GeometryConfig:
        names = [b.name for b in self.boxes]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"box names must be unique; repeated: {sorted(dup)}")
        return self
