"""The sterile tube welder's configuration (``config/cell.yaml`` ``process_equipment.welder``);
sources and [M] tags beside the values in the YAML."""

from __future__ import annotations

from pydantic import Field

from ...config.base import Fraction, Identifier, Model, NonNegativeFinite, PositiveFinite


class WelderConfig(Model):
    id: Identifier = "WLD1"
    weld_time_s: PositiveFinite = 30.0
    pass_score: Fraction = Field(default=0.8, description="weld quality score at or above which a weld passes")
    score_mean: Fraction = 0.95
    score_sd: NonNegativeFinite = 0.02
    misaligned_score_mean: Fraction = 0.4
