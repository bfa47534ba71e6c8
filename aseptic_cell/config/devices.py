"""Cell layout and device process parameters (``config/cell.yaml``),
VHP cycle recipes (``config/vhp_cycles.yaml``) and autoclave programs
(``config/autoclave_programs.yaml``).

Field descriptions name units; sources for defaults live beside the values in the YAML.
"""

from __future__ import annotations

import datetime as _dt
from typing import Literal, Optional

from pydantic import Field, model_validator

from .base import Fraction, Identifier, Model, NonNegativeFinite, Percent, PositiveFinite, Finite


# --------------------------------------------------------------------------- cell.yaml
class CellInfo(Model):
    id: Identifier
    name: str
    site: str = ""


class SimSettings(Model):
    step_s: PositiveFinite = Field(0.5, le=10.0, description="model integration step (sim s)")
    speedup: PositiveFinite = Field(600.0, description="sim seconds per wall second for `make run`")
    seed: int = 1


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
    def _band(self) -> "PressureConfig":
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
    def _band(self) -> "AirflowConfig":
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

    @model_validator(mode="after")
    def _levels(self) -> "ParticleConfig":
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
    def _unique_ids(self) -> "IsolatorConfig":
        for label, items in (("rtps", self.rtps), ("glove_ports", self.glove_ports)):
            ids = [i.id for i in items]
            dup = sorted({i for i in ids if ids.count(i) > 1})
            if dup:
                raise ValueError(f"{label}: ids must be unique; repeated: {dup}")
        return self


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


class AutoclaveConfig(Model):
    id: Identifier
    chamber_volume_l: PositiveFinite
    door_open_max_temp_c: PositiveFinite
    door_open_max_gauge_kpa: PositiveFinite
    heat_rate_c_min: PositiveFinite
    cool_rate_c_min: PositiveFinite
    load_probe_time_constant_s: PositiveFinite
    probe_disagreement_max_c: PositiveFinite
    pump_rate_kpa_s: PositiveFinite
    steam_fill_kpa_s: PositiveFinite
    base_leak_kpa_per_min: NonNegativeFinite
    ambient_temp_c: Finite
    door_travel_s: PositiveFinite
    gasket_pressurise_s: PositiveFinite


class RobotRef(Model):
    id: Identifier = Field(description="device id of the robot arm (its model is config/arm.yaml)")


class CellLayout(Model):
    """``config/cell.yaml``: the cell, its devices and their process parameters."""

    cell: CellInfo
    sim: SimSettings = SimSettings()
    robot: RobotRef
    isolator: IsolatorConfig
    vhp_unit: VHPUnitConfig
    autoclave: AutoclaveConfig

    @model_validator(mode="after")
    def _device_ids_unique(self) -> "CellLayout":
        ids = self.device_ids()
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"device ids must be unique across the cell; repeated: {dup}")
        return self

    def device_ids(self) -> list[str]:
        return [self.isolator.id, self.vhp_unit.id, self.autoclave.id, self.robot.id]


# --------------------------------------------------------------------------- vhp_cycles.yaml
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
    def _order(self) -> "VHPDecontaminate":
        if self.min_ppm > self.setpoint_ppm:
            raise ValueError("min_ppm must not exceed setpoint_ppm")
        return self


class VHPAerate(Model):
    release_ppm: PositiveFinite = Field(le=1.0, description="release limit (ppm); <= 1 ppm PEL [CHEMDAQ]")
    timeout_s: PositiveFinite


class VHPLimits(Model):
    dp_min_pa: Finite
    dp_max_pa: Finite
    temp_min_c: Finite
    temp_max_c: Finite

    @model_validator(mode="after")
    def _order(self) -> "VHPLimits":
        if self.dp_min_pa >= self.dp_max_pa or self.temp_min_c >= self.temp_max_c:
            raise ValueError("each min must be below its max")
        return self


class VHPCycleRecipe(Model):
    id: Identifier
    version: int = Field(ge=1)
    description: str = ""
    precheck: VHPPrecheck
    dehumidify: VHPDehumidify
    condition: VHPCondition
    decontaminate: VHPDecontaminate
    aerate: VHPAerate
    limits: VHPLimits


class VHPCycles(Model):
    cycles: list[VHPCycleRecipe] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> "VHPCycles":
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


# --------------------------------------------------------------------------- autoclave_programs.yaml
class Prevacuum(Model):
    pulses: int = Field(ge=0, le=10)
    vacuum_kpa: PositiveFinite
    pulse_high_kpa: PositiveFinite
    pulse_timeout_s: PositiveFinite


class Plateau(Model):
    setpoint_c: float = Field(ge=100.0, le=140.0, description="sterilisation temperature (C)")
    band_c: PositiveFinite = Field(description="band above set point (K); EN 285: +3 K")
    hold_s: PositiveFinite


class Exhaust(Model):
    target_kpa: PositiveFinite
    timeout_s: PositiveFinite


class Drying(Model):
    vacuum_kpa: PositiveFinite
    time_s: NonNegativeFinite


class LeakTestProgram(Model):
    vacuum_kpa: PositiveFinite
    stabilise_s: PositiveFinite
    hold_s: PositiveFinite
    max_rate_kpa_min: PositiveFinite
    evacuate_timeout_s: PositiveFinite


class AutoclaveProgram(Model):
    id: Identifier
    kind: Literal["sterilise", "bowie_dick", "leak_test"]
    description: str = ""
    prevacuum: Optional[Prevacuum] = None
    plateau: Optional[Plateau] = None
    heatup_timeout_s: Optional[PositiveFinite] = None
    exhaust: Optional[Exhaust] = None
    drying: Optional[Drying] = None
    f0_target_min: Optional[NonNegativeFinite] = None
    equilibration_max_s: Optional[PositiveFinite] = None
    bowie_dick_max_delta_c: Optional[PositiveFinite] = None
    leak_test: Optional[LeakTestProgram] = None

    @model_validator(mode="after")
    def _sections(self) -> "AutoclaveProgram":
        if self.kind == "leak_test":
            if self.leak_test is None:
                raise ValueError("a leak_test program needs a 'leak_test' section")
            return self
        missing = [
            name
            for name in ("prevacuum", "plateau", "heatup_timeout_s", "exhaust", "drying", "f0_target_min")
            if getattr(self, name) is None
        ]
        if missing:
            raise ValueError(f"a {self.kind} program needs: {', '.join(missing)}")
        if self.kind == "bowie_dick" and self.bowie_dick_max_delta_c is None:
            raise ValueError("a bowie_dick program needs bowie_dick_max_delta_c")
        assert self.prevacuum is not None
        if self.prevacuum.vacuum_kpa >= 101.3 or self.prevacuum.pulse_high_kpa <= 101.3:
            raise ValueError("prevacuum: vacuum_kpa must be sub-atmospheric and pulse_high_kpa super-atmospheric")
        return self


class AutoclavePrograms(Model):
    programs: list[AutoclaveProgram] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> "AutoclavePrograms":
        ids = [p.id for p in self.programs]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"program ids must be unique; repeated: {dup}")
        return self

    def get(self, program_id: str) -> AutoclaveProgram:
        for p in self.programs:
            if p.id == program_id:
                return p
        raise KeyError(f"unknown autoclave program {program_id!r}; known: {[p.id for p in self.programs]}")
