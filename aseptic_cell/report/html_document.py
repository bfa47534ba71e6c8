"""The batch report as one self-contained HTML file: no script, no external resource, plots as
PNG data URIs, every text from the record escaped (``html.escape``)."""

from __future__ import annotations

import base64
from html import escape
from typing import Any

from .batch_report import BatchReport
from .exceptions import CATEGORIES

_CSS = """
body{font-family:sans-serif;font-size:13px;margin:2em;color:#111}
table{border-collapse:collapse;margin:.4em 0 1em;width:100%}
th,td{border:1px solid #999;padding:2px 4px;text-align:left;vertical-align:top}
th{background:#e6e6e6} .ok{color:#060;font-weight:bold} .bad{color:#a00;font-weight:bold}
td.hash{font-family:monospace;font-size:11px;word-break:break-all} img{max-width:100%}
"""


def _t(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _table(header: list[str], rows: list[list[Any]], empty: str, hash_cols: tuple[int, ...] = ()) -> str:
    head = "".join(f"<th>{_t(h)}</th>" for h in header)
    if not rows:
        return f"<table><tr>{head}</tr><tr><td colspan='{len(header)}'>{_t(empty)}</td></tr></table>"
    body = "".join(
        "<tr>" + "".join(f"<td{' class=hash' if i in hash_cols else ''}>{_t(c)}</td>" for i, c in enumerate(r))
        + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _num(value: Any, fmt: str) -> str:
    return fmt.format(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def html_document(r: BatchReport) -> str:
    ok = bool(r.chain.get("ok"))
    verdict = f"<span class='{'ok' if ok else 'bad'}'>{'OK' if ok else 'FAILED'}</span>"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">",
        f"<title>Batch report {_t(r.batch_id)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Batch report {_t(r.batch_id)}</h1>",
        f"<p>Record file <b>{_t(r.record_file)}</b>; {r.entry_count} entries of this batch; generated "
        f"{_t(r.generated_at_iso)} (UTC). Chain verification: {verdict} - {_t(r.chain.get('text'))}</p>",
        "<h2>1. Batch identity</h2>",
        _table(["item", "value"], [["batch id", r.batch_id], *([k, v] for k, v in r.identity.items())], ""),
    ]
    if not r.identity:
        parts.append("<p>No chain of identity recorded for this batch.</p>")
    parts += [
        "<h2>2. Recipe and configuration</h2>",
        _table(["item", "value (as recorded at batch start)"], [[k, v] for k, v in r.versions.items()],
               "not recorded at batch start", (1,)),
        "<h2>3. Phase timeline</h2>",
        _table(["batch state", "when (UTC)", "by", "reason"],
               [[f"{s['from']} -> {s['to']}", s["ts_iso"], s["by"], s["reason"]] for s in r.batch_states], "none"),
        _table(["phase", "started (UTC)", "ended (UTC)", "duration (s)", "outcome"],
               [[p.phase, p.started_iso, p.ended_iso, _num(p.duration_s, "{:.0f}"), p.outcome] for p in r.phases],
               "no phase ran"),
        "<h2>4. Cycle data</h2>",
    ]
    if not r.cycles:
        parts.append("<p>No cycle result recorded.</p>")
    for c in r.cycles:
        keys = ("cycle", "run_id", "recipe_id", "recipe_version", "program_id", "load_id", "result",
                "dwell_min_ppm", "dwell_mean_ppm", "dwell_max_ppm", "dwell_time_s", "aeration_end_ppm",
                "injected_g", "plateau_min_c", "plateau_max_c", "hold_time_in_band_s", "f0_min", "f0_target_min")
        rows = [[k, _num(c[k], "{:.6g}")] for k in keys if k in c and c[k] is not None]
        rows.append(["reasons", "; ".join(map(str, c.get("reasons") or [])) or "-"])
        rows.append(["record entry", f"seq {c['seq']} / sha256:{c['entry_hash']}"])
        parts.append(_table(["item", "value"], rows, ""))
        png = r.plots.get(str(c.get("run_id", c["seq"])))
        if png:
            parts.append(f"<img alt='{_t(c.get('cycle'))} cycle {_t(c.get('run_id'))} plot' "
                         f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
    rv = r.review
    order = {c: i for i, c in enumerate(CATEGORIES)}
    counts = ", ".join(f"{k} {n}" for k, n in rv.counts().items())
    parts += [
        "<h2>5. Environmental monitoring</h2>",
        _table(["open-product phase", "max ≥0.5 µm /m³", "max ≥5 µm /m³", "alert exc.", "action exc.", "valid"],
               [[m["phase"], _num(m["max_0_5_per_m3"], "{:.0f}"), _num(m["max_5_0_per_m3"], "{:.1f}"),
                 m["alert_excursions"], m["action_excursions"], m["monitoring_valid"]] for m in r.em],
               "no EM summary recorded"),
        "<h2>6. Materials and lots</h2>",
        _table(["seq", "when (UTC)", "action", "identifiers", "by"],
               [[m["seq"], m["ts_iso"], m["action"], m["ids"], m["by"]] for m in r.materials], "none recorded"),
        "<h2>7. Custody log</h2>",
        _table(["seq", "when (UTC)", "action", "by", "detail"],
               [[c["seq"], c["ts_iso"], c["action"], c["by"], c["reason"]] for c in r.custody],
               "no custody events recorded"),
        "<h2 id='exceptions'>8. Exceptions (review by exception)</h2>",
        f"<p>Departures from the recipe: <b>{len(rv.departures)}</b>{f' ({_t(counts)})' if counts else ''}; "
        f"alarms listed from priority <b>{_t(rv.min_priority)}</b> up. Each links to its record entry "
        "(seq and entry hash).</p>",
        _table(["category", "seq", "when (UTC)", "who", "what", "entry hash"],
               [[d.category, d.seq, d.ts_iso, f"{d.actor} ({d.role})" if d.role else d.actor, d.summary, d.entry_hash]
                for d in sorted(rv.departures, key=lambda d: (order.get(d.category, 99), d.seq))],
               "no departure from the recipe", (5,)),
        "<h3>Audit-trail review: who changed what</h3>",
        _table(["person", "role", "entries", "by kind"],
               [[who, p["role"], p["entries"], ", ".join(f"{k} {n}" for k, n in sorted(p["by_kind"].items()))]
                for who, p in sorted(rv.people.items())], "no person acted"),
        _table(["seq", "when (UTC)", "who", "kind", "action", "reason"],
               [[c.seq, c.ts_iso, c.actor, c.kind, c.action, c.reason] for c in rv.changes], "no change by a person"),
        "<h3 id='deviations'>Deviations and disposition</h3>",
        _table(["deviation", "class", "state", "raised (seq)", "linked seqs", "description", "root cause / closed by"],
               [[d["id"], d["class"], d["state"], d["raised_seq"], ", ".join(str(x.get("seq")) for x in d["links"]),
                 d["description"], f"{d['root_cause']} ({d['closed_by']})" if d["closed_by"] else ""]
                for d in r.deviations], "no deviation"),
        f"<p>Disposition: <b>{_t(r.disposition.get('state', 'OPEN'))}</b>"
        + (f" at seq {_t(r.disposition.get('seq'))} by {_t(r.disposition.get('by'))} ({_t(r.disposition.get('at'))})"
           if r.disposition.get("seq") else "") + "</p>",
        "<h2>9. Signatures (21 CFR 11.50)</h2>",
        _table(["seq", "name", "time (UTC)", "meaning", "action", "signed content hash"],
               [[s["seq"], f"{s['name']} ({s['user_id']}, {s['role']})", s["signed_at_iso"], s["meaning"].upper(),
                 s["action"], s["record_hash"]] for s in r.signatures], "no signature recorded", (5,)),
        "<h2>10. Chain verification</h2>",
        f"<p>{verdict}: {_t(r.chain.get('text'))}"
        + ("" if ok else f"; verified up to seq {_t(r.chain.get('head_seq'))}, hash "
                         f"<code>{_t(r.chain.get('head_hash'))}</code>") + "</p>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
