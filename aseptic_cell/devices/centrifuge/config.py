"""The centrifuge's configuration and programs (``config/cell.yaml`` ``process_equipment.centrifuge``)."""

from __future__ import annotations

from pydantic import Field, model_validator

from ...config.base import Finite, Identifier, Model, NonNegativeFinite, PositiveFinite


class CentrifugeProgram(Model):
    id: Identifier
    rcf_g: PositiveFinite = Field(description="relative centrifugal force at the plateau (x g)")
    duration_s: PositiveFinite = Field(description="time at the plateau (s)")
    accel_s: NonNegativeFinite = 60.0
    decel_s: NonNegativeFinite = 60.0
    temp_c: Finite = 20.0


def _default_programs() -> list[CentrifugeProgram]:
    return [CentrifugeProgram(id="cell_wash", rcf_g=400.0, duration_s=600.0),
            CentrifugeProgram(id="pellet", rcf_g=300.0, duration_s=300.0)]


class CentrifugeConfig(Model):
    id: Identifier = "CFG1"
    imbalance_tolerance_g: PositiveFinite = Field(
        default=5.0, description="largest load/counterweight mass difference the rotor accepts (g)")
    max_load_g: PositiveFinite = 1000.0
    programs: list[CentrifugeProgram] = Field(default_factory=_default_programs, min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> CentrifugeConfig:
        ids = [p.id for p in self.programs]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"centrifuge program ids must be unique; repeated: {dup}")
        return self

    def program(self, program_id: str) -> CentrifugeProgram:
        for p in self.programs:
            if p.id == program_id:
                return p
        raise KeyError(f"unknown centrifuge program {program_id!r}; known: {[p.id for p in self.programs]}")
