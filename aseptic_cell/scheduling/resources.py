"""The cell's common resources and the scheduling configuration (``config/scheduling.yaml``).

ISA-88 common resources [ISA88] [DELTAV]: exclusive-use (one owner at a time: ARM, WS,
GRADE_A_OPEN_ZONE, CFG, WLD, SLR, CC, RTP, PT, LABEL, ...), shared-use with a capacity
(autoclave loads), the incubator (each slot exclusive and bound to one batch from admission
to release) and VHP (cell-wide: while it runs nothing else is allocated [PICS-PI014]).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import Field, model_validator

from ..config.base import Fraction, Model, NonNegativeFinite, PositiveFinite
from ..config.loader import ConfigError, ConfigIssue, parse_yaml_file

OPEN_ZONE = "GRADE_A_OPEN_ZONE"
ARM = "ARM"
INCUBATOR = "INCUBATOR"

ResourceId = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]*$", max_length=40)]


class ResourceKind(StrEnum):
    EXCLUSIVE = "exclusive"
    SHARED = "shared"
    INCUBATOR_SLOT = "incubator_slot"
    CELL_WIDE = "cell_wide"


class ExclusiveResource(Model):
    id: ResourceId
    description: str = ""


class SharedResource(Model):
    id: ResourceId
    capacity: int = Field(ge=1)
    description: str = ""


class IncubatorConfig(Model):
    slots: int = Field(ge=1, le=256)
    slot_turnaround_h: NonNegativeFinite = 24.0


class VhpConfig(Model):
    id: ResourceId = "VHP"
    with_product_inside: bool = False


class ResourcesConfig(Model):
    exclusive: list[ExclusiveResource]
    incubator: IncubatorConfig
    shared: list[SharedResource] = Field(default_factory=list)
    vhp: VhpConfig = Field(default_factory=VhpConfig)

    @model_validator(mode="after")
    def _unique(self) -> ResourcesConfig:
        ids = [r.id for r in self.exclusive] + [r.id for r in self.shared] + [self.vhp.id, INCUBATOR]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"resource ids must be unique; repeated: {dup}")
        for required in (ARM, OPEN_ZONE):
            if required not in ids:
                raise ValueError(f"the cell needs the exclusive resource {required}")
        return self


class ArbitrationConfig(Model):
    t_warn_min: NonNegativeFinite = 60.0
    t_age_min: PositiveFinite = 30.0
    max_consecutive_open: int = Field(default=3, ge=1)
    safety_phases: list[str] = Field(default_factory=lambda: ["line_clearance", "spill_cleanup",
                                                              "glove_test", "vhp"])


class ChangeoverConfig(Model):
    t_line_clearance_min: NonNegativeFinite = 10.0
    t_purge_min: NonNegativeFinite = 20.0
    t_stable_min: NonNegativeFinite = 1.0
    line_clearance_resources: list[ResourceId] = Field(default_factory=lambda: [ARM, "WS"])


class AdmissionConfig(Model):
    availability: Fraction = 0.85
    release_lead_days: NonNegativeFinite = 7.0
    target_time_to_vein_days: PositiveFinite = 21.0
    bucket_h: PositiveFinite = 24.0


class SimulationConfig(Model):
    campaign_max_days: PositiveFinite = 7.0
    vhp_duration_h: NonNegativeFinite = 3.0
    failure_rate: Fraction = 0.05
    resource_mtbf_h: PositiveFinite = 500.0
    resource_mttr_h: NonNegativeFinite = 2.0
    duration_jitter: Fraction = 0.1


class SchedulingConfig(Model):
    """``config/scheduling.yaml``."""

    version: int = 1
    resources: ResourcesConfig
    arbitration: ArbitrationConfig = Field(default_factory=ArbitrationConfig)
    changeover: ChangeoverConfig = Field(default_factory=ChangeoverConfig)
    admission: AdmissionConfig = Field(default_factory=AdmissionConfig)
    simulation: SimulationConfig = Field(default_factory=SimulationConfig)

    @model_validator(mode="after")
    def _lc_resources_known(self) -> SchedulingConfig:
        known = {r.id for r in self.resources.exclusive}
        for r in self.changeover.line_clearance_resources:
            if r not in known:
                raise ValueError(f"changeover.line_clearance_resources: unknown exclusive resource {r!r}; "
                                 f"known: {sorted(known)}")
        return self


@dataclass(frozen=True)
class Resource:
    id: str
    kind: ResourceKind
    capacity: int


class ResourceSet:
    """The cell's resources: name → :class:`Resource`; incubator slots are ``INC-01``.. ."""

    def __init__(self, cfg: ResourcesConfig) -> None:
        self.config = cfg
        res: dict[str, Resource] = {}
        for e in cfg.exclusive:
            res[e.id] = Resource(e.id, ResourceKind.EXCLUSIVE, 1)
        for s in cfg.shared:
            res[s.id] = Resource(s.id, ResourceKind.SHARED, s.capacity)
        res[cfg.vhp.id] = Resource(cfg.vhp.id, ResourceKind.CELL_WIDE, 1)
        self.slots: tuple[str, ...] = tuple(f"INC-{i:02d}" for i in range(1, cfg.incubator.slots + 1))
        for slot in self.slots:
            res[slot] = Resource(slot, ResourceKind.INCUBATOR_SLOT, 1)
        self.by_id = res
        self.vhp = cfg.vhp.id

    def __contains__(self, rid: object) -> bool:
        return rid in self.by_id

    def __getitem__(self, rid: str) -> Resource:
        return self.by_id[rid]

    def names(self) -> list[str]:
        return sorted(self.by_id)

    def requestable(self) -> set[str]:
        """Names a phase may list: every resource except the individual slots (held from admission)."""
        return {r for r, v in self.by_id.items() if v.kind is not ResourceKind.INCUBATOR_SLOT}

    def capacity(self, rid: str) -> int:
        return self.by_id[rid].capacity


def load_scheduling(directory: str | Path) -> SchedulingConfig:
    """Load and validate ``<directory>/scheduling.yaml`` (raises :class:`ConfigError`)."""
    issues: list[ConfigIssue] = []
    cfg = parse_yaml_file(Path(directory) / "scheduling.yaml", SchedulingConfig, "scheduling.yaml", issues)
    if cfg is None:
        raise ConfigError(issues)
    return cfg
