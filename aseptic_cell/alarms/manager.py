"""ISA-18.2 (IEC 62682) alarm manager with the GMP overlay of domain spec §5.4.

States (spec §5.4): NORMAL, UNACK, ACKED, RTN_UNACK (returned to normal, unacknowledged),
LATCHED (returned and acknowledged, waiting for reset), SHELVED (operator-initiated, time-limited,
auto-unshelved on the injected clock), SUPPRESSED (by design: the alarm's ``enabled_when`` plant
states are not all true), OUT_OF_SERVICE (maintenance, under management of change).

Every raise, acknowledgement, return to normal, reset, shelve/unshelve, suppression,
out-of-service change, flood start/end and chattering start/end is written to the batch
record (kind ``alarm``) with the per-alarm fields of spec §1.6, and sent to listeners.
Listeners are observers: an exception in one is logged and never reaches the caller
(ARCHITECTURE rule 4). A record write that fails is logged and retried on the next event, in
order, so nothing is lost while the record store recovers; the alarm itself is annunciated
regardless.
"""

from __future__ import annotations

import enum
import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml
from pydantic import ValidationError

from aseptic_cell.auth._yaml import load_yaml_strict
from aseptic_cell.records.canonical import content_hash, iso_utc

from .models import PRIORITY_RANK, AlarmDef, AlarmSettings, AlarmsFile

if TYPE_CHECKING:
    from aseptic_cell.records import BatchRecord

log = logging.getLogger(__name__)


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


class AlarmsFileError(ValueError):
    """``alarms.yaml`` is malformed or invalid."""


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


def _jsonable(value: Any) -> Any:
    """Make a process value safe for the record: NaN/inf become text (they are the news)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    return str(value)


def _who(user: Any) -> tuple[str, str]:
    """(id, role) of a user given as an id string or an object with ``id`` / ``role``."""
    if isinstance(user, str):
        uid, role = user, ""
    else:
        uid, role = str(getattr(user, "id", "") or ""), str(getattr(user, "role", "") or "")
    if not uid.strip():
        raise AlarmError("an operator action on an alarm needs a user id (attributable)")
    return uid, role


class _Alarm:
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


class AlarmManager:
    """ISA-18.2 alarm manager.

    Args:
        defs: the master alarm database (an :class:`AlarmsFile`, or alarm definitions).
        clock: injected clock; shelve expiry, flood and chattering windows run on it.
        record: optional :class:`~aseptic_cell.records.BatchRecord`; every alarm event is
            appended to it as kind ``alarm``.
        settings: overrides ``defs.settings`` (or the defaults when ``defs`` is a list).

    Thread-safe. Call :meth:`tick` periodically (the supervisor tick) so that shelves expire
    and floods end even when no other alarm call happens.
    """

    def __init__(
        self,
        defs: AlarmsFile | Iterable[AlarmDef],
        clock: Clock,
        record: BatchRecord | None = None,
        *,
        settings: AlarmSettings | None = None,
    ) -> None:
        if isinstance(defs, AlarmsFile):
            alarm_defs, design_states = list(defs.alarms), list(defs.design_states)
            settings = settings or defs.settings
        else:
            alarm_defs = list(defs)
            design_states = sorted({s for d in alarm_defs for s in (*d.enabled_when, *d.disabled_when)})
        self.settings = settings or AlarmSettings()
        self._clock = clock
        self._record = record
        self._lock = threading.RLock()
        self._alarms: dict[str, _Alarm] = {}
        for d in alarm_defs:
            if d.id in self._alarms:
                raise ValueError(f"alarm id {d.id!r} defined twice")
            self._alarms[d.id] = _Alarm(d)
        self._design: dict[str, bool] = {s: False for s in design_states}
        self._listeners: list[Callable[[AlarmEvent], None]] = []
        self._ann_times: deque[float] = deque()
        self._in_flood = False
        self._flood_started: float | None = None
        self._flood_time_s = 0.0
        self._annunciated_total = 0
        self._pending: deque[dict[str, Any]] = deque()
        self.batch_id = ""

    @classmethod
    def from_file(cls, path: str | Path, clock: Clock, record: BatchRecord | None = None) -> AlarmManager:
        """Load ``alarms.yaml`` and build a manager.

        Raises:
            AlarmsFileError: malformed YAML or a validation problem (message names the file).
        """
        return cls(load_alarms_file(path), clock, record)

    # ------------------------------------------------------------------ configuration
    def set_batch(self, batch_id: str) -> None:
        """Batch that following record entries are linked to ("" = cell level)."""
        with self._lock:
            self.batch_id = batch_id

    def definition(self, alarm_id: str) -> AlarmDef:
        return self._get(alarm_id).d

    def definitions(self) -> list[AlarmDef]:
        return [a.d for a in self._alarms.values()]

    def subscribe(self, callback: Callable[[AlarmEvent], None]) -> Callable[[], None]:
        """Register a listener; returns a function that unsubscribes it."""
        with self._lock:
            self._listeners.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        return unsubscribe

    # ------------------------------------------------------------------ process side
    def raise_(
        self, alarm_id: str, source: str | None = None, value: Any = None, message: str = ""
    ) -> AlarmState:
        """The alarm condition is present (idempotent while it stays present: value updated).

        Raises:
            UnknownAlarmError: ``alarm_id`` is not in the master alarm database.
        """
        events: list[AlarmEvent] = []
        with self._lock:
            now = self._now()
            a = self._get(alarm_id)
            self._housekeeping(now, events)
            if source:
                a.source = source
            a.value, a.message = _jsonable(value), str(message)
            if a.active:
                return a.state()  # still present: no new occurrence
            a.active = True
            a.returned_at = None
            if a.oos or a.shelved_until is not None:
                a.hidden = False
                a.raised_at = now
                self._emit(
                    events, a, "raised_hidden", now, reason=f"condition present while {a.state().value}"
                )
            elif not self._enabled(a):
                a.hidden = True
                a.raised_at = now
                self._emit(
                    events,
                    a,
                    "suppressed_by_design",
                    now,
                    reason=f"not annunciated by design: {self._disabled_states(a)}",
                )
            else:
                self._annunciate(a, now, events, "raised")
            state = a.state()
        self._notify(events)
        return state

    def clear(self, alarm_id: str, value: Any = None) -> AlarmState:
        """The process condition returned to normal."""
        events: list[AlarmEvent] = []
        with self._lock:
            now = self._now()
            a = self._get(alarm_id)
            self._housekeeping(now, events)
            if not a.active:
                return a.state()
            was_hidden = a.hidden
            a.active, a.hidden = False, False
            if value is not None:
                a.value = _jsonable(value)
            a.returned_at = now
            if a.d.latched and not was_hidden and a.shelved_until is None and not a.oos:
                a.latched_pending = True
            self._emit(events, a, "returned", now)
            state = a.state()
        self._notify(events)
        return state

    def set_design_state(self, name: str, value: bool) -> None:
        """Set a plant state used for suppression by design (e.g. ``vhp_running``).

        When a state becomes true, alarms whose condition is already present annunciate.
        Alarms already annunciated stay visible when a state becomes false.

        Raises:
            KeyError: the state is not declared in ``design_states``.
        """
        events: list[AlarmEvent] = []
        with self._lock:
            if name not in self._design:
                raise KeyError(f"unknown design state {name!r}; declared: {sorted(self._design)}")
            now = self._now()
            self._housekeeping(now, events)
            self._design[name] = bool(value)
            for a in self._alarms.values():
                if a.active and a.hidden and self._enabled(a):
                    a.hidden = False
                    self._annunciate(a, now, events, "raised")
        self._notify(events)

    # ------------------------------------------------------------------ operator side
    def acknowledge(self, alarm_id: str, user: Any, comment: str = "") -> AlarmState:
        """Acknowledge an UNACK or RTN_UNACK alarm (user id or User object; comment recorded).

        Raises:
            AlarmError: nothing to acknowledge (already acknowledged, normal, shelved, suppressed,
                out of service).
        """
        uid, role = _who(user)
        events: list[AlarmEvent] = []
        with self._lock:
            now = self._now()
            a = self._get(alarm_id)
            self._housekeeping(now, events)
            st = a.state()
            if st not in (AlarmState.UNACK, AlarmState.RTN_UNACK):
                raise AlarmError(f"alarm {alarm_id} is {st.value}: nothing to acknowledge")
            a.acked, a.acked_by, a.acked_at, a.ack_comment = True, uid, now, str(comment)
            self._emit(events, a, "acknowledged", now, actor=uid, role=role, reason=str(comment))
            state = a.state()
        self._notify(events)
        return state

    def reset(self, alarm_id: str, user: Any, comment: str = "") -> AlarmState:
        """Reset a LATCHED alarm (returned to normal and acknowledged) to NORMAL.

        Raises:
            AlarmError: the alarm is not latched, its condition is still present, or it is
                not acknowledged yet.
        """
        uid, role = _who(user)
        events: list[AlarmEvent] = []
        with self._lock:
            now = self._now()
            a = self._get(alarm_id)
            self._housekeeping(now, events)
            st = a.state()
            if st is AlarmState.RTN_UNACK and a.latched_pending:
                raise AlarmError(f"alarm {alarm_id} must be acknowledged before it can be reset")
            if st is not AlarmState.LATCHED:
                raise AlarmError(
                    f"alarm {alarm_id} is {st.value}: only a LATCHED alarm can be reset"
                    + (" (condition still present)" if a.active else "")
                )
            a.latched_pending = False
            self._emit(events, a, "reset", now, actor=uid, role=role, reason=str(comment))
            state = a.state()
        self._notify(events)
        return state

    def shelve_subject_hash(self, alarm_id: str, user: Any, reason: str, duration_s: float) -> str:
        """The hash an e-signature for this shelve request must cover (Part 11 §11.70)."""
        uid, _ = _who(user)
        a = self._get(alarm_id)
        return content_hash(
            {
                "request": "alarm.shelve",
                "alarm_id": alarm_id,
                "user": uid,
                "reason": reason,
                "duration_s": float(duration_s),
                "occurrence": a.occurrence,
            }
        )

    def out_of_service_subject_hash(self, alarm_id: str, user: Any, reason: str) -> str:
        uid, _ = _who(user)
        return content_hash(
            {
                "request": "alarm.out_of_service",
                "alarm_id": alarm_id,
                "user": uid,
                "reason": reason,
                "occurrence": self._get(alarm_id).occurrence,
            }
        )

    def shelve(
        self, alarm_id: str, user: Any, reason: str, duration_s: float, signature: Any = None
    ) -> AlarmState:
        """Shelve an alarm for ``duration_s`` (time-limited; auto-unshelved on the clock).

        Args:
            signature: an :class:`~aseptic_cell.auth.Signature` by ``user`` whose
                ``record_hash`` is :meth:`shelve_subject_hash` of this request; required when
                ``settings.shelve_requires_signature``.

        Raises:
            AlarmError: not shelvable, no reason, duration out of range, already shelved or out
                of service, missing / wrong / stale signature.
        """
        uid, role = _who(user)
        events: list[AlarmEvent] = []
        with self._lock:
            now = self._now()
            a = self._get(alarm_id)
            self._housekeeping(now, events)
            if not a.d.shelvable:
                raise AlarmError(f"alarm {alarm_id} may not be shelved (rationalised as not shelvable)")
            if not str(reason).strip():
                raise AlarmError("shelving needs a reason")
            cap = min(self.settings.max_shelve_s, a.d.max_shelve_s or math.inf)
            if not (
                isinstance(duration_s, (int, float)) and math.isfinite(duration_s) and 0 < duration_s <= cap
            ):
                raise AlarmError(f"shelve duration must be > 0 and <= {cap:g} s, got {duration_s!r}")
            if a.oos:
                raise AlarmError(f"alarm {alarm_id} is out of service")
            if a.shelved_until is not None:
                raise AlarmError(f"alarm {alarm_id} is already shelved until {iso_utc(a.shelved_until)}")
            sig_payload = None
            if self.settings.shelve_requires_signature or signature is not None:
                sig_payload = self._check_signature(
                    signature,
                    uid,
                    now,
                    self.shelve_subject_hash(alarm_id, uid, reason, duration_s),
                    "shelving",
                )
            a.shelved_until, a.shelved_by, a.shelve_reason = now + float(duration_s), uid, str(reason)
            extra: dict[str, Any] = {
                "shelved_until": a.shelved_until,
                "shelved_until_iso": iso_utc(a.shelved_until),
                "duration_s": float(duration_s),
            }
            if sig_payload is not None:
                extra["signature"] = sig_payload
            self._emit(events, a, "shelved", now, actor=uid, role=role, reason=str(reason), extra=extra)
            state = a.state()
        self._notify(events)
        return state

    def unshelve(self, alarm_id: str, user: Any, reason: str = "") -> AlarmState:
        """End a shelve early."""
        uid, role = _who(user)
        events: list[AlarmEvent] = []
        with self._lock:
            now = self._now()
            a = self._get(alarm_id)
            self._housekeeping(now, events)
            if a.shelved_until is None:
                raise AlarmError(f"alarm {alarm_id} is not shelved")
            self._unshelve(a, now, events, actor=uid, role=role, reason=reason or "unshelved by operator")
            state = a.state()
        self._notify(events)
        return state

    def remove_from_service(self, alarm_id: str, user: Any, reason: str, signature: Any = None) -> AlarmState:
        """Take an alarm out of service (maintenance, management of change; e-signature).

        Raises:
            AlarmError: no reason, or a missing / wrong / stale signature.
        """
        uid, role = _who(user)
        events: list[AlarmEvent] = []
        with self._lock:
            now = self._now()
            a = self._get(alarm_id)
            self._housekeeping(now, events)
            if not str(reason).strip():
                raise AlarmError("taking an alarm out of service needs a reason")
            if a.oos:
                raise AlarmError(f"alarm {alarm_id} is already out of service")
            extra: dict[str, Any] = {}
            if self.settings.out_of_service_requires_signature or signature is not None:
                extra["signature"] = self._check_signature(
                    signature,
                    uid,
                    now,
                    self.out_of_service_subject_hash(alarm_id, uid, reason),
                    "taking an alarm out of service",
                )
            a.oos, a.oos_by, a.oos_reason = True, uid, str(reason)
            a.shelved_until = None
            self._emit(
                events, a, "out_of_service", now, actor=uid, role=role, reason=str(reason), extra=extra
            )
            state = a.state()
        self._notify(events)
        return state

    def return_to_service(self, alarm_id: str, user: Any, reason: str = "") -> AlarmState:
        uid, role = _who(user)
        events: list[AlarmEvent] = []
        with self._lock:
            now = self._now()
            a = self._get(alarm_id)
            self._housekeeping(now, events)
            if not a.oos:
                raise AlarmError(f"alarm {alarm_id} is not out of service")
            a.oos = False
            self._emit(events, a, "returned_to_service", now, actor=uid, role=role, reason=str(reason))
            if a.active:
                self._reannunciate(a, now, events)
        self._notify(events)
        return a.state()

    # ------------------------------------------------------------------ views
    def tick(self) -> None:
        """Advance time-based logic: shelve expiry, flood end, chattering end."""
        events: list[AlarmEvent] = []
        with self._lock:
            self._housekeeping(self._now(), events)
        self._notify(events)

    def state(self, alarm_id: str) -> AlarmState:
        self.tick()
        with self._lock:
            return self._get(alarm_id).state()

    def status(self, alarm_id: str) -> AlarmStatus:
        self.tick()
        with self._lock:
            return self._status(self._get(alarm_id))

    def active(self) -> list[AlarmStatus]:
        """Annunciated alarms (UNACK, ACKED, RTN_UNACK, LATCHED), most urgent first."""
        self.tick()
        with self._lock:
            out = [self._status(a) for a in self._alarms.values() if a.state() in ANNUNCIATED]
        out.sort(
            key=lambda s: (PRIORITY_RANK[s.priority], s.state is not AlarmState.UNACK, -(s.raised_at or 0.0))
        )
        return out

    def shelved(self) -> list[AlarmStatus]:
        """Shelved alarms (ISA-18.2: kept visible in a shelved list, with their expiry)."""
        self.tick()
        with self._lock:
            out = [self._status(a) for a in self._alarms.values() if a.state() is AlarmState.SHELVED]
        return sorted(out, key=lambda s: (s.shelved_until or 0.0, s.id))

    @property
    def in_flood(self) -> bool:
        self.tick()
        return self._in_flood

    def snapshot(self) -> dict[str, Any]:
        """JSON-friendly view for the HMI and the OPC UA Alarms node."""
        self.tick()
        with self._lock:
            now = self._now()
            counts: dict[str, int] = {s.value: 0 for s in AlarmState}
            for a in self._alarms.values():
                counts[a.state().value] += 1
            flood_time = self._flood_time_s + (
                (now - self._flood_started) if self._in_flood and self._flood_started is not None else 0.0
            )
            return {
                "time": now,
                "time_iso": iso_utc(now),
                "batch_id": self.batch_id,
                "in_flood": self._in_flood,
                "alarms_in_flood_window": len(self._ann_times),
                "flood_time_s": flood_time,
                "annunciated_total": self._annunciated_total,
                "unrecorded_events": len(self._pending),
                "counts": counts,
                "design_states": dict(self._design),
                "alarms": [
                    self._status(a).to_dict()
                    for a in self._alarms.values()
                    if a.state() is not AlarmState.NORMAL
                ],
            }

    # ------------------------------------------------------------------ internals
    def _now(self) -> float:
        t = float(self._clock.now())
        if not math.isfinite(t):
            raise ValueError(f"clock returned a non-finite time {t!r}")
        return t

    def _get(self, alarm_id: str) -> _Alarm:
        try:
            return self._alarms[alarm_id]
        except KeyError:
            raise UnknownAlarmError(
                f"unknown alarm id {alarm_id!r} (not in the master alarm database)"
            ) from None

    def _enabled(self, a: _Alarm) -> bool:
        return all(self._design.get(s, False) for s in a.d.enabled_when) and not any(
            self._design.get(s, False) for s in a.d.disabled_when
        )

    def _disabled_states(self, a: _Alarm) -> str:
        off = [f"{s}=false" for s in a.d.enabled_when if not self._design.get(s, False)]
        on = [f"{s}=true" for s in a.d.disabled_when if self._design.get(s, False)]
        return ", ".join(off + on)

    def _check_signature(
        self, signature: Any, uid: str, now: float, subject: str, what: str
    ) -> dict[str, Any]:
        if signature is None:
            raise AlarmError(f"{what} needs an e-signature (spec §5.4 GMP overlay)")
        sig_user = getattr(signature, "user_id", None)
        if sig_user != uid:
            raise AlarmError(f"the e-signature is by {sig_user!r}, not by {uid!r}")
        if getattr(signature, "record_hash", None) != subject:
            raise AlarmError("the e-signature does not cover this request (record hash differs)")
        signed_at = getattr(signature, "signed_at", None)
        if not isinstance(signed_at, (int, float)) or not (
            0 <= now - signed_at <= self.settings.signature_max_age_s
        ):
            raise AlarmError(
                f"the e-signature is stale or from the future "
                f"(max age {self.settings.signature_max_age_s:g} s)"
            )
        to_payload = getattr(signature, "to_payload", None)
        return dict(to_payload()) if callable(to_payload) else {"user_id": uid, "record_hash": subject}

    def _annunciate(self, a: _Alarm, now: float, events: list[AlarmEvent], event: str) -> None:
        a.occurrence += 1
        a.acked, a.acked_by, a.acked_at, a.ack_comment = False, "", None, ""
        a.latched_pending = False
        a.raised_at = now
        a.hidden = False
        self._annunciated_total += 1
        self._emit(events, a, event, now, reason=a.message)
        # chattering (spec §5.4: e.g. >= 3 in 1 min)
        a.occ_times.append(now)
        self._prune(a.occ_times, now, self.settings.chatter_window_s)
        if not a.chattering and len(a.occ_times) >= self.settings.chatter_count:
            a.chattering = True
            self._emit(
                events,
                a,
                "chattering",
                now,
                reason=f"{len(a.occ_times)} occurrences within {self.settings.chatter_window_s:g} s",
            )
        # flood (ISA-18.2: > 10 in 10 min starts, < 5 in 10 min ends)
        self._ann_times.append(now)
        self._prune(self._ann_times, now, self.settings.flood_window_s)
        if not self._in_flood and len(self._ann_times) > self.settings.flood_start_count:
            self._in_flood, self._flood_started = True, now
            self._emit_cell(
                events,
                "flood_start",
                now,
                f"{len(self._ann_times)} alarms within {self.settings.flood_window_s:g} s",
            )

    def _reannunciate(self, a: _Alarm, now: float, events: list[AlarmEvent]) -> None:
        if self._enabled(a):
            self._annunciate(a, now, events, "raised")
        else:
            a.hidden = True

    def _unshelve(
        self, a: _Alarm, now: float, events: list[AlarmEvent], *, actor: str, role: str, reason: str
    ) -> None:
        a.shelved_until = None
        self._emit(events, a, "unshelved", now, actor=actor, role=role, reason=reason)
        if a.active:
            self._reannunciate(a, now, events)

    @staticmethod
    def _prune(q: deque[float], now: float, window: float) -> None:
        while q and q[0] <= now - window:
            q.popleft()

    def _housekeeping(self, now: float, events: list[AlarmEvent]) -> None:
        for a in self._alarms.values():
            if a.shelved_until is not None and now >= a.shelved_until:
                self._unshelve(a, now, events, actor="system", role="", reason="shelve time expired")
            if a.chattering:
                self._prune(a.occ_times, now, self.settings.chatter_window_s)
                if len(a.occ_times) < self.settings.chatter_count:
                    a.chattering = False
                    self._emit(events, a, "chattering_end", now)
        self._prune(self._ann_times, now, self.settings.flood_window_s)
        if self._in_flood and len(self._ann_times) < self.settings.flood_end_count:
            self._in_flood = False
            if self._flood_started is not None:
                self._flood_time_s += now - self._flood_started
            self._flood_started = None
            self._emit_cell(
                events,
                "flood_end",
                now,
                f"{len(self._ann_times)} alarms within {self.settings.flood_window_s:g} s",
            )

    def _status(self, a: _Alarm) -> AlarmStatus:
        d = a.d
        return AlarmStatus(
            d.id,
            a.state(),
            d.priority,
            d.effective_severity,
            a.source,
            d.device,
            d.description,
            d.limit_type,
            a.value,
            a.message,
            a.occurrence,
            a.raised_at,
            a.acked_by,
            a.acked_at,
            a.ack_comment,
            a.returned_at,
            a.shelved_until,
            a.chattering,
            d.consequence,
            d.response,
        )

    def _alarm_payload(self, a: _Alarm) -> dict[str, Any]:
        """Per-alarm record fields, spec §1.6."""
        d = a.d

        def iso(t: float | None) -> str | None:
            return iso_utc(t) if t is not None else None

        return {
            "alarm_id": d.id,
            "source": a.source,
            "device": d.device,
            "limit_type": d.limit_type,
            "limit": d.limit,
            "priority": d.priority,
            "severity": d.effective_severity,
            "value": a.value,
            "message": a.message,
            "occurrence": a.occurrence,
            "state": a.state().value,
            "raised_at": a.raised_at,
            "raised_at_iso": iso(a.raised_at),
            "acked_by": a.acked_by,
            "acked_at": a.acked_at,
            "acked_at_iso": iso(a.acked_at),
            "ack_comment": a.ack_comment,
            "returned_at": a.returned_at,
            "returned_at_iso": iso(a.returned_at),
            "batch_id": self.batch_id,
        }

    def _emit(
        self,
        events: list[AlarmEvent],
        a: _Alarm,
        event: str,
        now: float,
        *,
        actor: str = "system",
        role: str = "",
        reason: str = "",
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        payload = {"event": event, **self._alarm_payload(a), **(extra or {})}
        events.append(AlarmEvent(event, a.d.id, a.state().value, now, actor, reason, payload))
        self._write(actor=actor, role=role, action=f"alarm.{event}", reason=reason, payload=payload)

    def _emit_cell(self, events: list[AlarmEvent], event: str, now: float, reason: str) -> None:
        payload = {
            "event": event,
            "alarms_in_window": len(self._ann_times),
            "window_s": self.settings.flood_window_s,
            "time_iso": iso_utc(now),
            "batch_id": self.batch_id,
        }
        events.append(
            AlarmEvent(
                event, "", "FLOOD" if event == "flood_start" else "NORMAL", now, "system", reason, payload
            )
        )
        self._write(actor="system", role="", action=f"alarm.{event}", reason=reason, payload=payload)

    def _write(self, **entry: Any) -> None:
        if self._record is None:
            return
        self._pending.append({"batch_id": self.batch_id, **entry})
        while self._pending:
            try:
                self._record.append("alarm", **self._pending[0])
            except Exception:
                log.exception(
                    "alarm event could not be written to the batch record; %d event(s) queued",
                    len(self._pending),
                )
                if len(self._pending) > 10_000:
                    self._pending.popleft()
                    log.error("alarm record queue full: oldest unrecorded alarm event dropped")
                return
            self._pending.popleft()

    def _notify(self, events: list[AlarmEvent]) -> None:
        if not events:
            return
        with self._lock:
            listeners = list(self._listeners)
        for ev in events:
            for cb in listeners:
                try:
                    cb(ev)
                except Exception:  # observation never becomes control (ARCHITECTURE rule 4)
                    log.exception("alarm listener %r failed on %s %s; ignored", cb, ev.event, ev.alarm_id)


def load_alarms_file(path: str | Path) -> AlarmsFile:
    """Parse and validate ``alarms.yaml``.

    Raises:
        AlarmsFileError: malformed YAML, unreadable file, or a validation problem.
    """
    try:
        data = load_yaml_strict(path)
    except yaml.YAMLError as exc:
        raise AlarmsFileError(f"{path}: malformed YAML: {exc}") from exc
    except OSError as exc:
        raise AlarmsFileError(f"{path}: cannot read: {exc}") from exc
    try:
        return AlarmsFile.model_validate(data)
    except ValidationError as exc:
        raise AlarmsFileError(f"{path}: {exc}") from exc
