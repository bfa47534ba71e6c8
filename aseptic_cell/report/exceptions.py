"""Review by exception and audit-trail review of one batch (Annex 11 §9 [ANNEX11-2011]).

:func:`review_by_exception` lists only what departs from the recipe: refusals, trips, holds,
aborts, interventions, bypasses and overrides, corrections, deviations, alarms at or above a
priority, parameters outside their bands (a failed cycle or glove test, an EM excursion or
invalid monitoring), custody mismatches, record faults (entries written late,
``CELL_RECORD_FAULT``), supervisor interruptions, refused log-ins and clock regressions. Each
item links to its record entry by ``seq`` and entry hash, so the reviewer can open the full
trail at that point.

:func:`audit_trail_summary` says who changed what: per person, the entries they made by kind,
and every change of the record or of the process a person made (corrections, configuration,
signed actions, restarts, recoveries, bypasses, deviations).

:func:`sign_reviewed` appends the reviewer's e-signature with meaning ``review``
(21 CFR 11.50 [CFR11]): the reviewer's role must hold ``record.review`` (config/users.yaml);
the signature covers the SHA-256 of the review's content (batch, head of the chain, the
departures' entry hashes), which is stored with it (§11.70 [CFR11]) and can be recomputed.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aseptic_cell.records import Entry, content_hash

from .source import BatchSource, load_batch

PRIORITIES: tuple[str, ...] = ("low", "medium", "high", "emergency")
"""ISA-18.2 priorities from lowest to highest (config/alarms.yaml)."""

DEFAULT_MIN_PRIORITY = "medium"
"""Alarms below this priority are not departures (they stay in the full trail)."""

CATEGORIES: tuple[str, ...] = (
    "refusal", "trip", "hold", "abort", "interruption", "record_fault", "intervention", "bypass", "override",
    "correction", "deviation", "out_of_band", "custody", "alarm", "access", "clock",
)
SYSTEM_ACTORS = frozenset({"system", "phase_logic", "supervisor", "unknown", ""})
_CHANGE_PREFIXES = ("batch.", "bypass.", "device.", "alarm.", "record.", "config.", "recipe.", "override",
                    "deviation.", "intervention.")


@dataclass(frozen=True)
class Departure:
    """One departure from the recipe, linked to the record entry that shows it."""

    category: str
    seq: int
    entry_hash: str
    ts_iso: str
    actor: str
    role: str
    action: str
    summary: str

    @property
    def link(self) -> str:
        """``seq N / sha256:<entry hash>``: where the full trail shows it."""
        return f"seq {self.seq} / sha256:{self.entry_hash}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "link": self.link}


@dataclass(frozen=True)
class Change:
    """A change a person made, for the audit-trail review (who changed what)."""

    seq: int
    entry_hash: str
    ts_iso: str
    actor: str
    role: str
    kind: str
    action: str
    reason: str


@dataclass
class ExceptionReview:
    """The result of a review by exception of one batch."""

    batch_id: str
    record_file: str
    min_priority: str
    chain_ok: bool
    chain_text: str
    head_seq: int
    head_hash: str
    departures: list[Departure]
    people: dict[str, dict[str, Any]] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    reviews: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        c = Counter(d.category for d in self.departures)
        return {k: c[k] for k in CATEGORIES if c[k]}

    def subject(self) -> dict[str, Any]:
        """What a "reviewed" signature covers (stored with it, hashed for the signature)."""
        return {
            "batch_id": self.batch_id,
            "record_head": {"seq": self.head_seq, "hash": self.head_hash},
            "min_alarm_priority": self.min_priority,
            "departures": [[d.seq, d.entry_hash, d.category] for d in self.departures],
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "record_file": self.record_file,
            "min_alarm_priority": self.min_priority,
            "chain": {"ok": self.chain_ok, "text": self.chain_text, "head_seq": self.head_seq,
                      "head_hash": self.head_hash},
            "counts": self.counts(),
            "departures": [d.to_dict() for d in self.departures],
            "people": self.people,
            "changes": [asdict(c) for c in self.changes],
            "reviews": self.reviews,
        }


def _priority_at_least(priority: Any, minimum: str) -> bool:
    if not isinstance(priority, str) or priority not in PRIORITIES:
        return True  # an alarm without a known priority is shown (fail-safe)
    return PRIORITIES.index(priority) >= PRIORITIES.index(minimum)


def _short(text: Any, n: int = 300) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= n else s[: n - 1] + "…"


def _classify(e: Entry, min_priority: str) -> tuple[str, str] | None:
    """(category, summary) when ``e`` departs from the recipe, else None."""
    p, kind, action = e.payload, e.kind, e.action
    if isinstance(p.get("late"), dict):
        late = p["late"]
        return "record_fault", _short(f"{kind} {action} written late (originally at t={late.get('original_t')}; "
                                      f"record error: {late.get('error')})")
    if kind == "refusal":
        code = p.get("code", "")
        return "refusal", _short(f"{action} refused{f' [{code}]' if code else ''}: {e.reason}")
    if kind == "trip":
        if action == "supervisor.lost":
            return "interruption", _short(f"supervisor interrupted: {e.reason}")
        if p.get("source") == "CELL_RECORD_FAULT":
            return "record_fault", _short(f"held: {e.reason}")
        return "trip", _short(f"{action}: {e.reason}")
    if kind == "phase_transition" and p.get("level") == "batch":
        to = p.get("to")
        if to == "Holding":
            return "hold", _short(f"batch held by {e.actor}: {e.reason}")
        if to in ("Aborting", "Stopping"):
            return "abort", _short(f"batch {str(to).lower()[:-3]}ed by {e.actor}: {e.reason}")
        return None
    if kind == "intervention":
        return "intervention", _short(f"{action} by {e.actor}: {e.reason}")
    if kind == "correction":
        fields = ", ".join(sorted(p.get("changes", {}))) if isinstance(p.get("changes"), dict) else ""
        return "correction", _short(f"corrects seq {p.get('corrects_seq')} ({fields}): {e.reason}")
    if kind == "deviation":
        return "deviation", _short(f"{action} by {e.actor}: {e.reason}")
    if kind == "command" and (action.startswith("bypass.") or action.endswith("under bypass")):
        return "bypass", _short(f"{action} by {e.actor}: {e.reason}")
    if kind in ("command", "signature") and action.startswith("override"):
        return "override", _short(f"{action} by {e.actor}: {e.reason}")
    if kind == "cycle_result" and p.get("result") == "FAIL":
        reasons = p.get("reasons") or e.reason
        return "out_of_band", _short(f"{p.get('cycle', '')} cycle {p.get('run_id', '')} FAILED: {reasons}")
    if kind == "glove_test" and str(p.get("result", "")).upper() in ("FAIL", "DEFECT", "FAILED"):
        return "out_of_band", _short(f"glove {action} {p.get('result')}: {e.reason}")
    if kind == "environment":
        if action.endswith(".hold"):
            return "hold", _short(f"EM hold: {e.reason}")
        alert, act = p.get("alert_excursions") or 0, p.get("action_excursions") or 0
        if alert or act or p.get("monitoring_valid") is False:
            what = []
            if act:
                what.append(f"{act} action-level excursion(s)")
            if alert:
                what.append(f"{alert} alert-level excursion(s)")
            if p.get("monitoring_valid") is False:
                what.append("monitoring not valid")
            return "out_of_band", _short(f"EM {p.get('phase', action)}: {', '.join(what)}")
        return None
    if kind == "alarm":
        aid = str(p.get("alarm_id", ""))
        if aid == "CELL_RECORD_FAULT" and p.get("event") == "raised":
            return "record_fault", _short(f"CELL_RECORD_FAULT: {p.get('message') or e.reason}")
        if action.endswith(".comm_lost"):
            return "alarm", _short(f"{action}: {e.reason}")
        if p.get("event") == "raised" and _priority_at_least(p.get("priority"), min_priority):
            return "alarm", _short(f"{aid} ({p.get('priority', '?')}): {p.get('message') or e.reason}")
        return None
    if kind == "custody":
        vr = p.get("verification_result")
        verdict = vr if isinstance(vr, dict) else {}
        if (verdict.get("action") not in (None, "PROCEED") or action in ("custody.hold", "custody.quarantine")):
            return "custody", _short(f"{action}: {verdict.get('code', '')} {e.reason}")
    if kind == "auth" and action.startswith("auth.") and action != "auth.unlock":
        return "access", _short(f"{action} for user {p.get('user_id', '?')}")
    return None


def departures(source: BatchSource, min_priority: str = DEFAULT_MIN_PRIORITY) -> list[Departure]:
    """Every departure from the recipe in ``source`` (batch and cell-level entries), in seq order."""
    if min_priority not in PRIORITIES:
        raise ValueError(f"min_priority must be one of {', '.join(PRIORITIES)}, got {min_priority!r}")
    out: list[Departure] = []
    regressions = set(source.chain.clock_regressions)
    entries = sorted((*source.entries, *source.cell_entries), key=lambda e: e.seq)
    for e in entries:
        found = _classify(e, min_priority)
        if found is not None:
            out.append(Departure(found[0], e.seq, e.hash, e.ts_iso, e.actor, e.role, e.action, found[1]))
        if e.seq in regressions:
            out.append(Departure("clock", e.seq, e.hash, e.ts_iso, e.actor, e.role, e.action,
                                 "time stamp earlier than the previous entry's (clock went backwards)"))
    return out


def _is_change(e: Entry) -> bool:
    if e.actor in SYSTEM_ACTORS:
        return False
    if e.kind in ("correction", "config", "signature", "deviation", "intervention", "note"):
        return True
    return e.kind == "command" and e.action.startswith(_CHANGE_PREFIXES)


def audit_trail_summary(entries: Iterable[Entry]) -> tuple[dict[str, dict[str, Any]], list[Change]]:
    """(per person: role and entries by kind, the changes people made) - who changed what."""
    people: dict[str, dict[str, Any]] = {}
    changes: list[Change] = []
    for e in entries:
        if e.actor in SYSTEM_ACTORS:
            continue
        who = people.setdefault(e.actor, {"role": e.role, "entries": 0, "by_kind": {}})
        who["entries"] += 1
        who["by_kind"][e.kind] = who["by_kind"].get(e.kind, 0) + 1
        if e.role and not who["role"]:
            who["role"] = e.role
        if _is_change(e):
            changes.append(Change(e.seq, e.hash, e.ts_iso, e.actor, e.role, e.kind, e.action, _short(e.reason, 200)))
    return people, changes


def review_signatures(entries: Iterable[Entry]) -> list[dict[str, Any]]:
    """Every "reviewed" signature of the batch, with the seq and hash of its entry."""
    out = []
    for e in entries:
        if e.kind == "signature" and e.payload.get("meaning") == "review":
            out.append({**{k: e.payload.get(k) for k in ("user_id", "full_name", "role", "meaning", "signed_at_iso",
                                                          "record_hash")},
                        "seq": e.seq, "entry_hash": e.hash,
                        "covers_stored_subject": content_hash(e.payload.get("subject")) == e.payload.get("record_hash")
                        if "subject" in e.payload else False})
    return out


def review_by_exception(source: BatchSource | str | os.PathLike[str], batch_id: str | None = None,
                        min_priority: str = DEFAULT_MIN_PRIORITY) -> ExceptionReview:
    """Review one batch by exception (Annex 11 §9 [ANNEX11-2011]); ``source`` is a loaded batch or
    a record file (read-only; ``batch_id`` default: the file's last batch)."""
    src = source if isinstance(source, BatchSource) else load_batch(source, batch_id)
    people, changes = audit_trail_summary((*src.entries, *src.cell_entries))
    return ExceptionReview(
        batch_id=src.batch_id,
        record_file=Path(src.path).name,
        min_priority=min_priority,
        chain_ok=src.chain.ok,
        chain_text=str(src.chain),
        head_seq=src.chain.head_seq,
        head_hash=src.chain.head_hash,
        departures=departures(src, min_priority),
        people=people,
        changes=changes,
        reviews=review_signatures(src.entries),
    )


class ReviewRefused(Exception):
    """A "reviewed" signature was refused; ``reason`` says why (safe to show)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def sign_reviewed(record: Any, users: Any, user_id: str, password: str, *, batch_id: str | None = None,
                  min_priority: str = DEFAULT_MIN_PRIORITY, comment: str = "") -> Entry:
    """Sign batch ``batch_id`` of ``record`` (a :class:`~aseptic_cell.records.BatchRecord`) as
    reviewed by exception: authorise ``record.review``, re-authenticate (21 CFR 11.200 [CFR11]),
    append a kind ``signature`` entry with meaning ``review`` whose payload holds the signature
    and the review subject it covers.

    Raises:
        ReviewRefused: the chain does not verify, wrong password, locked/disabled account, or
            the role may not review.
    """
    from aseptic_cell.auth import AuthError

    review = review_by_exception(record.path, batch_id, min_priority)
    if not review.chain_ok:
        raise ReviewRefused(f"the record does not verify, it cannot be signed reviewed: {review.chain_text}")
    subject = review.subject()
    try:
        sig = users.sign(user_id, password, "review", content_hash(subject), action="record.review")
    except (AuthError, ValueError) as exc:
        raise ReviewRefused(getattr(exc, "reason", str(exc))) from exc
    counts = review.counts()
    reason = comment or ("reviewed by exception: " + (", ".join(f"{n} {k}" for k, n in counts.items())
                                                      or "no departures"))
    entry: Entry = record.append("signature", batch_id=review.batch_id, actor=sig.user_id, role=sig.role,
                                 action="record.review", reason=reason[:2000],
                                 payload={**sig.to_payload(), "subject": subject})
    return entry
