"""ISA-18.2 (IEC 62682) alarm manager [ISA18.2] [IEC62682] with the GMP overlay
(acknowledge, shelve and out-of-service are audit-trail events; shelve and out-of-service are
e-signed, 21 CFR 11.50 [CFR11]).

States [ISA18.2]: NORMAL, UNACK, ACKED, RTN_UNACK (returned to normal, unacknowledged),
LATCHED (returned and acknowledged, waiting for reset), SHELVED (operator-initiated, time-limited,
auto-unshelved on the injected clock), SUPPRESSED (by design: the alarm's ``enabled_when`` plant
states are not all true), OUT_OF_SERVICE (maintenance, under management of change).

Every raise, acknowledgement, return to normal, reset, shelve/unshelve, suppression,
out-of-service change, flood start/end and chattering start/end is written to the batch
record (kind ``alarm``) with the per-alarm fields (source, limit type, value, raised,
acknowledged by / when / comment, returned, batch; Annex 1 §9 [ANNEX1-2022] [M]), and sent
to listeners. Listeners are observers: an exception in one is logged and never reaches the caller
(ARCHITECTURE rule 4). A record write that fails is logged and retried on the next event, in
order, so nothing is lost while the record store recovers; the alarm itself is annunciated
regardless.

The alarm model (states, per-alarm state, events, views) is in :mod:`.state`; shelving and
out-of-service with their e-signatures in :mod:`.shelving` (a mixin of :class:`AlarmManager`).
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from aseptic_cell.auth._yaml import load_yaml_strict
from aseptic_cell.records.canonical import iso_utc
from aseptic_cell.records.store import RecordClosedError

from .models import PRIORITY_RANK, AlarmDef, AlarmSettings, AlarmsFile
from .shelving import AlarmShelving
from .state import (
    ANNUNCIATED,
    AlarmEntry,
    AlarmError,
    AlarmEvent,
    AlarmState,
    AlarmStatus,
    Clock,
    UnknownAlarmError,
    jsonable,
    who,
)

__all__ = [
    "ANNUNCIATED",
    "AlarmError",
    "AlarmEvent",
    "AlarmManager",
    "AlarmState",
    "AlarmStatus",
    "AlarmsFileError",
    "Clock",
    "UnknownAlarmError",
    "load_alarms_file",
]

if TYPE_CHECKING:
    from aseptic_cell.records import BatchRecord

log = logging.getLogger(__name__)


class AlarmsFileError(ValueError):
    """``alarms.yaml`` is malformed or invalid."""


class AlarmManager(AlarmShelving):
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
        self._alarms: dict[str, AlarmEntry] = {}
        for d in alarm_defs:
            if d.id in self._alarms:
                raise ValueError(f"alarm id {d.id!r} defined twice")
            self._alarms[d.id] = AlarmEntry(d)
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
            a.value, a.message = jsonable(value), str(message)
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
                a.value = jsonable(value)
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
        uid, role = who(user)
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
        uid, role = who(user)
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

    def _get(self, alarm_id: str) -> AlarmEntry:
        try:
            return self._alarms[alarm_id]
        except KeyError:
            raise UnknownAlarmError(
                f"unknown alarm id {alarm_id!r} (not in the master alarm database)"
            ) from None

    def _enabled(self, a: AlarmEntry) -> bool:
        return all(self._design.get(s, False) for s in a.d.enabled_when) and not any(
            self._design.get(s, False) for s in a.d.disabled_when
        )

    def _disabled_states(self, a: AlarmEntry) -> str:
        off = [f"{s}=false" for s in a.d.enabled_when if not self._design.get(s, False)]
        on = [f"{s}=true" for s in a.d.disabled_when if self._design.get(s, False)]
        return ", ".join(off + on)


    def _annunciate(self, a: AlarmEntry, now: float, events: list[AlarmEvent], event: str) -> None:
        a.occurrence += 1
        a.acked, a.acked_by, a.acked_at, a.ack_comment = False, "", None, ""
        a.latched_pending = False
        a.raised_at = now
        a.hidden = False
        self._annunciated_total += 1
        self._emit(events, a, event, now, reason=a.message)
        # chattering (e.g. >= 3 in 1 min, [ISA18.2] [M])
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

    def _reannunciate(self, a: AlarmEntry, now: float, events: list[AlarmEvent]) -> None:
        if self._enabled(a):
            self._annunciate(a, now, events, "raised")
        else:
            a.hidden = True


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

    def _status(self, a: AlarmEntry) -> AlarmStatus:
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

    def _alarm_payload(self, a: AlarmEntry) -> dict[str, Any]:
        """Per-alarm record fields (Annex 1 §9 [ANNEX1-2022] [M])."""
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
        a: AlarmEntry,
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
            except RecordClosedError:  # its batch was released/rejected by QA (issue 15): the cell's event now
                e = self._pending[0]
                self._pending[0] = {**e, "batch_id": "",
                                    "payload": {**e.get("payload", {}), "closed_batch": e["batch_id"]}}
                continue
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
