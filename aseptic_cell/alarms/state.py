"""The alarm model of the ISA-18.2 manager: states, per-alarm state, events and views.

:class:`AlarmEntry` is the mutable state of one alarm (owned by
:class:`~.manager.AlarmManager`, which serialises every change under its lock);
:class:`AlarmEvent` is what listeners and the batch record receive; :class:`AlarmStatus` is
the read-only view for the HMI and OPC UA.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aseptic_cell.records.canonical import iso_utc

from .models import AlarmDef


class Clock(Protocol):
    def now(self) -> float: ...


class AlarmState(enum.StrEnum):
    NORMAL = "NORMAL"
    UNACK = "UNACK"
    ACKED = "ACKED"
    RTN_UNACK = "RTN_UNACK"
    LATCHED = "LATCHED"
    SHELVED = "SHELVED"
    SUPPRESSED = "SUPPRESSED"
    OUT_OF_SERVICE = "OUT_OF_SERVICE"


ANNUNCIATED = frozenset({AlarmState.UNACK, AlarmState.ACKED, AlarmState.RTN_UNACK, AlarmState.LATCHED})


class AlarmError(Exception):
    """An operator action on an alarm is not possible now; the message says why."""


class UnknownAlarmError(AlarmError, KeyError):
    """No alarm with that id in the master alarm database."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown alarm"


@dataclass(frozen=True)
class AlarmEvent:
    """What listeners receive (and what the record entry holds in its payload)."""

    event: str  # raised, acknowledged, returned, reset, shelved, unshelved, ...
    alarm_id: str  # "" for flood_start / flood_end
    state: str  # state after the event
    time: float
    actor: str = "system"
    reason: str = ""
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AlarmStatus:
    """Read-only view of one alarm for the HMI / OPC UA."""

    id: str
    state: AlarmState
    priority: str
    severity: int
    source: str
    device: str
    description: str
    limit_type: str
    value: Any
    message: str
    occurrence: int
    raised_at: float | None
    acked_by: str
    acked_at: float | None
    ack_comment: str
    returned_at: float | None
    shelved_until: float | None
    chattering: bool
    consequence: str
    response: str

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["state"] = self.state.value
        for k in ("raised_at", "acked_at", "returned_at", "shelved_until"):
            d[k + "_iso"] = iso_utc(d[k]) if d[k] is not None else None
        return d


def jsonable(value: Any) -> Any:
    """Make a process value safe for the record: NaN/inf become text (they are the news)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    return str(value)


def who(user: Any) -> tuple[str, str]:
    """(id, role) of a user given as an id string or an object with ``id`` / ``role``."""
    if isinstance(user, str):
        uid, role = user, ""
    else:
        uid, role = str(getattr(user, "id", "") or ""), str(getattr(user, "role", "") or "")
    if not uid.strip():
        raise AlarmError("an operator action on an alarm needs a user id (attributable)")
    return uid, role


class AlarmEntry:
    """The state of one alarm of the master alarm database (changed only by the manager)."""

    __slots__ = (
        "d",
        "active",
        "hidden",
        "acked",
        "latched_pending",
        "occurrence",
        "source",
        "value",
        "message",
        "raised_at",
        "acked_by",
        "acked_at",
        "ack_comment",
        "returned_at",
        "shelved_until",
        "shelved_by",
        "shelve_reason",
        "oos",
        "oos_by",
        "oos_reason",
        "occ_times",
        "chattering",
    )

    def __init__(self, d: AlarmDef) -> None:
        self.d = d
        self.active = False  # the process condition
        self.hidden = False  # condition active but not annunciated (suppressed by design)
        self.acked = True
        self.latched_pending = False
        self.occurrence = 0
        self.source = d.source
        self.value: Any = None
        self.message = ""
        self.raised_at: float | None = None
        self.acked_by = ""
        self.acked_at: float | None = None
        self.ack_comment = ""
        self.returned_at: float | None = None
        self.shelved_until: float | None = None
        self.shelved_by = ""
        self.shelve_reason = ""
        self.oos = False
        self.oos_by = ""
        self.oos_reason = ""
        self.occ_times: deque[float] = deque()
        self.chattering = False

    def state(self) -> AlarmState:
        if self.oos:
            return AlarmState.OUT_OF_SERVICE
        if self.shelved_until is not None:
            return AlarmState.SHELVED
        if self.active and self.hidden:
            return AlarmState.SUPPRESSED
        if self.active:
            return AlarmState.ACKED if self.acked else AlarmState.UNACK
        if not self.acked:
            return AlarmState.RTN_UNACK
        if self.latched_pending:
            return AlarmState.LATCHED
        return AlarmState.NORMAL
