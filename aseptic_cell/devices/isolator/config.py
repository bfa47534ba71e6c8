"""The isolator's configuration (``config/cell.yaml`` ``isolator``).

Field descriptions name units; sources for defaults live beside the values in the YAML.
"""

from __future__ import annotations

import datetime as _dt

from pydantic import Field, model_validator

from ...config.base import Finite, Identifier, Model, NonNegativeFinite, Percent, PositiveFinite


class PressureConfig(Model):
    setpoint_pa: PositiveFinite = Field(description="isolator overpressure set point vs room (Pa)")
    alarm_low_pa: NonNegativeFinite
    alarm_high_pa: PositiveFinite
    alarm_delay_s: NonNegativeFinite
    leak_rate_per_h: NonNegativeFinite = Field(description="hourly leak rate (volume fraction / h)")
    fan_time_constant_s: PositiveFinite
    door_event_drop_pa: NonNegativeFinite
    recovery_time_constant_s: PositiveFinite

    @model_validator(mode="after")
    def _band(self) -> PressureConfig:
        if not self.alarm_low_pa < self.setpoint_pa < self.alarm_high_pa:
            raise ValueError(
                f"need alarm_low_pa < setpoint_pa < alarm_high_pa, got "
                f"{self.alarm_low_pa} / {self.setpoint_pa} / {self.alarm_high_pa}"
            )
        return self

class AirflowConfig(Model):
    velocity_m_s: PositiveFinite
    min_m_s: PositiveFinite
    max_m_s: PositiveFinite

    @model_validator(mode="after")
    def _band(self) -> AirflowConfig:
        if not self.min_m_s <= self.velocity_m_s <= self.max_m_s:
            raise ValueError("need min_m_s <= velocity_m_s <= max_m_s")
        return self

class ParticleConfig(Model):
    sample_flow_l_min: PositiveFinite
    background_0_5_per_m3: NonNegativeFinite
    background_5_0_per_m3: NonNegativeFinite
    alert_0_5_per_m3: PositiveFinite
    action_0_5_per_m3: PositiveFinite
    alert_5_0_per_m3: PositiveFinite
    action_5_0_per_m3: PositiveFinite
    burst_intervention_0_5: NonNegativeFinite
    burst_door_0_5: NonNegativeFinite
    burst_decay_s: PositiveFinite
    sample_time_s: float = Field(
        default=60.0, ge=1.0, le=600.0,
        description="counter sample time (s): counts are integrated over flow x time (60 s at 28.3 L/min = "
                    "28.3 L = 1 ft3 [TSI]; ISO 21501-4 counter [ISO21501-4]); site value [M]")
    action_5_0_min_count: int = Field(
        default=2, ge=1, le=100,
        description=">=5 um particles one sample needs for an action excursion: a single count may be a "
                    "false count (Annex 1 §9 Table 5 notes [ANNEX1-2022] [M]); site value [M]")
    trend_5_0_n: int = Field(default=2, ge=1, le=20,
                             description="samples with >=5 um counts among the last trend_5_0_m that make an "
                                         "action excursion (repeated low counts [HOSPINT] [PMS-AL]) [M]")
    trend_5_0_m: int = Field(default=3, ge=1, le=60, description="window of the 5 um trend rule (samples) [M]")

    @model_validator(mode="after")
    def _levels(self) -> ParticleConfig:
        if self.trend_5_0_n > self.trend_5_0_m:
            raise ValueError("trend_5_0_n must not exceed trend_5_0_m")
        if self.alert_0_5_per_m3 > self.action_0_5_per_m3:
            raise ValueError("alert_0_5_per_m3 must not exceed action_0_5_per_m3")
        if self.alert_5_0_per_m3 > self.action_5_0_per_m3:
            raise ValueError("alert_5_0_per_m3 must not exceed action_5_0_per_m3")
        return self

class HatchConfig(Model):
    id: Identifier
    dwell_s: float = Field(ge=2.0, le=60.0, description="dwell between doors (s); 2-60 s adjustable [METRO]")
    seal_inflate_s: PositiveFinite
    seal_deflate_s: PositiveFinite
    door_travel_s: PositiveFinite
    decon_cycle_s: PositiveFinite = Field(
        default=600.0, description="duration of the chamber's decontamination cycle (s), site value [M]")
    manual_wipe_down_allowed: bool = Field(
        default=False, description="the site allows a signed manual wipe-down record instead of a cycle [M]")

class RTPConfig(Model):
    id: Identifier
    door_travel_s: PositiveFinite
    lock_time_s: PositiveFinite

class GlovePortConfig(Model):
    id: Identifier
    glove_lot: str
    fitted: _dt.date

class GloveTestConfig(Model):
    test_pressure_pa: PositiveFinite
    stabilisation_s: PositiveFinite
    test_s: PositiveFinite
    max_drop_pa: PositiveFinite
    glove_volume_l: PositiveFinite
    glove_compliance_l_per_kpa: NonNegativeFinite = Field(
        default=1.5, description="volume the pressurised glove and sleeve gain per kPa (L/kPa): a flexible test volume")
    instrument_id: str
    campaign_window_h: PositiveFinite

class LeakTestConfig(Model):
    test_pressure_pa: PositiveFinite
    test_s: PositiveFinite
    max_decay_pa: PositiveFinite

class IsolatorConfig(Model):
    id: Identifier
    volume_m3: PositiveFinite
    internal_area_m2: PositiveFinite
    temperature_c: Finite
    room_rh_pct: Percent
    pressure: PressureConfig
    airflow: AirflowConfig
    particles: ParticleConfig
    hatch: HatchConfig
    rtps: list[RTPConfig] = Field(min_length=1)
    glove_ports: list[GlovePortConfig] = Field(min_length=1)
    glove_test: GloveTestConfig
    leak_test: LeakTestConfig

    @model_validator(mode="after")
    def _unique_ids(self) -> IsolatorConfig:
        for label, items in (("rtps", self.rtps), ("glove_ports", self.glove_ports)):
            ids = [i.id for i in items]
            dup = sorted({i for i in ids if ids.count(i) > 1})
            if dup:
                raise ValueError(f"{label}: ids must be unique; repeated: {dup}")
        return self
