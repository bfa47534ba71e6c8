"""Exports of the batch record: an electronic JSON copy and a human-readable printout.

Part 11 §11.10(b) (accurate and complete copies, human-readable and electronic), Annex 11 §8
(printouts show when an entry was changed after it was made), Part 11 §11.50 (every
signature shows printed name, date/time and meaning).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .canonical import iso_utc

if TYPE_CHECKING:
    from .store import BatchRecord, Entry

EXPORT_FORMAT = "aseptic_cell.batch_record.export.v1"


def export_json(record: BatchRecord, batch_id: str) -> str:
    """JSON document: every entry of ``batch_id`` with its hashes, plus the whole-file check."""
    report = record.verify()
    doc = {
        "format": EXPORT_FORMAT,
        "batch_id": batch_id,
        "exported_at": iso_utc(float(record.clock.now())),
        "record_file": record.path.name,
        "chain": report.to_dict(),
        "entries": [e.to_dict() for e in record.entries(batch_id=batch_id)],
    }
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def _cell(text: Any) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " <br> ")


def signature_manifest(sig: dict[str, Any]) -> str:
    """One line a reader can check: name, user id, role, date/time (UTC), meaning, what it covers."""
    return (
        f"SIGNED by {sig.get('full_name', '?')} ({sig.get('user_id', '?')}, {sig.get('role', '?')}) "
        f"on {sig.get('signed_at_iso', '?')} - meaning: {str(sig.get('meaning', '?')).upper()} - "
        f"covers record hash {sig.get('record_hash', '?')}"
    )


def _details(entry: Entry) -> str:
    p = entry.payload
    parts: list[str] = []
    if entry.kind == "signature":
        parts.append(f"**{signature_manifest(p)}**")
    elif isinstance(p.get("signature"), dict):
        parts.append(f"**{signature_manifest(p['signature'])}**")
    if entry.kind == "correction":
        for name, change in sorted(p.get("changes", {}).items()):
            parts.append(
                f"corrects seq {p.get('corrects_seq')}: {name}: "
                f"old={json.dumps(change.get('old'), ensure_ascii=False)} "
                f"new={json.dumps(change.get('new'), ensure_ascii=False)}"
            )
    rest = {
        k: v for k, v in p.items() if k not in ("signature", "changes") and not (entry.kind == "signature")
    }
    if rest:
        parts.append(json.dumps(rest, sort_keys=True, ensure_ascii=False))
    return " <br> ".join(_cell(x) for x in parts)


def render_text(record: BatchRecord, batch_id: str) -> str:
    """Markdown printout of one batch: who / what / when / why, signatures manifested,
    corrected entries flagged, clock regressions flagged, chain status and head hash."""
    entries = record.entries(batch_id=batch_id)
    report = record.verify()
    corrected_by: dict[int, list[int]] = {}
    for e in record.entries(kinds=["correction"]):
        target = e.payload.get("corrects_seq")
        if isinstance(target, int):
            corrected_by.setdefault(target, []).append(e.seq)
    regressions = set(report.clock_regressions)

    lines = [
        f"# Batch record {batch_id or '(cell-level entries)'}",
        "",
        f"- Record file: `{record.path.name}`",
        f"- Printed at: {iso_utc(float(record.clock.now()))} (UTC)",
        f"- Entries for this batch: {len(entries)}",
        f"- Chain check (whole file): {'OK' if report.ok else 'FAILED - ' + report.problem}",
        f"- Head: seq {report.head_seq}, hash `{report.head_hash}`",
        "",
        "| seq | when (UTC) | kind | who (role) | what | why | details | flags |",
        "|---:|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        flags = []
        if e.seq in corrected_by:
            flags.append("CHANGED LATER by seq " + ", ".join(map(str, corrected_by[e.seq])))
        if e.seq in regressions:
            flags.append("CLOCK WENT BACKWARDS")
        who = f"{e.actor} ({e.role})" if e.role else e.actor
        lines.append(
            "| "
            + " | ".join(
                [
                    str(e.seq),
                    _cell(e.ts_iso),
                    _cell(e.kind),
                    _cell(who),
                    _cell(e.action),
                    _cell(e.reason),
                    _details(e),
                    _cell("; ".join(flags)),
                ]
            )
            + " |"
        )
    sigs = [e for e in entries if e.kind == "signature" or isinstance(e.payload.get("signature"), dict)]
    if sigs:
        lines += ["", "## Signatures", ""]
        for e in sigs:
            sig = e.payload if e.kind == "signature" else e.payload["signature"]
            lines.append(f"- seq {e.seq}: {signature_manifest(sig)}")
    lines.append("")
    return "\n".join(lines)
