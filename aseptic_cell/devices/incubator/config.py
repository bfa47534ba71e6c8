"""The multi-slot incubator's configuration (``config/cell.yaml`` ``process_equipment.incubator``).

Defaults are the planning values of the multi-patient addendum; the sources are cited beside
the values in ``config/cell.yaml`` (keys in docs/REFERENCES.md). Items marked [M] there are
site values (take them from the installed unit's IQ/OQ).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from ...config.base import Finite, Identifier, Model, NonNegativeFinite, Percent, PositiveFinite


class IncubatorConfig(Model):
    id: Identifier = "INC1"
    slots: int = Field(default=16, ge=1, le=64, description="independent slots, each bound to one batch (COI-20)")
    temp_setpoint_c: Finite = 37.0
    co2_setpoint_pct: Percent = 5.0
    rh_setpoint_pct: Percent = 95.0
    temp_alarm_low_c: Finite = 36.0
    temp_alarm_high_c: Finite = 38.0
    co2_alarm_low_pct: Percent = 4.0
    co2_alarm_high_pct: Percent = 6.0
    co2_warn_band_pct: NonNegativeFinite = 0.5
    rh_alarm_low_pct: Percent = 85.0
    alarm_delay_s: NonNegativeFinite = Field(default=600.0, description="excursion alarm on-delay (s)")
    overtemp_cutout_c: Finite = Field(default=38.0, description="independent over-temperature cut-out (C)")
    ambient_temp_c: Finite = 21.0
    ambient_co2_pct: Percent = 0.04
    ambient_rh_pct: Percent = 45.0
    door_access_s: PositiveFinite = Field(default=30.0, description="door-open time of one load/unload access (s)")
    door_open_max_s: PositiveFinite = Field(default=60.0, description="t_door_max: longest door opening (s)")
    temp_open_tau_s: PositiveFinite = 300.0
    co2_open_tau_s: PositiveFinite = 60.0
    rh_open_tau_s: PositiveFinite = 60.0
    temp_recovery_s: PositiveFinite = Field(default=600.0, description="95 % recovery after a door opening (s)")
    co2_recovery_s: PositiveFinite = 600.0
    rh_recovery_s: PositiveFinite = 480.0
    heater_loss_tau_s: PositiveFinite = Field(default=3600.0,
                                              description="cool-down time constant with the heater failed (s)")

    @model_validator(mode="after")
    def _bands(self) -> IncubatorConfig:
        if not self.temp_alarm_low_c < self.temp_setpoint_c < self.temp_alarm_high_c:
            raise ValueError("temp_setpoint_c must lie strictly inside the temperature alarm limits")
        if not self.co2_alarm_low_pct < self.co2_setpoint_pct < self.co2_alarm_high_pct:
            raise ValueError("co2_setpoint_pct must lie strictly inside the CO2 alarm limits")
        if not self.rh_alarm_low_pct < self.rh_setpoint_pct:
            raise ValueError("rh_setpoint_pct must be above rh_alarm_low_pct")
        if self.overtemp_cutout_c <= self.temp_setpoint_c:
            raise ValueError("overtemp_cutout_c must be above the temperature set point")
        return self
