"""The throughput twin (issue 14 item 8, aseptic_cell/twin.py): the real supervisor over a demand
pattern with the process durations scaled down (a 10.5-day process in ~5 h of sim time), the
report's keys and plots, a failed batch, the purge time's effect, and the time-skipping rule.
Speed is a benchmark (benchmarks/twin.py), not asserted here."""

from __future__ import annotations

import contextlib
import io
import json
import math
import struct
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from aseptic_cell.sim.cell import SimCell

from aseptic_cell.cli import main
from aseptic_cell.config import default_config_dir, load_config
from aseptic_cell.records import verify_file
from aseptic_cell.twin import Twin, TwinParams, TwinStats, _readings, advance_models, at_rest, coarse_substeps

KEYS = ("patients", "days", "batches_completed", "batches_failed", "time_to_vein_days", "utilisation",
        "bottleneck", "batches_per_year", "plots", "wall_s", "sim_s")
SCALE = "0.02"  # 10.5 days -> ~5 h


def _cli(out: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["twin", "--patients", "3", "--days", "0.4", "--time-scale", SCALE, "--lc-min", "1",
                     "--failure-rate", "0", "--out", str(out), "--json", *extra])
    lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
    assert len(lines) == 1, lines  # one JSON object
    return code, json.loads(lines[0])


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, Any], Path]:
    """One run with a short purge wait (1 min), shared by the tests below."""
    out = tmp_path_factory.mktemp("twin") / "out"
    code, rep = _cli(out, "--purge-min", "1")
    return code, rep, out


def _png_size(path: str) -> tuple[int, int]:
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    w, h = struct.unpack(">II", data[16:24])
    return w, h


def test_twin_cli_runs_batches_to_completion_and_reports(fast: tuple[int, dict[str, Any], Path]) -> None:
    code, rep, out = fast
    assert code == 0, rep
    for k in KEYS:
        assert k in rep, k
    assert set(rep["time_to_vein_days"]) >= {"median", "p90", "max"}
    assert set(rep["utilisation"]) >= {"arm", "open_zone", "slots"}
    # demand of 3 kept in the cell: the first three complete inside 0.4 day, the next are admitted
    assert rep["batches_completed"] >= 3 and rep["batches_failed"] == 0
    assert rep["batches_admitted"] > rep["batches_completed"]
    assert rep["segregation_violations"] == []
    ttv = rep["time_to_vein_days"]
    assert 7.0 < ttv["median"] <= ttv["p90"] <= ttv["max"] < 8.0  # ~5 h of process + 7 days release lead
    for k in ("arm", "open_zone", "slots"):
        assert 0.0 < rep["utilisation"][k] <= 1.0
    # open zone = its product time + line clearance + purge wait, each counted once
    oz = rep["open_zone_breakdown"]
    assert rep["utilisation"]["open_zone"] == pytest.approx(
        (oz["open_zone_product_s"] + oz["line_clearance_s"] + oz["purge_wait_s"]) / rep["sim_s"], abs=1e-3)
    assert oz["line_clearance_s"] > 0 and oz["purge_wait_s"] > 0
    assert rep["bottleneck"] in {"arm", "open_zone", "slots", *rep["utilisation_by_resource"]}
    assert rep["sim_s"] == pytest.approx(0.4 * 86400)
    # the real supervisor ran them: each completed batch has its own record, which verifies
    done = [b for b in rep["batches"] if b["state"] == "Complete"]
    assert len(done) == rep["batches_completed"]
    for b in done:
        assert verify_file(b["record"]).ok, b["record"]
        assert b["time_to_vein_days"] is not None and b["due_met"] is True
    # plots: PNG and SVG of utilisation and schedule, each parses
    plots = rep["plots"]
    assert {Path(p).name for p in plots} == {"twin_utilisation.png", "twin_utilisation.svg",
                                             "twin_schedule.png", "twin_schedule.svg"}
    for p in plots:
        if p.endswith(".png"):
            w, h = _png_size(p)
            assert w > 200 and h > 100
        else:
            root = ET.parse(p).getroot()
            assert root.tag.endswith("svg")
    assert json.loads((out / "twin.json").read_text())["batches_completed"] == rep["batches_completed"]


def test_twin_purge_time_moves_open_zone_and_throughput(fast: tuple[int, dict[str, Any], Path],
                                                       tmp_path: Path) -> None:
    """Spec §6.3: the open-zone changeover (line clearance + purge wait) is what a longer purge loads."""
    _c, fast_, _o = fast
    _c, slow = _cli(tmp_path / "b", "--purge-min", "30")
    assert slow["parameters"]["t_purge_min"] == 30 and fast_["parameters"]["t_purge_min"] == 1
    assert slow["open_zone_breakdown"]["purge_wait_s"] > fast_["open_zone_breakdown"]["purge_wait_s"]
    assert slow["utilisation"]["open_zone"] > fast_["utilisation"]["open_zone"]
    assert slow["bottleneck"] == "open_zone"
    assert slow["batches_completed"] < fast_["batches_completed"]
    # no batch finished at all with the long purge, or later than any with the short one
    assert (slow["time_to_vein_days"]["max"] or math.inf) > fast_["time_to_vein_days"]["max"]


def test_twin_failed_batch_is_held_by_the_supervisor_then_stopped(tmp_path: Path) -> None:
    """A failure is a product label that cannot be read: the real supervisor holds the batch (never
    resumes it); the operator stops it after the response time; it frees its slot and counts as failed."""
    twin = Twin(default_config_dir(), TwinParams(patients=1, days=0.35, time_scale=0.02, lc_min=1, purge_min=1,
                                                 failure_rate=1.0, operator_response_h=0.1, out_dir=str(tmp_path),
                                                 plots=False))
    rep = twin.run()
    assert rep["batches_failed"] >= 1 and rep["batches_completed"] == 0
    first = rep["batches"][0]
    assert first["state"] == "Stopped"
    assert "read" in first["held_reason"].lower() or "coi" in first["held_reason"].lower(), first["held_reason"]
    entries = twin.sup.patients[first["batch_id"]].record.entries()
    stops = [e for e in entries if e.kind == "command" and e.action == "batch.stop"]
    assert len(stops) == 1 and stops[0].actor == "sup1"
    assert not [e for e in entries if e.action in ("batch.restart", "batch.resume")]  # never resumed
    assert verify_file(first["record"]).ok
    assert rep["batches_admitted"] >= 2  # the next patient took the slot


def test_twin_refuses_bad_arguments(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for bad in (["--patients", "0"], ["--days", "0"], ["--time-scale", "2"], ["--process", "nope"]):
        code = main(["twin", *bad, "--out", str(tmp_path), "--json"])
        out = json.loads(capsys.readouterr().out)
        assert code == 2 and out["result"] == "INVALID", (bad, out)


def _rest_cell() -> SimCell:
    sim = SimCell(load_config(default_config_dir()))
    sim.run_for(600.0, 1.0)  # the start-up transient (dP settling) decays
    return sim


def test_rest_rule_coarse_steps_match_fine_steps_at_rest() -> None:
    fine, coarse = _rest_cell(), _rest_cell()
    stats = TwinStats()
    fine.run_for(3600.0, 1.0)
    for _ in range(2):
        advance_models(coarse, 1800.0, stats)
    assert stats.rest_steps == 2 and stats.fine_steps == 0
    assert fine.now() == coarse.now()
    a, b = _readings(fine), _readings(coarse)
    assert a.keys() == b.keys()
    for k, va in a.items():
        vb = b[k]
        if "particles" in k:  # the counter's Poisson draws differ; both read grade A at rest
            continue
        if isinstance(va, float) and not math.isnan(va):
            assert vb == pytest.approx(va, rel=1e-6, abs=1e-9), k
        elif not isinstance(va, float):
            assert str(va) == str(vb), k
    for cell in (fine, coarse):
        s = cell.isolator.sensors()
        assert s["particles.0_5_per_m3"] <= 3520 and s["particles.5_0_per_m3"] <= 20


def test_rest_rule_steps_finely_when_not_at_rest() -> None:
    # a transient still decaying: the 1 s probe sees the readings move
    sim = SimCell(load_config(default_config_dir()))
    stats = TwinStats()
    advance_models(sim, 600.0, stats)
    assert stats.fine_steps == 1 and stats.rest_steps == 0
    # a fault injected: never at rest
    sim = _rest_cell()
    sim.inject_fault(sim.isolator.cfg.id, "fan_failure")
    assert not at_rest(sim)
    stats = TwinStats()
    advance_models(sim, 600.0, stats)
    assert stats.fine_steps == 1 and stats.rest_steps == 0
    assert sim.isolator.sensors()["dp_pa"] < 40.0  # the fan stopped: dP decayed, stepped finely


def test_coarse_substeps_restores_the_models_constants() -> None:
    import aseptic_cell.sim.isolator as iso
    import aseptic_cell.sim.isolator_particles as parts

    sim = _rest_cell()
    before = (iso.SUBSTEP_S, iso.PARTICLE_REPORT_INTERVAL_S, parts.PARTICLE_REPORT_INTERVAL_S,
              sim.autoclave.substep_max_s)
    with coarse_substeps(sim, 3600.0):
        assert iso.SUBSTEP_S == 3600.0 and sim.autoclave.substep_max_s == 3600.0
        assert parts.PARTICLE_REPORT_INTERVAL_S == sim.isolator._sample_time_s()  # one whole sample
    assert (iso.SUBSTEP_S, iso.PARTICLE_REPORT_INTERVAL_S, parts.PARTICLE_REPORT_INTERVAL_S,
            sim.autoclave.substep_max_s) == before
