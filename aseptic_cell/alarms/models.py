"""Pydantic model of ``config/alarms.yaml``: the master alarm database (ISA-18.2 / IEC 62682
rationalisation: every alarm has a consequence, an operator response and a priority [ISA18.2]).
"""

from __future__ import annotations

from typing import Any, Literal

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


RaisedBy = Literal[
    "condition",  # ProcessAlarms evaluates `condition` every supervisor tick (generic, with delays)
    "cycle_result",  # ProcessAlarms.cycle_result: a VHP / autoclave cycle report (FAIL or an alarm code)
    "interlock_trip",  # Trips / Supervisor.hold: an interlock trip or a phase failure
    "comm_loss",  # ProcessAlarms.watch_comm (supervisor) and the device node (its own heartbeat)
    "stale_data",  # ProcessAlarms.watch_stale: a signal a condition reads is older than stale_after_s
    "lifecycle_manager",  # aseptic_cell/nodes/lifecycle_manager.py (node lost / failed to start)
    "supervisor_recovery",  # supervisor/interrupted.py (and the lifecycle manager's supervisor watchdog)
    "record_fault",  # Supervisor: a batch record write or integrity failure
]
"""The code path that owns (raises and returns to normal) an alarm; one per alarm."""

CONDITION_OPS = ("lt", "le", "gt", "ge", "eq", "ne")
Operand = float | bool | str
"""A condition operand: a number, a bool, a text value, or ``cfg:<dotted path>`` into the cell
configuration (one source for limits: e.g. ``cfg:layout.isolator.pressure.alarm_low_pa``)."""


class AlarmCondition(Model):
    """A process-alarm condition, evaluated generically (ISA-18.2 on-delay, off-delay and
    deadband [ISA18.2]; alarm delays that ride through door transients, Annex 1 §4.15-4.18
    [ANNEX1-2022] [M]).

    Either a comparison (``signal`` ``op`` ``limit``) or ``all`` / ``any`` of sub-conditions.
    A signal name may hold ``{port}``, ``{rtp}`` or ``{door}`` (hatch door A/B): the
    condition is then true when it is true for any of them. Unknown (missing, stale, lost)
    signals neither raise nor clear: unknown is not normal.
    """

    signal: str | None = Field(default=None, max_length=128, description="supervisor signal name")
    op: Literal["lt", "le", "gt", "ge", "eq", "ne"] | None = None
    limit: Operand | None = None
    offset: float = Field(default=0.0, description="added to a numeric limit (e.g. 'due 12 h before the window')")
    all: list[AlarmCondition] | None = None
    any: list[AlarmCondition] | None = None
    deadband: Operand = Field(
        default=0.0, description="numeric comparison: returns to normal only beyond the limit by this much")
    on_delay_s: Operand = Field(default=0.0, description="present this long before it is raised (s)")
    off_delay_s: Operand = Field(default=0.0, description="absent this long before it returns to normal (s)")
    hold_batch: Literal["never", "open_product", "always"] = Field(
        default="never",
        description="raising it holds a batch in progress: always, or during an open-product phase "
                    "(environmental monitoring that acts, Annex 1 §9 [ANNEX1-2022] [M])")

    @model_validator(mode="after")
    def _shape(self) -> AlarmCondition:
        leaf = self.signal is not None
        kids = [x for x in (self.all, self.any) if x is not None]
        if leaf == bool(kids) or len(kids) > 1:
            raise ValueError("a condition is either signal/op/limit or exactly one of all/any")
        if leaf and (self.op is None or self.limit is None):
            raise ValueError(f"condition on {self.signal}: needs op and limit")
        if kids and not kids[0]:
            raise ValueError("all/any needs at least one condition")
        return self

    def leaves(self) -> list[AlarmCondition]:
        if self.signal is not None:
            return [self]
        return [leaf for c in (self.all or self.any or []) for leaf in c.leaves()]


class CycleTrigger(Model):
    """An alarm raised from a cycle report (``raised_by: cycle_result``)."""

    result: Literal["vhp", "autoclave"]
    codes: list[str] = Field(
        default_factory=list,
        description="cycle alarm codes that raise it (the cycle model's AlarmRecord codes); empty: any FAIL")


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
    raised_by: RaisedBy = Field(description="the code path that owns this alarm (raises it, returns it to normal)")
    condition: AlarmCondition | None = Field(default=None, description="raised_by: condition")
    cycle: CycleTrigger | None = Field(default=None, description="raised_by: cycle_result")

    @model_validator(mode="after")
    def _owner(self) -> AlarmDef:
        if (self.raised_by == "condition") != (self.condition is not None):
            raise ValueError(f"alarm {self.id}: a condition is given exactly when raised_by is 'condition'")
        if (self.raised_by == "cycle_result") != (self.cycle is not None):
            raise ValueError(f"alarm {self.id}: cycle is given exactly when raised_by is 'cycle_result'")
        return self

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
    design_state_conditions: dict[Identifier, AlarmCondition] = Field(
        default_factory=dict,
        description="design states the supervisor sets from signals every tick (the others are set by "
                    "the code that knows them, e.g. batch_active by the batch executive)")
    open_product_phase_types: list[Identifier] = Field(
        default_factory=list,
        description="recipe phase types during which product or product-contact material is open in grade A: "
                    "environmental monitoring acts (hold_batch: open_product) and each such phase's record "
                    "carries an EM summary [M]")
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
        unknown = [s for s in self.design_state_conditions if s not in self.design_states]
        if unknown:
            raise ValueError(f"design_state_conditions name undeclared design state(s) {unknown}")
        return self

    def priority_distribution(self) -> dict[str, Any]:
        """Count and share of each priority (ISA-18.2 guidance: roughly 5 % / 15 % / 80 % for
        high / medium / low, emergency counted with high [ISA18.2] [TAGS])."""
        n = len(self.alarms)
        counts = {p: sum(1 for a in self.alarms if a.priority == p) for p in PRIORITY_RANK}
        return {"total": n, "counts": counts, "percent": {p: round(100.0 * c / n, 1) for p, c in counts.items()}}


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


_DB_SEVERITY: dict[str, int] = {}
_DB_RATIONALE: dict[str, tuple[str, str]] = {}


def _load_database() -> None:
    if _DB_SEVERITY:
        return
    from aseptic_cell.config import default_config_dir

    from .manager import load_alarms_file

    for a in load_alarms_file(default_config_dir() / "alarms.yaml").alarms:
        _DB_SEVERITY[a.id] = a.effective_severity
        _DB_RATIONALE[a.id] = (a.consequence, a.response)


def database_rationale(alarm_id: str) -> tuple[str, str]:
    """(consequence, operator response) of ``alarm_id`` in the shipped master alarm database, for
    the displays and the OPC UA cell server; ("", "") for an id it does not hold."""
    _load_database()
    return _DB_RATIONALE.get(alarm_id, ("", ""))


def database_severity(alarm_id: str, alarms: AlarmsFile | None = None) -> int:
    """OPC UA severity of ``alarm_id`` from the master alarm database (``alarms``, or the
    shipped ``config/alarms.yaml``): what the ROS nodes that publish raw alarms on ``/cell/alarms``
    (device nodes, lifecycle manager) put in ``Alarm.priority``, so an alarm has one priority
    wherever it is raised.

    Raises:
        KeyError: ``alarm_id`` is not in the database (nothing raises an id outside it).
    """
    if alarms is not None:
        for a in alarms.alarms:
            if a.id == alarm_id:
                return a.effective_severity
        raise KeyError(f"alarm id {alarm_id!r} is not in the master alarm database")
    _load_database()
    if alarm_id not in _DB_SEVERITY:
        raise KeyError(f"alarm id {alarm_id!r} is not in the master alarm database")
    return _DB_SEVERITY[alarm_id]
