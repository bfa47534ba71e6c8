"""Shared pydantic base types for the configuration models.

Every model forbids unknown keys (a typo in a YAML key is an error, not a silently
ignored setting) and every float is finite (a NaN or inf set point is rejected
wherever it appears).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number (NaN and inf are not accepted)")
    return value


Finite = Annotated[float, AfterValidator(_finite)]
"""A float that must be finite."""

PositiveFinite = Annotated[float, AfterValidator(_finite), Field(gt=0)]
NonNegativeFinite = Annotated[float, AfterValidator(_finite), Field(ge=0)]
Fraction = Annotated[float, AfterValidator(_finite), Field(ge=0, le=1)]
Percent = Annotated[float, AfterValidator(_finite), Field(ge=0, le=100)]
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_.\-]*$", max_length=64)]
Vec3 = tuple[Finite, Finite, Finite]
ItemStatus = Literal["draft", "approved", "obsolete"]
"""Change-control status of a recipe, cycle, program or process (config/change_control.py)."""


class Model(BaseModel):
    """Strict base: unknown keys are errors, values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)
