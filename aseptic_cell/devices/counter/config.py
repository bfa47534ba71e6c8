"""The cell counter's configuration (``config/cell.yaml`` ``process_equipment.counter``)."""

from __future__ import annotations

from ...config.base import Identifier, Model, NonNegativeFinite, Percent, PositiveFinite


class CounterConfig(Model):
    id: Identifier = "CNT1"
    count_time_s: PositiveFinite = 150.0
    viable_median_per_ml: PositiveFinite = 1.0e6
    viable_sigma_log: NonNegativeFinite = 0.5
    viability_mean_pct: Percent = 90.0
    viability_sd_pct: NonNegativeFinite = 4.0
    seed: int = 7
