"""Deviations of a batch, read from and written to its record (issue 15 item 1).

A deviation is a departure from the approved recipe or procedure that QA must assess before the
batch can be dispositioned (EU GMP Ch. 1 §1.4(xiv) [EUGMP-CH1]). Here it
is nothing but entries of kind ``deviation`` in the append-only record, so its whole life is in the
audit trail (21 CFR 11.10(e) [CFR11]; Annex 11 §9 [ANNEX11-2011]) and it works per batch when many
batches share one record (every entry names its batch):

* ``deviation.raise`` — payload ``deviation`` (the id), ``class`` (minor / major / critical),
  ``source`` (what raised it: a person, or an automatic source of ``config/deviations.yaml``),
  ``rule``, ``description`` and ``links``: the record entries it concerns as ``{seq, hash, kind,
  action}``. The COI-30 deviations of :mod:`aseptic_cell.coi.custody` have the same kind and action
  (their class defaults to the ``coi_mismatch`` class).
* ``deviation.classify`` — a new ``class`` with the reason (QA or a supervisor).
* ``deviation.investigate`` — findings recorded by the investigator.
* ``deviation.close`` — QA closes it with a root-cause text and an e-signature (the meaning from
  users.yaml ``deviation.close``), never the person who raised it; the ``signature`` entry stored
  just before names the signed content (21 CFR 11.50, 11.70 [CFR11]).

Automatic deviations (:func:`auto_deviation`) are raised by the supervisor's journal as it writes
the entry that caused them: interlock trips, phase failures, supervisor interruptions, recipe
steps refused, holds that lasted beyond ``max_hold``, EM excursions during open-product phases,
bypasses started, the batch aborted, IL-06 (the end-of-batch glove test missing), and entries the
record could not write at first (raised once they are written late).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..records.store import Entry

CLASSES = ("minor", "major", "critical")
STATES = ("RAISED", "CLASSIFIED", "INVESTIGATED", "CLOSED")
ACTIONS = ("deviation.raise", "deviation.classify", "deviation.investigate", "deviation.close")

SOURCES = ("interlock_trip", "phase_failure", "supervisor_interrupted", "recipe_step_refused", "hold_beyond_max",
           "em_excursion_open_phase", "bypass", "record_write_failure", "batch_aborted", "end_glove_test_missing",
           "coi_mismatch", "manual")
"""What may raise a deviation (the keys of ``automatic:`` in config/deviations.yaml, and ``manual``)."""

_DEFAULT_CLASSES = {"interlock_trip": "major", "phase_failure": "major", "supervisor_interrupted": "major",
                    "recipe_step_refused": "minor", "hold_beyond_max": "major", "em_excursion_open_phase": "critical",
                    "bypass": "major", "record_write_failure": "major", "batch_aborted": "critical",
                    "end_glove_test_missing": "major", "coi_mismatch": "critical", "manual": "minor"}


class DeviationError(Exception):
    """A deviation or disposition action refused; ``code`` is precise, ``reason`` safe to show."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code, self.reason = code, reason


@dataclass(frozen=True)
class DeviationPolicy:
    """``config/deviations.yaml``: the default class per automatic source [M] and ``max_hold_s``."""

    classes: Mapping[str, str] = field(default_factory=lambda: dict(_DEFAULT_CLASSES))
    max_hold_s: float = 1800.0
    """A hold longer than this raises a deviation when it ends [M] (30 min: the processes'
    ``default_max_hold``, INT-02)."""

    def class_of(self, source: str) -> str:
        return str(self.classes.get(source, self.classes.get("manual", "minor")))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> DeviationPolicy:
        data = dict(data or {})
        unknown = sorted(set(data) - {"default_class", "max_hold_s"})
        if unknown:
            raise ValueError(f"deviations: unknown key(s) {', '.join(unknown)}")
        classes = dict(_DEFAULT_CLASSES)
        given = data.get("default_class") or {}
        if not isinstance(given, Mapping):
            raise ValueError("deviations.default_class must map a source to a class")
        for src, c in given.items():
            if src not in SOURCES:
                raise ValueError(f"deviations.default_class: unknown source {src!r}; sources are {', '.join(SOURCES)}")
            if c not in CLASSES:
                raise ValueError(f"deviations.default_class.{src}: class must be one of "
                                 f"{', '.join(CLASSES)}, got {c!r}")
            classes[str(src)] = str(c)
        hold = float(data.get("max_hold_s", 1800.0))
        if not hold > 0:
            raise ValueError("deviations.max_hold_s must be > 0")
        return cls(classes, hold)

    @classmethod
    def load(cls, config_dir: str | os.PathLike[str] | None = None) -> DeviationPolicy:
        """``deviations:`` of ``<config_dir>/deviations.yaml`` (default the project's config/); the
        built-in defaults (the same values) when the file is absent."""
        if config_dir is None:
            from ..config import default_config_dir

            config_dir = default_config_dir()
        p = Path(config_dir) / "deviations.yaml"
        if not p.is_file():
            return cls()
        doc = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        if not isinstance(doc, Mapping):
            raise ValueError(f"{p}: expected a mapping 'deviations:'")
        return cls.from_mapping(doc.get("deviations"))


@dataclass
class Deviation:
    """A deviation as its entries describe it."""

    id: str
    batch_id: str
    cls: str
    source: str
    rule: str
    description: str
    raised_by: str
    raised_seq: int
    raised_hash: str
    raised_at: str
    links: list[dict[str, Any]] = field(default_factory=list)
    state: str = "RAISED"
    findings: list[str] = field(default_factory=list)
    root_cause: str = ""
    closed_by: str = ""
    closed_seq: int = 0
    closed_at: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.state != "CLOSED"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "batch_id": self.batch_id, "class": self.cls, "source": self.source,
                "rule": self.rule, "description": self.description, "raised_by": self.raised_by,
                "raised_seq": self.raised_seq, "raised_hash": self.raised_hash, "raised_at": self.raised_at,
                "links": self.links, "state": self.state, "findings": self.findings, "root_cause": self.root_cause,
                "closed_by": self.closed_by, "closed_seq": self.closed_seq, "closed_at": self.closed_at,
                "history": self.history}


def _source_of(p: Mapping[str, Any]) -> str:
    src = str(p.get("source") or "")
    if src:
        return src
    if p.get("rule") == "INT-02":
        return "hold_beyond_max"
    if "coi_expected" in p or "-COI-" in str(p.get("deviation", "")):
        return "coi_mismatch"
    return "manual"


def fold(entries: Iterable[Entry], policy: DeviationPolicy | None = None) -> dict[str, Deviation]:
    """The deviations (id -> :class:`Deviation`) of ``entries`` in record order."""
    policy = policy or DeviationPolicy()
    out: dict[str, Deviation] = {}
    for e in entries:
        if e.kind != "deviation":
            continue
        p = e.payload
        did = str(p.get("deviation") or "")
        if not did and e.action == "deviation.raise":
            did = f"DEV-{e.batch_id}-S{e.seq}"  # raised without an id (INT-02 of a patient batch): named by its seq
        if not did:
            continue
        step = {"seq": e.seq, "hash": e.hash, "action": e.action, "actor": e.actor, "ts_iso": e.ts_iso,
                "reason": e.reason}
        if e.action == "deviation.raise" and did not in out:
            src = _source_of(p)
            cls = str(p.get("class") or policy.class_of(src))
            links = [dict(x) for x in p.get("links", []) if isinstance(x, Mapping)]
            out[did] = Deviation(did, e.batch_id, cls, src, str(p.get("rule") or ""),
                                 str(p.get("description") or e.reason), e.actor, e.seq, e.hash, e.ts_iso, links,
                                 history=[step])
            continue
        dev = out.get(did)
        if dev is None:
            continue
        dev.history.append(step)
        if e.action == "deviation.classify" and p.get("class") in CLASSES:
            dev.cls = str(p["class"])
            if dev.state == "RAISED":
                dev.state = "CLASSIFIED"
        elif e.action == "deviation.investigate":
            dev.findings.append(str(p.get("findings") or e.reason))
            if dev.state in ("RAISED", "CLASSIFIED"):
                dev.state = "INVESTIGATED"
        elif e.action == "deviation.close":
            dev.state, dev.closed_by, dev.closed_seq, dev.closed_at = "CLOSED", e.actor, e.seq, e.ts_iso
            dev.root_cause = str(p.get("root_cause") or e.reason)
    return out


# ---------------------------------------------------------------------------- automatic
def link(e: Entry) -> dict[str, Any]:
    return {"seq": e.seq, "hash": e.hash, "kind": e.kind, "action": e.action}


class AutoRaiser:
    """Decides, entry by entry as the supervisor writes them, which raise a deviation (one
    instance per batch executive: it remembers the open hold and what it already raised)."""

    def __init__(self, policy: DeviationPolicy | None = None) -> None:
        self.policy = policy or DeviationPolicy()
        self._held: dict[str, Entry] = {}
        self._once: set[tuple[str, str, str]] = set()
        self._explained: set[str] = set()
        """Batches whose next hold by the system is already explained by the deviation of its
        cause (an interlock trip, an EM excursion, a refused step, a supervisor loss)."""

    def _make(self, source: str, e: Entry, description: str, links: list[Entry], rule: str = "",
              tag: str = "A") -> dict[str, Any]:
        return {"deviation": f"DEV-{e.batch_id}-{tag}{e.seq}", "class": self.policy.class_of(source), "source": source,
                "rule": rule, "description": description[:2000], "batch": e.batch_id, "automatic": True,
                "links": [link(x) for x in links]}

    def _once_per_batch(self, e: Entry, source: str, key: str) -> bool:
        k = (e.batch_id, source, key)
        if k in self._once:
            return False
        self._once.add(k)
        return True

    def consider(self, e: Entry) -> dict[str, Any] | None:
        """The payload of the ``deviation.raise`` entry ``e`` calls for, or None."""
        if e.kind == "deviation" and e.payload.get("rule") == "INT-02":
            self._held.pop(e.batch_id, None)  # the executive raised this hold's max_hold deviation itself
        if not e.batch_id or e.kind == "deviation":
            return None
        p = e.payload
        if e.kind == "trip":
            if e.action == "supervisor.lost":
                self._explained.add(e.batch_id)
                return self._make("supervisor_interrupted", e, f"supervisor interrupted: {e.reason}", [e])
            if e.action.startswith("interlock."):
                self._explained.add(e.batch_id)
                rule = e.action.split(".", 1)[1]
                return self._make("interlock_trip", e, f"interlock trip {rule}: {e.reason}", [e], rule)
            # batch.hold: the hold's own transition raises it (below); a device latched: the
            # consequence of a hold
            return None
        if e.kind == "refusal" and p.get("source") == "supervisor":
            self._explained.add(e.batch_id)
            if self._once_per_batch(e, "recipe_step_refused", e.action):
                return self._make("recipe_step_refused", e, f"recipe step {e.action} refused: {e.reason}", [e])
            return None
        if e.kind == "refusal" and e.action == "batch.close_record" and "IL-06" in e.reason:
            if self._once_per_batch(e, "end_glove_test_missing", ""):
                return self._make("end_glove_test_missing", e, f"IL-06: {e.reason}", [e], "IL-06")
            return None
        if e.kind == "environment" and e.action.endswith(".hold") and p.get("phase"):
            self._explained.add(e.batch_id)
            return self._make("em_excursion_open_phase", e, f"EM excursion during open phase {p.get('phase')}: "
                              f"{e.reason}", [e], str(p.get("alarm_id") or ""))
        if e.kind == "command" and e.action == "bypass.approve":
            return self._make("bypass", e, f"bypass started: {e.reason}", [e], str(p.get("rule") or ""))
        if e.kind == "phase_transition" and p.get("level") == "batch":
            to, was = str(p.get("to")), str(p.get("from"))
            if to == "Running":
                self._explained.discard(e.batch_id)
            if to in ("Holding", "Held") and was not in ("Holding", "Held") and e.actor == "system":
                if to == "Held":
                    self._held.setdefault(e.batch_id, e)
                if e.batch_id in self._explained:
                    self._explained.discard(e.batch_id)
                    return None
                return self._make("phase_failure", e, f"batch held by the system: {e.reason}", [e])
            if to == "Held":
                self._held.setdefault(e.batch_id, e)
            elif was == "Held" and e.batch_id in self._held:
                start = self._held.pop(e.batch_id)
                held_s = e.ts - start.ts
                if held_s > self.policy.max_hold_s:
                    return self._make("hold_beyond_max", e, f"batch held {held_s / 60.0:.1f} min, beyond max_hold "
                                      f"{self.policy.max_hold_s / 60.0:.1f} min", [start, e])
            if to == "Aborted":
                self._held.pop(e.batch_id, None)
                return self._make("batch_aborted", e, f"batch aborted: {e.reason}", [e])
        return None

    def late_written(self, entries: list[Entry]) -> dict[str, Any] | None:
        """The deviation for entries the record refused at first and took late (record-write failure)."""
        entries = [x for x in entries if x.batch_id]
        if not entries:
            return None
        e = entries[-1]
        return self._make("record_write_failure", e, f"{len(entries)} record entr{'y' if len(entries) == 1 else 'ies'} "
                          "written late after a record-write failure (original times and errors in each entry)",
                          entries, tag="W")
