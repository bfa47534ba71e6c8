"""The tube sealer's configuration (``config/cell.yaml`` ``process_equipment.sealer``)."""

from __future__ import annotations

from pydantic import Field

from ...config.base import Fraction, Identifier, Model, NonNegativeFinite, PositiveFinite


class SealerConfig(Model):
    id: Identifier = "SEAL1"
    seal_time_s: PositiveFinite = 5.0
    pass_score: Fraction = Field(default=0.8, description="seal quality score at or above which a seal passes")
    score_mean: Fraction = 0.95
    score_sd: NonNegativeFinite = 0.02
    heater_fault_score_mean: Fraction = 0.3
