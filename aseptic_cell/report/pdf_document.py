"""The batch report as PDF (reportlab platypus). Every text from the record is escaped before it
reaches reportlab's paragraph mark-up; the font is DejaVu Sans (shipped with matplotlib) so that
any text in the record prints as written."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from .batch_report import BatchReport
from .exceptions import CATEGORIES

_FONT = "Helvetica"
_FONT_BOLD = "Helvetica-Bold"


def _fonts() -> tuple[str, str]:
    global _FONT, _FONT_BOLD
    if _FONT != "Helvetica":
        return _FONT, _FONT_BOLD
    try:
        import matplotlib
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.ttfonts import TTFont

        ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
        pdfmetrics.registerFont(TTFont("DejaVuSans", str(ttf / "DejaVuSans.ttf")))
        pdfmetrics.registerFont(TTFont("DejaVuSans-Bold", str(ttf / "DejaVuSans-Bold.ttf")))
        _FONT, _FONT_BOLD = "DejaVuSans", "DejaVuSans-Bold"
    except Exception:  # noqa: BLE001 - fall back to the PDF base font
        pass
    return _FONT, _FONT_BOLD


def _t(value: Any) -> str:
    return escape("" if value is None else str(value))


def _num(value: Any, fmt: str = "{:.1f}") -> str:
    return fmt.format(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else _t(value)


def write_pdf(report: BatchReport, out: Path) -> Path:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import Image, LongTable, Paragraph, SimpleDocTemplate, Spacer, TableStyle

    font, bold = _fonts()
    ss = getSampleStyleSheet()
    body = ParagraphStyle("body", parent=ss["BodyText"], fontName=font, fontSize=8.5, leading=10.5)
    small = ParagraphStyle("small", parent=body, fontSize=7, leading=8.5)
    h1 = ParagraphStyle("h1", parent=ss["Heading1"], fontName=bold, fontSize=15)
    h2 = ParagraphStyle("h2", parent=ss["Heading2"], fontName=bold, fontSize=11.5, spaceBefore=8)
    width = A4[0] - 30 * mm

    def para(text: str, style: ParagraphStyle = body) -> Paragraph:
        return Paragraph(text, style)

    def table(header: list[str], rows: list[list[Any]], widths: list[float]) -> LongTable:
        data = [[para(f"<b>{_t(h)}</b>", small) for h in header]]
        data += [[para(_t(c), small) for c in r] for r in rows]
        tab = LongTable(data, colWidths=[w * width for w in widths], repeatRows=1)
        tab.setStyle(TableStyle([
            ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e6e6e6")),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LEFTPADDING", (0, 0), (-1, -1), 2), ("RIGHTPADDING", (0, 0), (-1, -1), 2),
        ]))
        return tab

    r = report
    story: list[Any] = [para(f"Batch report {_t(r.batch_id)}", h1)]
    chain_ok = bool(r.chain.get("ok"))
    story.append(para(
        f"Record file <b>{_t(r.record_file)}</b>; {r.entry_count} entries of this batch; generated "
        f"{_t(r.generated_at_iso)} (UTC). Chain verification: <b>{'OK' if chain_ok else 'FAILED'}</b> - "
        f"{_t(r.chain.get('text'))}"))

    story.append(para("1. Batch identity", h2))
    ident = [["batch id", r.batch_id]] + [[k, v] for k, v in r.identity.items()]
    if not r.identity:
        ident.append(["chain of identity", "none recorded for this batch"])
    story.append(table(["item", "value"], ident, [0.3, 0.7]))

    story.append(para("2. Recipe and configuration", h2))
    vers = [[k, v] for k, v in r.versions.items()] or [["-", "not recorded at batch start"]]
    story.append(table(["item", "value (as recorded at batch start)"], vers, [0.3, 0.7]))

    story.append(para("3. Phase timeline", h2))
    story.append(table(["batch state", "when (UTC)", "by", "reason"],
                       [[f"{s['from']} -> {s['to']}", s["ts_iso"], s["by"], s["reason"]] for s in r.batch_states],
                       [0.2, 0.27, 0.13, 0.4]))
    story.append(Spacer(1, 4))
    story.append(table(["phase", "started (UTC)", "ended (UTC)", "duration (s)", "outcome"],
                       [[p.phase, p.started_iso, p.ended_iso, _num(p.duration_s, "{:.0f}"), p.outcome]
                        for p in r.phases], [0.36, 0.21, 0.21, 0.09, 0.13]))

    story.append(para("4. Cycle data", h2))
    if not r.cycles:
        story.append(para("No cycle result recorded."))
    for c in r.cycles:
        keys = ("cycle", "run_id", "recipe_id", "recipe_version", "program_id", "load_id", "result",
                "dwell_min_ppm", "dwell_mean_ppm", "dwell_max_ppm", "dwell_time_s", "aeration_end_ppm",
                "injected_g", "plateau_min_c", "plateau_max_c", "hold_time_in_band_s", "f0_min", "f0_target_min")
        rows = [[k, _num(c[k], "{:.6g}")] for k in keys if k in c and c[k] is not None]
        rows.append(["reasons", "; ".join(map(str, c.get("reasons") or [])) or "-"])
        rows.append(["record entry", f"seq {c['seq']} / sha256:{c['entry_hash']}"])
        story.append(table(["item", "value"], rows, [0.3, 0.7]))
        png = r.plots.get(str(c.get("run_id", c["seq"])))
        if png:
            story.append(Image(io.BytesIO(png), width=width, height=width * 2.8 / 7.0))
        story.append(Spacer(1, 6))

    story.append(para("5. Environmental monitoring", h2))
    story.append(table(["open-product phase", "max ≥0.5 µm /m³", "max ≥5 µm /m³", "alert exc.", "action exc.",
                        "valid"],
                       [[m["phase"], _num(m["max_0_5_per_m3"], "{:.0f}"), _num(m["max_5_0_per_m3"], "{:.1f}"),
                         m["alert_excursions"], m["action_excursions"], m["monitoring_valid"]] for m in r.em]
                       or [["no EM summary recorded", "", "", "", "", ""]], [0.4, 0.14, 0.14, 0.1, 0.1, 0.12]))

    story.append(para("6. Materials and lots", h2))
    story.append(table(["seq", "when (UTC)", "action", "identifiers", "by"],
                       [[m["seq"], m["ts_iso"], m["action"], m["ids"], m["by"]] for m in r.materials]
                       or [["", "", "none recorded", "", ""]], [0.07, 0.25, 0.22, 0.36, 0.1]))

    story.append(para("7. Custody log", h2))
    story.append(table(["seq", "when (UTC)", "action", "by", "detail"],
                       [[c["seq"], c["ts_iso"], c["action"], c["by"], c["reason"]] for c in r.custody]
                       or [["", "", "no custody events recorded", "", ""]], [0.07, 0.25, 0.22, 0.1, 0.36]))

    rv = r.review
    story.append(para("8. Exceptions (review by exception)", h2))
    counts = rv.counts()
    story.append(para(
        f"Departures from the recipe: <b>{len(rv.departures)}</b>"
        + (" (" + ", ".join(f"{_t(k)} {n}" for k, n in counts.items()) + ")" if counts else "")
        + f"; alarms listed from priority <b>{_t(rv.min_priority)}</b> up. Each links to its record entry "
        "(seq and entry hash)."))
    order = {c: i for i, c in enumerate(CATEGORIES)}
    story.append(table(["category", "seq", "when (UTC)", "who", "what", "link (entry hash)"],
                       [[d.category, d.seq, d.ts_iso, f"{d.actor} ({d.role})" if d.role else d.actor, d.summary,
                         d.entry_hash[:16] + "…"]
                        for d in sorted(rv.departures, key=lambda d: (order.get(d.category, 99), d.seq))]
                       or [["none", "", "", "", "no departure from the recipe", ""]],
                       [0.1, 0.07, 0.2, 0.1, 0.38, 0.15]))
    story.append(para("Audit-trail review: who changed what", h2))
    story.append(table(["person", "role", "entries", "by kind"],
                       [[who, p["role"], p["entries"], ", ".join(f"{k} {n}" for k, n in sorted(p["by_kind"].items()))]
                        for who, p in sorted(rv.people.items())] or [["no person acted", "", "", ""]],
                       [0.15, 0.15, 0.1, 0.6]))
    story.append(Spacer(1, 4))
    story.append(table(["seq", "when (UTC)", "who", "kind", "action", "reason"],
                       [[c.seq, c.ts_iso, c.actor, c.kind, c.action, c.reason] for c in rv.changes]
                       or [["", "", "", "", "no change by a person", ""]], [0.06, 0.22, 0.1, 0.12, 0.2, 0.3]))

    story.append(para("Deviations and disposition", h2))
    story.append(table(["deviation", "class", "state", "raised", "description", "root cause (closed by)"],
                       [[d["id"], d["class"], d["state"], d["raised_seq"], d["description"],
                         f"{d['root_cause']} ({d['closed_by']})" if d["closed_by"] else ""] for d in r.deviations]
                       or [["none", "", "", "", "no deviation", ""]], [0.16, 0.08, 0.1, 0.07, 0.35, 0.24]))
    disp = r.disposition
    story.append(para(f"Disposition: <b>{_t(disp.get('state', 'OPEN'))}</b>" + (
        f" at seq {_t(disp.get('seq'))} by {_t(disp.get('by'))} ({_t(disp.get('at'))})" if disp.get("seq") else "")))

    story.append(para("9. Signatures (21 CFR 11.50)", h2))
    story.append(table(["seq", "name", "time (UTC)", "meaning", "action", "signed content hash"],
                       [[s["seq"], f"{s['name']} ({s['user_id']}, {s['role']})", s["signed_at_iso"],
                         s["meaning"].upper(), s["action"], s["record_hash"]] for s in r.signatures]
                       or [["", "no signature recorded", "", "", "", ""]], [0.06, 0.22, 0.2, 0.1, 0.14, 0.28]))

    story.append(para("10. Chain verification", h2))
    story.append(para(f"<b>{'OK' if chain_ok else 'FAILED'}</b>: {_t(r.chain.get('text'))}"
                      + ("" if chain_ok else f"; verified up to seq {_t(r.chain.get('head_seq'))}, hash "
                                             f"{_t(r.chain.get('head_hash'))}")))

    def footer(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(font, 7)
        canvas.drawString(15 * mm, 10 * mm, f"Batch {r.batch_id} - record {r.record_file} - head "
                          f"{str(r.chain.get('head_hash', ''))[:16]}… - generated {r.generated_at_iso}")
        canvas.drawRightString(A4[0] - 15 * mm, 10 * mm, f"page {doc.page}")
        canvas.restoreState()

    out.parent.mkdir(parents=True, exist_ok=True)
    doc = SimpleDocTemplate(str(out), pagesize=A4, leftMargin=15 * mm, rightMargin=15 * mm, topMargin=15 * mm,
                            bottomMargin=18 * mm, title=f"Batch report {r.batch_id}", author="aseptic_cell",
                            invariant=True)
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return out
