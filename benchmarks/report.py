"""Batch report generation time for a 10-day batch (issue 15: "report generation time for a
10-day batch").

    .venv/bin/python benchmarks/report.py [--json] [--days 10] [--per-hour 120] [--dir DIR] [--keep]

A long record is synthesised with the real store (:class:`aseptic_cell.records.BatchRecord`:
every append committed with ``synchronous=FULL``; written under /dev/shm when it exists, so the
synthesis is not the measured part): ``--per-hour`` routine entries per hour over ``--days``
(operator and device commands, low-priority alarms raised/returned, an EM summary per hour),
the phase transitions of a batch, one VHP cycle and a daily autoclave cycle with their full
recorded series (the in-process cell's sizes: 958 and 400 samples), and departures (refusals,
trips with holds and signed restarts, interventions, a bypass, a correction, a deviation,
high-priority alarms, EM excursions). Then timed, each by wall and process CPU time:
``review`` (read the batch read-only, verify the whole chain, review by exception),
``build`` (everything in the report incl. the plots), ``pdf`` (reportlab) and ``html``; plus
the PDF's pages and sizes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aseptic_cell.records import BatchRecord  # noqa: E402
from aseptic_cell.report import build_report, render_html, render_pdf, review_by_exception  # noqa: E402


class SimClock:
    def __init__(self, t0: float) -> None:
        self.t = t0

    def now(self) -> float:
        return self.t


def _sig(user: str, name: str, role: str, meaning: str, t: float) -> dict[str, Any]:
    from aseptic_cell.records import iso_utc

    return {"user_id": user, "full_name": name, "role": role, "meaning": meaning, "record_hash": "ab" * 32,
            "signed_at": t, "signed_at_iso": iso_utc(t), "action": "batch.restart"}


def _vhp(t0: float) -> dict[str, Any]:
    n = 958
    t = [t0 + 10.0 * i for i in range(n)]
    ppm = [0.0 if i < 50 else 490.0 if i < 170 else 490.0 * math.exp(-(i - 170) / 60.0) for i in range(n)]
    return {"result": "PASS", "run_id": "VHP1-0001", "recipe_id": "VHP-ISO-STD", "recipe_version": 3,
            "dwell_min_ppm": 466.2, "dwell_mean_ppm": 490.0, "dwell_max_ppm": 565.2, "dwell_time_s": 1200.0,
            "aeration_end_ppm": 0.57, "injected_g": 5.93, "reasons": [],
            "series": {"t": t, "h2o2_ppm": ppm, "h2o2_ppm_b": ppm, "h2o2_residual_ppm": [p / 50 for p in ppm],
                       "rh_pct": [40.0] * n, "rs_pct": [40.0] * n, "temp_c": [21.0] * n, "dp_pa": [50.0] * n,
                       "phase": ["DECONTAMINATE"] * n}}


def _autoclave(t0: float, k: int) -> dict[str, Any]:
    n = 400
    t = [t0 + 5.0 * i for i in range(n)]
    temp = [min(122.0, 21.0 + i * 2.0) if i < 300 else 122.0 - (i - 300) * 0.4 for i in range(n)]
    f0, acc = [], 0.0
    for x in temp:
        acc += 5.0 / 60.0 * 10 ** ((x - 121.1) / 10.0)
        f0.append(acc)
    return {"result": "PASS", "run_id": f"AC1-{k:04d}", "program_id": "P121-15", "load_id": f"LOAD-{k:03d}",
            "plateau_min_c": 121.0, "plateau_max_c": 122.0, "hold_time_in_band_s": 900.0, "f0_min": acc,
            "f0_target_min": 12.0, "reasons": [],
            "series": {"t": t, "chamber_t_c": temp, "load_t_c": [x - 0.5 for x in temp], "f0_min": f0,
                       "chamber_p_kpa": [200.0] * n, "phase": ["PLATEAU"] * n}}


def synthesise(path: Path, days: float, per_hour: int, seed: int = 7) -> int:
    """Write a ``days``-long batch into ``path`` with the real store; return the number of entries."""
    rng = random.Random(seed)
    t0 = 1_780_000_000.0
    clock = SimClock(t0)
    b = "B-10DAY"
    with BatchRecord(path, clock) as rec:
        def add(kind: str, actor: str = "system", role: str = "", action: str = "", reason: str = "",
                payload: dict[str, Any] | None = None) -> None:
            rec.append(kind, batch_id=b, actor=actor, role=role, action=action, reason=reason, payload=payload or {})

        add("command", "op1", "operator", "batch.start", "recipe CART-EXPANSION v4",
            {"recipe_id": "CART-EXPANSION", "recipe_version": 4, "recipe_hash": "1f" * 32, "config_hash": "2e" * 32,
             "coi": "COI-2026-000123"})
        add("phase_transition", "op1", "operator", "batch.start", "",
            {"level": "batch", "from": "Idle", "to": "Running"})
        hours = int(days * 24)
        phases = [f"UP-EXPAND/OP-DAY{d + 1}/PH-CULTURE" for d in range(int(days))]
        special = {  # hour -> departures to write then
            3: "refusal", 7: "trip", 30: "intervention", 50: "bypass", 80: "correction", 100: "deviation",
            120: "alarm_high", 150: "em_excursion", 170: "trip", 200: "refusal", 220: "alarm_high",
        }
        for h in range(hours):
            day = h // 24
            if h % 24 == 0:
                phase = phases[min(day, len(phases) - 1)]
                if day:
                    add("phase_transition", "phase_logic", "", "phase.done", "",
                        {"level": "phase", "phase": phases[day - 1], "from": "Running", "to": "Complete"})
                add("phase_transition", "op1", "operator", "phase.start", "",
                    {"level": "phase", "phase": phase, "from": "Idle", "to": "Running"})
                add("glove_test", "op1", "operator", "glove.GP1.test", "daily", {"port": "GP1", "result": "PASS"})
                add("cycle_result", "system", "", "autoclave.cycle_pass", "", {"cycle": "autoclave",
                                                                               **_autoclave(clock.t, day + 1)})
            if h == 1:
                add("cycle_result", "system", "", "vhp.cycle_pass", "", {"cycle": "vhp", **_vhp(clock.t)})
            for i in range(per_hour):
                clock.t += 3600.0 / (per_hour + 2)
                r = rng.random()
                if r < 0.7:
                    add("command", "op1", "operator", f"ISO1.cmd{i % 17}", "routine step",
                        {"args": {"port": "GP1", "n": i}, "code": "OK", "device": "ISO1", "t": clock.t - t0})
                elif r < 0.85:
                    add("alarm", action="alarm.raised", reason="low alarm",
                        payload={"alarm_id": "ISO1_DP_HIGH", "event": "raised", "priority": "low", "message": "dp"})
                else:
                    add("alarm", action="alarm.returned", payload={"alarm_id": "ISO1_DP_HIGH", "event": "returned",
                                                                   "priority": "low"})
            add("environment", action=f"{phase}.em_summary", reason="EM summary",
                payload={"phase": f"{phase}#{h}", "max_0_5_per_m3": rng.uniform(100, 900), "max_5_0_per_m3": 0.0,
                         "alert_excursions": 1 if special.get(h) == "em_excursion" else 0,
                         "action_excursions": 0, "monitoring_valid": True})
            what = special.get(h)
            if what == "refusal":
                add("refusal", "op1", "operator", "isolator.open_alpha", "IL-02 RTP alpha door needs a docked beta",
                    {"code": "INTERLOCK"})
            elif what == "trip":
                add("trip", action="interlock.IL-08", reason="hatch door B open during the cycle")
                add("phase_transition", action="batch.hold", reason="trip",
                    payload={"level": "batch", "from": "Running", "to": "Holding"})
                add("phase_transition", action="batch.done", reason="held",
                    payload={"level": "batch", "from": "Holding", "to": "Held"})
                clock.t += 600
                add("signature", "sup1", "supervisor", "batch.restart", "door checked",
                    _sig("sup1", "Samuel Supervisor", "supervisor", "responsibility", clock.t))
                add("command", "sup1", "supervisor", "batch.restart", "door checked", {"state": "Held"})
                add("phase_transition", "sup1", "supervisor", "batch.restart", "door checked",
                    {"level": "batch", "from": "Held", "to": "Running"})
            elif what == "intervention":
                add("intervention", "sup1", "supervisor", "arm.recover", "gripper jam cleared", {"node": "arm"})
            elif what == "bypass":
                add("command", "sup1", "supervisor", "bypass.request", "sensor replacement", {"rule": "IL-12"})
                add("command", "qa1", "qa", "bypass.approve", "sensor replacement", {"rule": "IL-12"})
            elif what == "correction":
                rec.correct(3, actor="sup1", role="supervisor", reason="typo in the reason",
                            changes={"reason": ("a", "b")})
            elif what == "deviation":
                add("deviation", "qa1", "qa", "deviation.raise", "sample taken late", {"class": "minor"})
            elif what == "alarm_high":
                add("alarm", action="alarm.raised", reason="incubator temperature high",
                    payload={"alarm_id": "INC1_T_HIGH", "event": "raised", "priority": "high",
                             "message": "incubator temperature above 38 C"})
        add("phase_transition", action="batch.done", reason="procedure complete",
            payload={"level": "batch", "from": "Running", "to": "Complete"})
        return len(rec)


def timed(fn: Any) -> tuple[Any, float, float]:
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--days", type=float, default=10.0)
    ap.add_argument("--per-hour", type=int, default=120, help="routine entries per hour")
    ap.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    ap.add_argument("--keep", action="store_true", help="keep the record, PDF and HTML (printed)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="report-bench-", dir=args.dir))
    path = work / "tenday.db"
    n, synth_s, _ = timed(lambda: synthesise(path, args.days, args.per_hour))
    review, review_s, review_cpu = timed(lambda: review_by_exception(path))
    report, build_s, build_cpu = timed(lambda: build_report(path))
    _, pdf_s, pdf_cpu = timed(lambda: render_pdf(report, work / "tenday.pdf"))
    html, html_s, html_cpu = timed(lambda: render_html(report))
    (work / "tenday.html").write_text(html, encoding="utf-8")
    pages = None
    try:
        import pypdfium2 as pdfium

        doc = pdfium.PdfDocument(str(work / "tenday.pdf"))
        pages = len(doc)
        doc.close()
    except ImportError:
        pass
    out = {
        "days": args.days, "entries": n, "record_bytes": path.stat().st_size, "synthesis_s": round(synth_s, 2),
        "departures": len(review.departures), "departure_counts": review.counts(), "cycles": len(report.cycles),
        "review_s": round(review_s, 3), "review_cpu_s": round(review_cpu, 3),
        "build_s": round(build_s, 3), "build_cpu_s": round(build_cpu, 3),
        "pdf_s": round(pdf_s, 3), "pdf_cpu_s": round(pdf_cpu, 3),
        "html_s": round(html_s, 3), "html_cpu_s": round(html_cpu, 3),
        "report_total_s": round(build_s + pdf_s, 3),
        "pdf_bytes": (work / "tenday.pdf").stat().st_size, "pdf_pages": pages, "html_bytes": len(html.encode()),
        "chain_ok": bool(report.chain.get("ok")),
    }
    if args.keep:
        out["dir"] = str(work)
    else:
        for f in work.iterdir():
            f.unlink()
        work.rmdir()
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:>18}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
