"""The VHP unit's configuration (``config/cell.yaml`` ``vhp_unit``) and its versioned cycle recipes
(``config/vhp_cycles.yaml``).

Field descriptions name units; sources for defaults live beside the values in the YAML.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from ...config.base import (
    Finite,
    Fraction,
    Identifier,
    ItemStatus,
    Model,
    NonNegativeFinite,
    Percent,
    PositiveFinite,
)


class VHPUnitConfig(Model):
    id: Identifier
    solution_w_w: Fraction = Field(description="H2O2 mass fraction of the solution")
    reservoir_g: NonNegativeFinite
    max_injection_g_min: PositiveFinite
    catalyst_loop_m3_h: PositiveFinite
    catalyst_efficiency: Fraction
    exhaust_m3_h: NonNegativeFinite
    dryer_rate_pct_min: PositiveFinite
    deposition_velocity_m_s: PositiveFinite = Field(description="k_a of the two-pool model (m/s)")
    desorption_per_min: PositiveFinite = Field(description="k_d (1/min)")
    surface_decomposition_per_min: NonNegativeFinite = Field(description="k_s (1/min)")
    sensor_range_ppm: PositiveFinite
    residual_sensor_range_ppm: PositiveFinite = Field(
        default=10.0,
        description="low-range (electrochemical) residual H2O2 sensor full scale (ppm), the release sensor")
    circulation_m3_h: PositiveFinite | None = Field(
        default=None, description="circulation flow that mixes injected vapour into the enclosure (m3/h); "
                                  "default: the catalytic loop flow")

class VHPPrecheck(Model):
    require_leak_test: bool = True
    min_reservoir_g: NonNegativeFinite
    timeout_s: PositiveFinite

class VHPDehumidify(Model):
    target_rh_pct: Percent
    timeout_s: PositiveFinite

class VHPCondition(Model):
    target_ppm: PositiveFinite
    injection_g_min: PositiveFinite
    timeout_s: PositiveFinite

class VHPDecontaminate(Model):
    dwell_s: PositiveFinite
    setpoint_ppm: PositiveFinite
    min_ppm: PositiveFinite
    low_tolerance_s: NonNegativeFinite
    max_rs_pct: Percent

    @model_validator(mode="after")
    def _order(self) -> VHPDecontaminate:
        if self.min_ppm > self.setpoint_ppm:
            raise ValueError("min_ppm must not exceed setpoint_ppm")
        return self

class VHPAerate(Model):
    release_ppm: PositiveFinite = Field(le=1.0, description="release limit (ppm); <= 1 ppm PEL [CHEMDAQ]")
    hold_s: NonNegativeFinite = Field(
        default=1200.0, description="rebound check: loop stopped, the residual must stay <= release_ppm this long (s)")
    reaerate_s: NonNegativeFinite = Field(
        default=600.0, description="after a rebound: catalytic aeration at least this long before the next hold (s)")
    timeout_s: PositiveFinite

class VHPLimits(Model):
    dp_min_pa: Finite
    dp_max_pa: Finite
    temp_min_c: Finite
    temp_max_c: Finite

    @model_validator(mode="after")
    def _order(self) -> VHPLimits:
        if self.dp_min_pa >= self.dp_max_pa or self.temp_min_c >= self.temp_max_c:
            raise ValueError("each min must be below its max")
        return self

class VHPCycleRecipe(Model):
    id: Identifier
    version: int = Field(ge=1)
    status: ItemStatus = "draft"  # change control (aseptic_cell/config/change_control.py)
    description: str = ""
    validated_for_release: bool = Field(
        default=False, description="only a validated cycle releases the isolator for product (Annex 1 §4.25)")
    precheck: VHPPrecheck
    dehumidify: VHPDehumidify
    condition: VHPCondition
    decontaminate: VHPDecontaminate
    aerate: VHPAerate
    limits: VHPLimits

class VHPCycles(Model):
    cycles: list[VHPCycleRecipe] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> VHPCycles:
        ids = [c.id for c in self.cycles]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"cycle ids must be unique; repeated: {dup}")
        return self

    def get(self, cycle_id: str) -> VHPCycleRecipe:
        for c in self.cycles:
            if c.id == cycle_id:
                return c
        raise KeyError(f"unknown VHP cycle recipe {cycle_id!r}; known: {[c.id for c in self.cycles]}")
