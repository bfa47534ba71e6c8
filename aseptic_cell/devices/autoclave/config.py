"""The autoclave's configuration (``config/cell.yaml`` ``autoclave``) and its programs
(``config/autoclave_programs.yaml``).

Field descriptions name units; sources for defaults live beside the values in the YAML.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ...config.base import Finite, Identifier, ItemStatus, Model, NonNegativeFinite, PositiveFinite

F0_T_REF_C = 121.1
"""F0 reference temperature (C) [FEDF0]."""
F0_Z_C = 10.0
"""F0 z-value (K) [FEDF0]."""


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
    bowie_dick_valid_h: PositiveFinite | None = Field(
        default=24.0, description="a sterilising program needs a Bowie-Dick PASS this recent (h); None: no check")
    leak_test_valid_h: PositiveFinite | None = Field(
        default=168.0, description="a sterilising program needs a leak test PASS this recent (h); None: no check")
    sim_tests_passed_at_start: bool = Field(
        default=False, description="simulation only: the session starts with a current Bowie-Dick and leak test PASS")

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
    version: int = Field(1, ge=1)
    status: ItemStatus = "draft"  # change control (aseptic_cell/config/change_control.py)
    description: str = ""
    prevacuum: Prevacuum | None = None
    plateau: Plateau | None = None
    heatup_timeout_s: PositiveFinite | None = None
    exhaust: Exhaust | None = None
    drying: Drying | None = None
    f0_target_min: NonNegativeFinite | None = None
    equilibration_max_s: PositiveFinite | None = None
    bowie_dick_max_delta_c: PositiveFinite | None = None
    leak_test: LeakTestProgram | None = None

    @model_validator(mode="after")
    def _sections(self) -> AutoclaveProgram:
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
        assert self.prevacuum is not None and self.plateau is not None and self.f0_target_min is not None
        if self.kind == "sterilise":
            # a load held exactly at the set point for the hold time must meet its own F0 target
            # (F0 at T_ref 121.1 C, z 10 C [FEDF0]); otherwise a conforming cycle fails its release
            at_setpoint = self.plateau.hold_s / 60.0 * 10.0 ** ((self.plateau.setpoint_c - F0_T_REF_C) / F0_Z_C)
            if self.f0_target_min > at_setpoint + 1e-9:
                raise ValueError(
                    f"f0_target_min {self.f0_target_min} min is above the F0 of the program's own plateau "
                    f"({self.plateau.setpoint_c} C for {self.plateau.hold_s:.0f} s = {at_setpoint:.2f} min)")
            if self.equilibration_max_s is None:
                raise ValueError("a sterilise program needs equilibration_max_s (EN 285)")
        if self.prevacuum.vacuum_kpa >= 101.3 or self.prevacuum.pulse_high_kpa <= 101.3:
            raise ValueError("prevacuum: vacuum_kpa must be sub-atmospheric and pulse_high_kpa super-atmospheric")
        return self

class AutoclavePrograms(Model):
    programs: list[AutoclaveProgram] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> AutoclavePrograms:
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
