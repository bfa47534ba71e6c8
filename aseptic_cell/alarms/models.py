"""Pydantic model of ``config/alarms.yaml``: the master alarm database (ISA-18.2 / IEC 62682
rationalisation: every alarm has a consequence, an operator response and a priority [ISA18.2]).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from aseptic_cell.config.base import Identifier, Model, PositiveFinite

Priority = Literal["emergency", "high", "medium", "low"]

SEVERITY_BANDS: dict[str, tuple[int, int]] = {
    # ISA-18.2 priority -> OPC UA A&C severity 1-1000 [OPC10000-9]; the bands are this project's choice
    "emergency": (900, 1000),
    "high": (700, 899),
    "medium": (400, 699),
    "low": (1, 399),
}
DEFAULT_SEVERITY: dict[str, int] = {"emergency": 950, "high": 800, "medium": 550, "low": 200}
PRIORITY_RANK: dict[str, int] = {"emergency": 0, "high": 1, "medium": 2, "low": 3}

LimitType = Literal[
    "low",
    "high",
    "low_low",
    "high_high",
    "alert",
    "action",
    "band",
    "discrete",
    "timeout",
    "comm_loss",
    "stale",
    "trip",
    "disagreement",
]


class AlarmDef(Model):
    """One rationalised alarm."""

    id: Identifier
    description: str = Field(min_length=1)
    source: str = Field(min_length=1, max_length=128, description="source tag, e.g. ISO1.dP_isolator_Pa")
    device: Identifier = Field(description="device id (ISO1, VHP1, AC1, ARM1) or CELL")
    priority: Priority
    severity: int | None = Field(
        default=None, description="OPC UA severity; defaults to the middle of the band"
    )
    limit_type: LimitType
    limit: str = Field(
        default="", description="where the limit value is configured (file and field), or the rule"
    )
    consequence: str = Field(min_length=1, description="what happens if the operator does not respond")
    response: str = Field(min_length=1, description="what the operator must do")
    latched: bool = Field(default=False, description="stays annunciated after return to normal until reset")
    shelvable: bool = Field(default=True, description="may be shelved at all (safety alarms: false)")
    max_shelve_s: PositiveFinite | None = Field(
        default=None, description="per-alarm cap on the shelve time (s)"
    )
    enabled_when: list[Identifier] = Field(
        default_factory=list,
        description="design states that must all be true for the alarm to annunciate "
        "(suppressed by design otherwise, e.g. VHP alarms only while VHP runs)",
    )
    disabled_when: list[Identifier] = Field(
        default_factory=list,
        description="design states any of which suppresses the alarm by design (e.g. the H2O2 "
        "release alarm while a VHP cycle runs)",
    )
    basis: str = Field(default="", description="source of the limit / requirement (keys: docs/REFERENCES.md)")

    @model_validator(mode="after")
    def _severity(self) -> AlarmDef:
        lo, hi = SEVERITY_BANDS[self.priority]
        if self.severity is None:
            object.__setattr__(self, "severity", DEFAULT_SEVERITY[self.priority])
        elif not lo <= self.severity <= hi:
            raise ValueError(f"severity {self.severity} outside the {self.priority} band {lo}-{hi}")
        return self

    @property
    def effective_severity(self) -> int:
        return self.severity if self.severity is not None else DEFAULT_SEVERITY[self.priority]


class AlarmSettings(Model):
    flood_start_count: int = Field(
        default=10, ge=1, description="more than this many in the window starts a flood"
    )
    flood_end_count: int = Field(default=5, ge=1, description="fewer than this many in the window ends it")
    flood_window_s: PositiveFinite = Field(default=600.0, description="ISA-18.2: 10 alarms / 10 min")
    chatter_count: int = Field(
        default=3, ge=2, description="this many occurrences within the window = chattering"
    )
    chatter_window_s: PositiveFinite = Field(default=60.0)
    max_shelve_s: PositiveFinite = Field(default=28_800.0, description="longest shelve anybody may set (s)")
    shelve_requires_signature: bool = True
    out_of_service_requires_signature: bool = True
    signature_max_age_s: PositiveFinite = Field(
        default=300.0, description="a signature older than this is stale"
    )
    stale_alarm_s: PositiveFinite = Field(
        default=86_400.0, description="an alarm standing this long is stale"
    )

    @model_validator(mode="after")
    def _flood(self) -> AlarmSettings:
        if self.flood_end_count > self.flood_start_count:
            raise ValueError("flood_end_count must not exceed flood_start_count")
        return self


class AlarmsFile(Model):
    """``config/alarms.yaml``."""

    settings: AlarmSettings = Field(default_factory=lambda: AlarmSettings())
    design_states: list[Identifier] = Field(
        default_factory=list, description="named plant states used by enabled_when"
    )
    alarms: list[AlarmDef] = Field(min_length=1)

    @model_validator(mode="after")
    def _refs(self) -> AlarmsFile:
        seen: set[str] = set()
        for a in self.alarms:
            if a.id in seen:
                raise ValueError(f"alarm id {a.id!r} is defined twice")
            seen.add(a.id)
            unknown = [s for s in (*a.enabled_when, *a.disabled_when) if s not in self.design_states]
            if unknown:
                raise ValueError(
                    f"alarm {a.id!r}: enabled_when/disabled_when name unknown design state(s) {unknown}"
                )
        return self


def cross_check(alarms: AlarmsFile, device_ids: list[str] | tuple[str, ...]) -> list[str]:
    """Problems between ``alarms.yaml`` and the cell layout, for the config loader.

    Every alarm's ``device`` must be a device of the cell (``CellLayout.device_ids()``) or
    ``CELL``; every device must have a communication-loss alarm (ARCHITECTURE rule 6).
    Returns human-readable problems (empty when consistent).
    """
    known = set(device_ids) | {"CELL"}
    problems = [
        f"alarms[{i}] {a.id}: device {a.device!r} is not a device of the cell ({', '.join(sorted(known))})"
        for i, a in enumerate(alarms.alarms)
        if a.device not in known
    ]
    comm = {a.device for a in alarms.alarms if a.limit_type == "comm_loss"}
    problems += [f"device {d!r} has no comm_loss alarm" for d in device_ids if d not in comm]
    return problems
