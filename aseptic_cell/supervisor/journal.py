"""What the supervisor writes down: the batch record entries (audit trail) and the bounded
in-memory copies that the summary, the HMI and the benchmarks read.

Every append to the record goes through :meth:`BatchJournal.audit`; the in-memory lists are
bounded (the oldest entries are dropped first; the record keeps everything).

A failed append is never only a log line: the entry is kept in :attr:`BatchJournal.unwritten`
and ``on_failure(reason)`` tells the supervisor, which holds the batch and raises
``CELL_RECORD_FAULT``; the signed restart writes the kept entries (flagged ``late``, with their
original time) once the record works again (ALCOA+ complete [MHRA-DI-2018]).

Deviations are raised here, as the entry that causes one is written (:attr:`BatchJournal.auto`,
:class:`~aseptic_cell.disposition.deviations.AutoRaiser`, classes from config/deviations.yaml):
a ``deviation.raise`` entry linked to that entry's seq and hash; entries written late after a
record-write failure raise one linked to all of them (issue 15 item 1).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def _auto_raiser() -> Any:
    from ..disposition.deviations import AutoRaiser, DeviationPolicy

    try:
        return AutoRaiser(DeviationPolicy.load())
    except (OSError, ValueError) as exc:  # a bad deviations.yaml: the built-in classes, said loudly
        log.error("config/deviations.yaml unusable, built-in deviation classes used: %s", exc)
        return AutoRaiser()

DEVICE_EVENT_KINDS = {"command": "command", "refusal": "refusal", "cycle_result": "cycle_result",
                      "latched": "trip", "recovered": "intervention", "comm_lost": "alarm",
                      "comm_restored": "alarm"}
"""Device event -> record entry kind (cycle results are recorded from the phase, with the report)."""


ENDED = ("Complete", "Stopped", "Aborted")
AFTER_END_CELL_KINDS = frozenset({"alarm", "trip", "environment"})
"""Entries the executive still writes under a batch's id after the batch ended (the cell's alarms,
trips and EM while idle) are the cell's: written at cell level naming the batch (``after_batch``),
so they neither change a batch QA reviews nor raise its deviations."""


class Bounded(list[T]):
    """A list that keeps at most ``limit`` items: appending beyond it drops the oldest."""

    def __init__(self, limit: int, items: Iterable[T] = ()) -> None:
        super().__init__(items)
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit = limit

    def append(self, item: T) -> None:
        super().append(item)
        if len(self) > self.limit:
            del self[: len(self) - self.limit]


class BatchJournal:
    """The record writer and the in-memory observation of one supervisor.

    Args:
        record: the hash-chained batch record (None: in-memory lists only).
        now: the supervisor's time (sim time in the signals' time base).
        batch_id: the current batch id (read at each append).
        limit: how many entries each in-memory list keeps.
    """

    def __init__(self, record: Any, now: Callable[[], float], batch_id: Callable[[], str],
                 limit: int = 5000) -> None:
        self.record = record
        self._now = now
        self._batch_id = batch_id
        self.timeline: Bounded[dict[str, Any]] = Bounded(limit)
        self.trips: Bounded[dict[str, Any]] = Bounded(limit)
        self.refusals: Bounded[dict[str, Any]] = Bounded(limit)
        self.commands: Bounded[dict[str, Any]] = Bounded(limit)
        self.alarm_log: Bounded[dict[str, Any]] = Bounded(limit)
        self.safe_commands: Bounded[tuple[float, str, str]] = Bounded(limit)
        """(wall time, node, command) of every safe command sent (trip-latency benchmark)."""
        self.results: dict[str, Any] = {}
        self.unwritten: Bounded[dict[str, Any]] = Bounded(limit)
        """Entries the record refused (in order), written late by :meth:`flush_unwritten`."""
        self.failed_appends = 0
        self.on_failure: Callable[[str], None] | None = None
        """Called with the reason of every failed append (the supervisor holds the batch)."""
        self.role_of: Callable[[str], str] | None = None
        """The directory's role of an actor, written with every entry (the node sets it; issue 12)."""
        self.auto: Any = _auto_raiser() if record is not None else None
        self._ended = ""
        """The batch whose batch-level state last reached Complete/Stopped/Aborted (then Idle)."""
        """Raises the automatic deviations (None: none raised)."""

    # ------------------------------------------------------------------ record
    def _failed(self, entry: dict[str, Any], exc: Exception) -> None:
        self.failed_appends += 1
        why = f"{entry['kind']} {entry['action']} not recorded: {exc}"
        log.error("batch record append failed: %s", why)
        self.unwritten.append({**entry, "error": str(exc)[:500]})
        if self.on_failure is not None:
            self.on_failure(why)

    def audit(self, kind: str, actor: str, action: str, reason: str, payload: Mapping[str, Any]) -> None:
        if self.record is None:
            return
        bid, who, text, data = self._batch_id(), actor or "system", str(reason)[:2000], clean(payload)
        if kind == "phase_transition" and data.get("level") == "batch":
            self._ended = bid if data.get("to") in ENDED or (data.get("to") == "Idle" and self._ended == bid) else ""
        elif bid and bid == self._ended and kind in AFTER_END_CELL_KINDS:
            bid, data = "", {**data, "after_batch": self._ended}  # the cell's, not the ended batch's
        role = self.role_of(who) if self.role_of is not None else ""
        entry = {"kind": kind, "batch_id": bid, "actor": who, "action": action, "reason": text, "payload": data,
                 "t": self._now(), "role": role}
        try:
            written = self._append(kind, batch_id=bid, actor=who, role=role, action=action, reason=text, payload=data)
        except Exception as exc:  # noqa: BLE001 - held and alarmed by on_failure, never only logged
            self._failed(entry, exc)
            return
        if self.auto is not None and hasattr(written, "seq"):
            self._raise_deviation(self.auto.consider(written))

    def _append(self, kind: str, *, batch_id: str, payload: Mapping[str, Any], **fields: str) -> Any:
        """Append; an entry for a batch QA has already released or rejected (what the executive
        still writes under its id once the batch ended: the reset to Idle, alarms while idle) goes
        to the cell level (batch ""), naming the batch: the closed batch is not changed and the
        event is still recorded (ALCOA+ complete [MHRA-DI-2018])."""
        from ..records.store import RecordClosedError

        assert self.record is not None
        try:
            return self.record.append(kind, batch_id=batch_id, payload=payload, **fields)
        except RecordClosedError:
            return self.record.append(kind, batch_id="", payload={**payload, "closed_batch": batch_id}, **fields)

    def _raise_deviation(self, payload: Mapping[str, Any] | None) -> None:
        """Append an automatic ``deviation.raise`` (kept and written late like any entry on failure)."""
        if payload is None or self.record is None:
            return
        entry = {"kind": "deviation", "batch_id": str(payload.get("batch", "")), "actor": "system",
                 "action": "deviation.raise", "reason": str(payload.get("description", ""))[:2000],
                 "payload": clean(payload), "t": self._now(), "role": ""}
        try:
            self.record.append("deviation", batch_id=entry["batch_id"], actor="system", action="deviation.raise",
                               reason=entry["reason"], payload=entry["payload"])
        except Exception as exc:  # noqa: BLE001 - held and alarmed by on_failure, never only logged
            self._failed(entry, exc)

    def record_cycle_result(self, key: str, value: Mapping[str, Any]) -> None:
        if self.record is None:
            return
        rep = {k: v for k, v in value.items() if finite_json(v)}
        rep.setdefault("run_id", str(value.get("run_id") or "unknown"))
        try:
            self.record.record_cycle_result(key, rep, batch_id=self._batch_id())
        except Exception as exc:  # noqa: BLE001 - held and alarmed by on_failure, never only logged
            self._failed({"kind": "cycle_result", "batch_id": self._batch_id(), "actor": "system",
                          "action": f"{key}.cycle_{str(rep.get('result', '')).lower()}", "reason": "",
                          "payload": {"cycle": key, **rep}, "t": self._now()}, exc)

    def flush_unwritten(self) -> int:
        """Write the entries the record refused, in order, each flagged ``late`` with its original
        time and error; stops at the first that fails again. Returns how many are still unwritten."""
        late: list[Any] = []
        while self.unwritten and self.record is not None:
            e = self.unwritten[0]
            payload = {**e["payload"], "late": {"original_t": e["t"], "error": e["error"]}}
            try:
                written = self._append(e["kind"], batch_id=e["batch_id"], actor=e["actor"],
                                             role=e.get("role", ""), action=e["action"], reason=e["reason"],
                                             payload=clean(payload))
            except Exception as exc:  # noqa: BLE001 - still failing: stays unwritten, the caller refuses
                log.error("unwritten entry still not recorded: %r", exc)
                break
            del self.unwritten[0]
            if hasattr(written, "seq") and written.kind != "deviation":
                late.append(written)
                if self.auto is not None:  # a trip written late raises its deviation too
                    self._raise_deviation(self.auto.consider(written))
        if late and self.auto is not None:  # the record-write failure is a deviation of each batch concerned
            for bid in dict.fromkeys(x.batch_id for x in late):
                self._raise_deviation(self.auto.late_written([x for x in late if x.batch_id == bid]))
        return len(self.unwritten)

    # ------------------------------------------------------------------ entries
    def refusal(self, user: str, node: str, command: str, args: Mapping[str, Any], code: str, why: str,
                *, source: str) -> None:
        entry = {"t": self._now(), "source": source, "user": user, "device": node, "command": command,
                 "args": clean(args), "code": str(code), "reason": why}
        self.refusals.append(entry)
        self.audit("refusal", user or "system", f"{node}.{command}", why, entry)

    def batch_refusal(self, user: str, command: str, code: str, why: str) -> None:
        entry = {"t": self._now(), "source": "batch", "user": user, "command": command, "code": str(code),
                 "reason": why}
        self.refusals.append(entry)
        self.audit("refusal", user if isinstance(user, str) and user.strip() else "unknown",
                   f"batch.{command}", why, entry)

    def command(self, node: str, command: str, user: str, wall: float, safe: bool) -> None:
        self.commands.append({"t": self._now(), "node": node, "command": command, "user": user})
        if safe:
            self.safe_commands.append((wall, node, command))

    def transition(self, level: str, what: str, tr: Any) -> None:
        """A batch or phase state transition (ISA-88), on the timeline and in the record."""
        self.timeline.append({"t": tr.t, "level": level, "what": what, "from": tr.old.value,
                              "to": tr.new.value, "by": tr.actor, "reason": tr.reason})
        payload = {"level": level, "from": tr.old.value, "to": tr.new.value}
        if level == "phase":
            payload["phase"] = what
        self.audit("phase_transition", tr.actor, f"{level}.{tr.command.value}", tr.reason, payload)

    def alarm_event(self, ev: Any) -> None:
        self.alarm_log.append({"t": getattr(ev, "time", None), "alarm": getattr(ev, "alarm_id", ""),
                               "event": getattr(ev, "event", ""), "state": str(getattr(ev, "state", ""))})

    def device_events(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Events of the device nodes (commands, refusals, latches, recoveries) into the record."""
        for ev in events:
            if ev.get("event") == "refusal" and ev.get("node") and ev.get("code"):
                self.refusals.append({"t": ev.get("t"), "source": "device", "user": ev.get("user", ""),
                                      "device": ev.get("node"), "command": ev.get("command"),
                                      "code": ev.get("code"), "reason": ev.get("detail")})
            kind = DEVICE_EVENT_KINDS.get(ev.get("event", ""))
            if kind is None or self.record is None or kind == "cycle_result":
                continue
            self.audit(kind, str(ev.get("user") or "system"),
                       f"{ev.get('device', '')}.{ev.get('command', ev.get('event'))}",
                       str(ev.get("detail") or ev.get("reason") or ""), {k: v for k, v in ev.items() if k != "event"})


def finite_json(v: Any) -> bool:
    try:
        json.dumps(v, allow_nan=False)
        return True
    except (TypeError, ValueError):
        return False


def clean(d: Mapping[str, Any]) -> dict[str, Any]:
    """A payload the record can store: non-finite floats as None, other non-JSON values as text."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, float) and not math.isfinite(v):
            out[k] = None
        elif finite_json(v):
            out[k] = v
        else:
            out[k] = str(v)
    return out
