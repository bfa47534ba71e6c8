"""The container scanners' configuration (``config/cell.yaml`` ``process_equipment.scanner``):
one 2D-code reader at each station."""

from __future__ import annotations

from pydantic import Field, model_validator

from ...config.base import Identifier, Model

DEFAULT_STATIONS = ("rtp", "workstation", "incubator", "welder", "sealer", "centrifuge", "counter")


class ScannerConfig(Model):
    id: Identifier = "SCN1"
    stations: list[Identifier] = Field(default_factory=lambda: list(DEFAULT_STATIONS), min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> ScannerConfig:
        dup = sorted({s for s in self.stations if self.stations.count(s) > 1})
        if dup:
            raise ValueError(f"scanner stations must be unique; repeated: {dup}")
        return self

    def reader_id(self, station: str) -> str:
        return f"{self.id}-{station}"
