"""The container scanners' contract: one 2D-code reader per station (``scan(station)`` returns
what it read there), and the physical truth of what stands at each station, changed by
``place`` / ``remove`` (what the arm or a transfer does physically: never refused by the
reader's state). A read is never the truth: it may fail (no-read), be garbled (misread) or
show another container than the one expected (a swapped container)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..catalogue import REASON, Arg, CommandSpec, command
from ..process_equipment import equipment
from ..values import Refusal, bool_or_none, str_or_none

STATION = Arg("station", "str")
COMMANDS: tuple[CommandSpec, ...] = (
    command("scan", STATION, moves=False, description="read the label of the container at the station"),
    command("place", STATION, Arg("container_id", "str"), Arg("label", "str"), moves=False,
            description="a labelled container is put at the station (physical)"),
    command("remove", STATION, moves=False, description="the container at the station is taken away (physical)"),
    command("safe_state", REASON, moves=False, description="nothing to stop: the readers only read"),
)


@dataclass(frozen=True)
class ScannerReadings:
    stations: tuple[str, ...]
    values: Mapping[str, Any]

    @classmethod
    def parse(cls, v: Mapping[str, Any], cfg: Any) -> ScannerReadings:
        return cls(tuple(equipment(cfg).scanner.stations), v)


def hard_interlock(name: str, args: dict[str, Any], r: ScannerReadings, cfg: Any) -> Refusal:
    return None  # a reader only reads; an unknown station is refused by the controller (INVALID)


def signals(r: ScannerReadings, cfg: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for st in r.stations:
        out[f"scanner.{st}.occupied"] = bool_or_none(r.values.get(f"station.{st}.occupied"))
        out[f"scanner.{st}.last_status"] = str_or_none(r.values.get(f"station.{st}.last_status"))
        out[f"scanner.{st}.last_payload"] = str_or_none(r.values.get(f"station.{st}.last_payload"))
    return out


FUNCTIONAL_UNITS: tuple[tuple[str, tuple[str, ...]], ...] = (("Readers", ("",)),)
DEVICE_CLASS = "Container label readers (LADS Device)"
MODEL = "Emulated 2D-code readers"

Readings = ScannerReadings
