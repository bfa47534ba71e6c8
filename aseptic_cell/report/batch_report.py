"""The human-readable batch report (21 CFR 11.10(b) [CFR11]; Annex 11 §8 [ANNEX11-2011]).

:func:`build_report` gathers, from one batch of a record file (read-only): the batch identity
(and its chain of identity when the record holds one), recipe and configuration version with
their hashes as recorded at batch start, the phase timeline, cycle data (VHP concentration
profile; autoclave temperatures and F0) with plots, the EM summary, materials and lots, the
custody log, the exceptions section (:mod:`.exceptions`), every signature as name, time (UTC)
and meaning (21 CFR 11.50 [CFR11]) and the chain verification result.
:func:`render_pdf` (reportlab platypus) and :func:`render_html` (one self-contained file, plots as
PNG data URIs, every text escaped) print it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aseptic_cell.records import Entry, iso_utc

from .exceptions import DEFAULT_MIN_PRIORITY, ExceptionReview, review_by_exception
from .source import BatchSource, load_batch

REPORT_FORMAT = "aseptic_cell.batch_report.v1"
_MATERIAL_KEYS = ("load_id", "beta_id", "lot", "lot_id", "material_id", "container_id", "din", "bag_id")
_IDENTITY_KEYS = ("coi", "coi_id", "din", "patient_id", "isbt128_din")
_CUSTODY_PREFIXES = ("coi.", "custody.", "container.", "chain_of_identity.")


@dataclass
class PhaseRow:
    phase: str
    started_iso: str = ""
    ended_iso: str = ""
    duration_s: float | None = None
    outcome: str = ""
    _t0: float | None = None


@dataclass
class BatchReport:
    """Everything the printed report shows (also exported as JSON by the CLI)."""

    batch_id: str
    record_file: str
    generated_at_iso: str
    identity: dict[str, Any]
    versions: dict[str, Any]
    batch_states: list[dict[str, Any]]
    phases: list[PhaseRow]
    cycles: list[dict[str, Any]]
    em: list[dict[str, Any]]
    materials: list[dict[str, Any]]
    custody: list[dict[str, Any]]
    review: ExceptionReview
    signatures: list[dict[str, Any]]
    chain: dict[str, Any]
    entry_count: int
    plots: dict[str, bytes] = field(default_factory=dict)
    """PNG images by cycle run id (made by :func:`make_plots`)."""
    deviations: list[dict[str, Any]] = field(default_factory=list)
    """The batch's deviations with their state (aseptic_cell/disposition)."""
    disposition: dict[str, Any] = field(default_factory=dict)
    """QA's release / reject (state OPEN until then)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": REPORT_FORMAT,
            "batch_id": self.batch_id,
            "record_file": self.record_file,
            "generated_at": self.generated_at_iso,
            "identity": self.identity,
            "versions": self.versions,
            "batch_states": self.batch_states,
            "phases": [{k: v for k, v in vars(p).items() if not k.startswith("_")} for p in self.phases],
            "cycles": [{k: v for k, v in c.items() if k != "series"} for c in self.cycles],
            "em": self.em,
            "materials": self.materials,
            "custody": self.custody,
            "exceptions": self.review.to_dict(),
            "signatures": self.signatures,
            "chain": self.chain,
            "entry_count": self.entry_count,
            "deviations": self.deviations,
            "disposition": self.disposition,
        }


def _identity(entries: tuple[Entry, ...]) -> dict[str, Any]:
    ident: dict[str, Any] = {}
    for e in entries:
        args = e.payload.get("args")
        for scope in (e.payload, args if isinstance(args, dict) else {}):
            for k in _IDENTITY_KEYS:
                v = scope.get(k)
                if isinstance(v, (str, int)) and str(v) and k not in ident:
                    ident[k] = str(v)
    return ident


def _versions(entries: tuple[Entry, ...]) -> dict[str, Any]:
    """Recipe id/version and every ``*hash*``/``*version*`` value recorded with the batch start or
    in a ``config`` entry of the batch (the first value of each key)."""
    out: dict[str, Any] = {}
    for e in entries:
        if e.kind == "config" or (e.kind == "command" and e.action == "batch.start"):
            for k, v in sorted(e.payload.items()):
                if isinstance(v, (str, int, float)) and ("recipe" in k or "hash" in k or "version" in k):
                    out.setdefault(k, v)
                elif isinstance(v, dict) and "hash" in k:
                    for kk, vv in sorted(v.items()):
                        out.setdefault(f"{k}.{kk}", vv)
    return out


def _phases(entries: tuple[Entry, ...]) -> tuple[list[PhaseRow], list[dict[str, Any]]]:
    rows: dict[str, PhaseRow] = {}
    order: list[PhaseRow] = []
    states: list[dict[str, Any]] = []
    for e in entries:
        if e.kind != "phase_transition":
            continue
        p = e.payload
        if p.get("level") == "batch":
            states.append({"seq": e.seq, "ts_iso": e.ts_iso, "from": p.get("from"), "to": p.get("to"),
                           "by": e.actor, "reason": e.reason})
            continue
        name = str(p.get("phase", ""))
        row = rows.get(name)
        if row is None or (p.get("to") == "Running" and row.outcome in ("Complete", "Stopped", "Aborted")):
            row = rows[name] = PhaseRow(name)
            order.append(row)
        if p.get("to") == "Running" and row._t0 is None:
            row.started_iso, row._t0 = e.ts_iso, e.ts
        row.outcome = str(p.get("to", ""))
        if row.outcome in ("Complete", "Stopped", "Aborted", "Held"):
            row.ended_iso = e.ts_iso
            if row._t0 is not None:
                row.duration_s = round(e.ts - row._t0, 3)
    return order, states


def _cycles(entries: tuple[Entry, ...]) -> list[dict[str, Any]]:
    return [dict(e.payload, seq=e.seq, entry_hash=e.hash, ts_iso=e.ts_iso) for e in entries
            if e.kind == "cycle_result"]


def _em(entries: tuple[Entry, ...]) -> list[dict[str, Any]]:
    out = []
    for e in entries:
        if e.kind == "environment" and e.action.endswith(".em_summary"):
            p = e.payload
            out.append({"seq": e.seq, "phase": p.get("phase", ""), "max_0_5_per_m3": p.get("max_0_5_per_m3"),
                        "max_5_0_per_m3": p.get("max_5_0_per_m3"), "alert_excursions": p.get("alert_excursions"),
                        "action_excursions": p.get("action_excursions"),
                        "monitoring_valid": p.get("monitoring_valid"), "limits": p.get("limits", {})})
    return out


def _materials(entries: tuple[Entry, ...]) -> list[dict[str, Any]]:
    out = []
    for e in entries:
        raw = e.payload.get("args")
        args: dict[str, Any] = raw if isinstance(raw, dict) else {}
        found = {k: v for scope in (args, e.payload) for k, v in scope.items() if k in _MATERIAL_KEYS}
        if e.kind == "material" or (e.kind == "command" and found):
            out.append({"seq": e.seq, "ts_iso": e.ts_iso, "action": e.action, "by": e.actor,
                        "ids": ", ".join(f"{k}={v}" for k, v in sorted(found.items())), "reason": e.reason})
    return out


def _custody_detail(p: dict[str, Any]) -> str:
    """Key facts of a custody entry: the chain-of-identity log's fields (:mod:`aseptic_cell.coi.custody`)."""
    flat = dict(p)
    if isinstance(p.get("container_ids"), list):
        flat["container_ids"] = " ".join(str(c) for c in p["container_ids"])
    vr = p.get("verification_result")
    if isinstance(vr, dict):
        flat["verification"] = f"{vr.get('code', '')} {vr.get('action', '')}".strip()
    keys = ("coi_id", "container_ids", "location_from", "location_to", "equipment_id", "verification")
    return ", ".join(f"{k}={flat[k]}" for k in keys if isinstance(flat.get(k), (str, int, float)) and str(flat[k]))


def _custody(entries: tuple[Entry, ...]) -> list[dict[str, Any]]:
    return [{"seq": e.seq, "ts_iso": e.ts_iso, "action": e.action, "by": e.actor,
             "reason": "; ".join(x for x in (e.reason, _custody_detail(e.payload)) if x)}
            for e in entries
            if e.kind == "custody" or e.action.startswith(_CUSTODY_PREFIXES) or "custody" in e.payload]


def _signatures(entries: tuple[Entry, ...]) -> list[dict[str, Any]]:
    out = []
    for e in entries:
        sig = e.payload if e.kind == "signature" else e.payload.get("signature")
        if isinstance(sig, dict) and sig.get("meaning"):
            out.append({"seq": e.seq, "name": sig.get("full_name", "?"), "user_id": sig.get("user_id", "?"),
                        "role": sig.get("role", ""), "signed_at_iso": sig.get("signed_at_iso", "?"),
                        "meaning": str(sig.get("meaning", "?")), "action": sig.get("action") or e.action,
                        "record_hash": sig.get("record_hash", "")})
    return out


def build_report(source: BatchSource | str | os.PathLike[str], batch_id: str | None = None, *,
                 min_priority: str = DEFAULT_MIN_PRIORITY, plots: bool = True,
                 now: float | None = None) -> BatchReport:
    """The report of one batch (default: the file's last batch), read-only."""
    src = source if isinstance(source, BatchSource) else load_batch(source, batch_id)
    entries = src.entries
    phases, states = _phases(entries)
    report = BatchReport(
        batch_id=src.batch_id,
        record_file=Path(src.path).name,
        generated_at_iso=iso_utc(time.time() if now is None else now),
        identity=_identity(entries),
        versions=_versions(entries),
        batch_states=states,
        phases=phases,
        cycles=_cycles(entries),
        em=_em(entries),
        materials=_materials(entries),
        custody=_custody(entries),
        review=review_by_exception(src, min_priority=min_priority),
        signatures=_signatures(entries),
        chain=src.chain.to_dict() | {"text": str(src.chain)},
        entry_count=len(entries),
    )
    from aseptic_cell.disposition import fold
    from aseptic_cell.disposition.qa import status_of

    report.deviations = [d.to_dict() for d in fold(entries).values()]
    report.disposition = status_of(entries, src.batch_id)
    if plots:
        from .plots import cycle_plot

        for c in report.cycles:
            png = cycle_plot(c)
            if png:
                report.plots[str(c.get("run_id", c["seq"]))] = png
    return report


def render_pdf(report: BatchReport, out: str | os.PathLike[str]) -> Path:
    from .pdf_document import write_pdf

    return write_pdf(report, Path(out))


def render_html(report: BatchReport) -> str:
    from .html_document import html_document

    return html_document(report)
