"""Process equipment in the cell (issue 14 item 1): the multi-slot incubator, the tube welder,
the sealer, the centrifuge, the cell counter and the container scanners. Each kind is a
folder like the other devices (``<kind>/config.py``, ``contract.py``); this module has what
they share: the ``process_equipment`` section of ``config/cell.yaml`` (enabled flag + each
unit's configuration), the run-style readings of the batch-operation units (welder, sealer,
centrifuge, counter) and the slot argument check.

Run-style units publish their command results the way the VHP unit and the autoclave do: the
start command returns a ``run_id``; the readings show ``busy`` / ``phase`` / ``status.run_id``
while it runs and ``last_result`` (``PASS`` / ``FAIL`` / ``NONE``) after it; ``get_result``
returns the full report (``run_id``, ``result``, ``reasons``, ``alarms``, kind-specific values),
and the device node publishes it as a ``cycle_result`` event when the run ends.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from ..config.base import Model
from .centrifuge.config import CentrifugeConfig
from .counter.config import CounterConfig
from .incubator.config import IncubatorConfig
from .scanner.config import ScannerConfig
from .sealer.config import SealerConfig
from .values import bool_or_none, num_or_none, str_or_none
from .welder.config import WelderConfig

PROCESS_KINDS = ("incubator", "welder", "sealer", "centrifuge", "counter", "scanner")
"""Node name = kind = the catalogue key of each process-equipment unit."""

RUN_KINDS = ("welder", "sealer", "centrifuge", "counter")
"""Units whose start command runs for a while and ends with a result (like a VHP cycle)."""


class ProcessEquipmentConfig(Model):
    """``config/cell.yaml`` ``process_equipment``: which units the cell has and their settings."""

    enabled: bool = Field(default=False, description="the cell has the process equipment: its node process "
                                                     "is launched and InProcessCell hosts it")
    incubator: IncubatorConfig = IncubatorConfig()
    welder: WelderConfig = WelderConfig()
    sealer: SealerConfig = SealerConfig()
    centrifuge: CentrifugeConfig = CentrifugeConfig()
    counter: CounterConfig = CounterConfig()
    scanner: ScannerConfig = ScannerConfig()

    def unit(self, kind: str) -> Any:
        return getattr(self, kind)

    def device_ids(self) -> list[str]:
        return [self.unit(k).id for k in PROCESS_KINDS]


def equipment(cfg: Any) -> ProcessEquipmentConfig:
    """The process-equipment section of a cell configuration (defaults when absent)."""
    pe = getattr(getattr(cfg, "layout", None), "process_equipment", None)
    return pe if isinstance(pe, ProcessEquipmentConfig) else ProcessEquipmentConfig()


def enabled(cfg: Any) -> bool:
    return equipment(cfg).enabled


# --------------------------------------------------------------------------- run-style readings
@dataclass(frozen=True)
class RunReadings:
    """What a run-style unit reports, typed; None = missing or malformed (unknown)."""

    busy: bool | None
    phase: str | None
    run_id: str | None
    last_result: str | None
    last_score: float | None
    faults: tuple[str, ...]
    values: Mapping[str, Any]

    @classmethod
    def parse(cls, v: Mapping[str, Any], cfg: Any) -> RunReadings:
        faults = v.get("status.faults")
        return cls(bool_or_none(v.get("busy")), str_or_none(v.get("phase")), str_or_none(v.get("status.run_id")),
                   str_or_none(v.get("last_result")), num_or_none(v.get("last_score")),
                   tuple(str(f) for f in faults) if isinstance(faults, list) else (), v)


def slot_number(v: Any, slots: int) -> int | None:
    """A slot argument (1..slots, a whole number) as an int; None if it is not one."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    if float(v) != int(v) or not 1 <= int(v) <= slots:
        return None
    return int(v)
