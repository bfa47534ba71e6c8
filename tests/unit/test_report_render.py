"""The human-readable batch report (issue 15 item 3): a PDF of an in-process batch rendered to PNG
with a real rasteriser (pypdfium2) and its exceptions section read back; hostile text escaped in
HTML; every signature shown as name, UTC time and meaning; ``cellctl record report``."""

from __future__ import annotations

import math
import shutil
import sqlite3

import py_trees
import pypdfium2 as pdfium
import pytest

from aseptic_cell.auth import UserDirectory
from aseptic_cell.cli import main as cellctl
from aseptic_cell.config import default_config_dir, load_config
from aseptic_cell.records import BatchRecord
from aseptic_cell.report import build_report, render_html, render_pdf, sign_reviewed
from aseptic_cell.report.plots import cycle_plot
from aseptic_cell.supervisor.runner import InProcessRun

HOSTILE = "<script>alert('x')</script> & \"quoted\""


class FakeClock:
    def __init__(self, t: float = 1_780_000_000.0) -> None:
        self.t = t

    def now(self) -> float:
        self.t += 1.0
        return self.t


@pytest.fixture(scope="module")
def demo_record(tmp_path_factory):
    """An in-process batch (refused command, VHP unit lost: held), signed reviewed by QA."""
    path = tmp_path_factory.mktemp("demo") / "demo.db"
    cfg = load_config(default_config_dir())
    sim_time = FakeClock(0.0)
    rec = BatchRecord(path, sim_time)
    run = InProcessRun(cfg, tick_s=5.0, record=rec)
    sim_time.now = run.cell.sim.clock.now  # the record's time is the cell's sim time from here on
    sup = run.sup
    assert sup.run_batch("CART-TRANSDUCTION", "B-DEMO", "op1").accepted
    run.advance(60)
    assert not sup.operate("isolator", "open_alpha", {"rtp": "RTP1"}, "op1")[0].accepted
    run.advance(20)
    run.cell.inject_fault("VHP1", "comm_loss")
    run.advance(30)
    assert sup.sm.state.value == "Held"
    rec.close()
    py_trees.blackboard.Blackboard.clear()
    clock = FakeClock()
    with BatchRecord(path, clock) as rec:
        users = UserDirectory.from_file(default_config_dir() / "users.yaml", clock)
        sign_reviewed(rec, users, "qa1", "qa1-demo-2026", comment="held batch reviewed")
    return path


def _page_text_and_ink(pdf_path):
    pdf = pdfium.PdfDocument(str(pdf_path))
    texts, inks = [], []
    for i in range(len(pdf)):
        page = pdf[i]
        texts.append(page.get_textpage().get_text_range())
        img = page.render(scale=1.0, grayscale=True).to_pil()
        hist = img.histogram()
        dark = sum(hist[:200]) / (img.width * img.height)  # share of pixels with ink
        inks.append(dark)
        if i == 0:
            img.save(pdf_path.with_suffix(".page1.png"))
    pdf.close()
    return texts, inks


def test_pdf_report_of_a_batch_renders_and_shows_its_exceptions_and_signatures(demo_record, tmp_path):
    report = build_report(demo_record)
    out = render_pdf(report, tmp_path / "demo.pdf")
    assert out.read_bytes().startswith(b"%PDF-")
    texts, inks = _page_text_and_ink(out)
    assert (tmp_path / "demo.page1.png").stat().st_size > 10_000  # a real page image
    assert all(0.005 < ink < 0.6 for ink in inks), inks  # every page has text on it, none is black
    text = " ".join(" ".join(texts).split())  # table cells wrap: compare with single spaces
    assert "Exceptions (review by exception)" in text
    assert f"Departures from the recipe: {len(report.review.departures)}" in text
    assert len(report.review.departures) >= 5 and {"refusal", "trip", "hold"} <= set(report.review.counts())
    assert "IL-02" in text and "VHP1.latched" in text  # the refusal and a trip, by name
    assert "Quinn Quality (demo) (qa1, qa)" in text and "REVIEW" in text  # name and meaning (11.50)
    sig = report.signatures[0]
    assert sig["signed_at_iso"].endswith("+00:00") and sig["signed_at_iso"][:19] in text  # time in UTC
    assert "Chain verification: OK" in text
    assert "B-DEMO" in text and "CART-TRANSDUCTION" in text


def test_html_report_escapes_hostile_text_and_is_self_contained(tmp_path):
    clock = FakeClock()
    path = tmp_path / "h.db"
    with BatchRecord(path, clock) as rec:
        rec.append("command", batch_id="B-H", actor="op1", role="operator", action="batch.start",
                   payload={"recipe_id": "R1", "recipe_version": 2, "config_hash": "ab" * 32, "coi": "COI-7"})
        rec.append("config", batch_id="B-H", actor="system", action="config.snapshot",
                   payload={"files_hash": {"cell.yaml": "ef" * 32}})
        rec.append("custody", batch_id="B-H", actor="op1", role="operator", action="custody.receive",
                   reason="bag received",
                   payload={"container_ids": ["BAG-1"], "location_to": "RTP1", "coi_id": "COI-7",
                            "verification_result": {"code": "OK", "action": "PROCEED"}})
        rec.append("refusal", batch_id="B-H", actor="op1", role="operator", action="isolator.open_door",
                   reason=HOSTILE, payload={"code": "INTERLOCK"})
        rec.append("signature", batch_id="B-H", actor="sup1", role="supervisor", action="step.verify",
                   payload={"user_id": "sup1", "full_name": "Samuel <b>Supervisor</b>", "role": "supervisor",
                            "meaning": "verification", "record_hash": "cd" * 32, "signed_at": clock.t,
                            "signed_at_iso": "2026-06-01T10:00:00.000000+00:00", "action": "step.verify"})
    report = build_report(path)
    html = render_html(report)
    assert "<script" not in html.lower() and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "Samuel &lt;b&gt;Supervisor&lt;/b&gt;" in html and "<b>Supervisor</b>" not in html
    assert "2026-06-01T10:00:00.000000+00:00" in html and "VERIFICATION" in html
    assert "COI-7" in html and "ab" * 32 in html and "R1" in html  # identity, configuration hash
    assert report.versions["files_hash.cell.yaml"] == "ef" * 32 and "ef" * 32 in html
    assert [c["action"] for c in report.custody] == ["custody.receive"]
    assert "coi_id=COI-7, container_ids=BAG-1, location_to=RTP1, verification=OK PROCEED" in html  # custody log
    assert "http://" not in html and "https://" not in html and "src='http" not in html  # nothing fetched
    pdf = render_pdf(report, tmp_path / "h.pdf")  # the same hostile text prints as text in the PDF
    text = "\n".join(_page_text_and_ink(pdf)[0])
    assert "<script>alert('x')</script>" in text.replace("\r\n", "").replace("\n", "")


def test_cycle_plots_are_made_from_the_recorded_series():
    t = [float(i * 10) for i in range(200)]
    vhp = {"cycle": "vhp", "run_id": "V1", "series": {"t": t, "h2o2_ppm": [math.sin(x / 300) * 400 for x in t]}}
    ac = {"cycle": "autoclave", "run_id": "A1", "f0_target_min": 12.0,
          "series": {"t": t, "chamber_t_c": [121.0] * 200, "load_t_c": [120.5] * 200, "f0_min": t}}
    for c in (vhp, ac):
        png = cycle_plot(c)
        assert png is not None and png.startswith(b"\x89PNG") and len(png) > 5000
    assert cycle_plot({"cycle": "vhp", "run_id": "V0"}) is None


def test_cellctl_record_report_pdf_html_and_exit_code(demo_record, tmp_path, capsys):
    copy = tmp_path / "c.db"
    shutil.copy(demo_record, copy)
    assert cellctl(["record", "report", str(copy), "--pdf", "-o", str(tmp_path / "o.pdf")]) == 0
    assert (tmp_path / "o.pdf").read_bytes().startswith(b"%PDF-")
    assert cellctl(["record", "report", str(copy), "--html", "-o", str(tmp_path / "o.html")]) == 0
    assert "Exceptions (review by exception)" in (tmp_path / "o.html").read_text(encoding="utf-8")
    assert "chain OK" in capsys.readouterr().out
    assert cellctl(["record", "report", str(tmp_path / "none.db"), "--pdf", "-o", str(tmp_path / "x.pdf")]) == 1
    conn = sqlite3.connect(copy)  # a changed row: the report is still written, says FAILED, exit 1
    conn.execute("DROP TRIGGER entries_no_update")
    conn.execute("UPDATE entries SET reason = 'edited' WHERE seq = 3")
    conn.commit()
    conn.close()
    assert cellctl(["record", "report", str(copy), "--html", "-o", str(tmp_path / "t.html")]) == 1
    tampered = (tmp_path / "t.html").read_text(encoding="utf-8")
    assert "FAILED" in tampered and "hash mismatch at seq 3" in tampered
