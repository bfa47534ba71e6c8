"""The throughput twin (issue 14 item 8, aseptic_cell/twin.py): the real supervisor over a demand
pattern with the process durations scaled down (a 10.5-day process in ~5 h of sim time), the
report's keys and plots, a failed batch, the purge time's effect, and the time-skipping rule
(event stepping against stepping every 5 s; the models' own next events; the rest rule).
Speed is a benchmark (benchmarks/twin.py), not asserted here. Kept cheap: one module-scoped pair
of runs (2 patients, 0.3 day) serves the report, plot and stepping tests."""

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
SHORT: dict[str, Any] = {"patients": 2, "days": 0.3, "time_scale": 0.02, "lc_min": 1, "failure_rate": 0.0}
"""2 patients of the process scaled to ~5 h, over 0.3 day: both complete, the next two are admitted."""


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Twin, dict[str, Any]]]:
    """The short scenario (purge 1 min) stepped by events, with plots; the reference run stepped
    every 5 s while a unit works is added by the stepping test (:func:`_reference`)."""
    d = tmp_path_factory.mktemp("twin-event")
    twin = Twin(default_config_dir(), TwinParams(**SHORT, purge_min=1, out_dir=str(d)))
    return {"event": (twin, twin.run())}


def _reference(pair: dict[str, tuple[Twin, dict[str, Any]]], tmp_path: Path) -> tuple[Twin, dict[str, Any]]:
    if "busy" not in pair:
        twin = Twin(default_config_dir(), TwinParams(**SHORT, purge_min=1, stepping="busy", out_dir=str(tmp_path),
                                                     plots=False))
        pair["busy"] = (twin, twin.run())
    return pair["busy"]


def _png_size(path: str) -> tuple[int, int]:
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    w, h = struct.unpack(">II", data[16:24])
    return w, h


def test_twin_runs_batches_to_completion_and_reports(pair: dict[str, tuple[Twin, dict[str, Any]]]) -> None:
    twin, rep = pair["event"]
    for k in KEYS:
        assert k in rep, k
    assert set(rep["time_to_vein_days"]) >= {"median", "p90", "max"}
    assert set(rep["utilisation"]) >= {"arm", "open_zone", "slots"}
    # demand of 2 kept in the cell: both complete inside 0.3 day, the next two are admitted
    assert rep["batches_completed"] == 2 and rep["batches_failed"] == 0
    assert rep["batches_admitted"] == 4
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
    assert rep["sim_s"] == pytest.approx(0.3 * 86400)
    # the real supervisor ran them: each completed batch has its own record, which verifies, and
    # its phases commanded the process equipment (a unit's result in the record)
    done = [b for b in rep["batches"] if b["state"] == "Complete"]
    assert len(done) == rep["batches_completed"]
    for b in done:
        assert verify_file(b["record"]).ok, b["record"]
        assert b["time_to_vein_days"] is not None and b["due_met"] is True
        units = {e.action for e in twin.sup.patients[b["batch_id"]].record.entries() if e.kind == "material"}
        assert {"welder.result", "centrifuge.result", "counter.result"} <= units, units
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
    assert json.loads((twin.out / "twin.json").read_text())["batches_completed"] == rep["batches_completed"]


def test_twin_cli_prints_one_json_object(tmp_path: Path) -> None:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["twin", "--patients", "1", "--days", "0.02", "--time-scale", "0.02", "--lc-min", "1",
                     "--failure-rate", "0", "--out", str(tmp_path), "--json"])
    lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
    assert code == 0 and len(lines) == 1, lines  # one JSON object
    rep = json.loads(lines[0])
    for k in KEYS:
        assert k in rep, k
    assert rep["batches_admitted"] == 1 and rep["batches"][0]["state"] == "Running"
    assert rep["sim_s"] == pytest.approx(0.02 * 86400)


def test_twin_purge_time_moves_open_zone_and_throughput(pair: dict[str, tuple[Twin, dict[str, Any]]],
                                                       tmp_path: Path) -> None:
    """Spec §6.3: the open-zone changeover (line clearance + purge wait) is what a longer purge loads."""
    _t, fast = pair["event"]
    slow = Twin(default_config_dir(), TwinParams(**SHORT, purge_min=30, out_dir=str(tmp_path), plots=False)).run()
    assert slow["parameters"]["t_purge_min"] == 30 and fast["parameters"]["t_purge_min"] == 1
    assert slow["open_zone_breakdown"]["purge_wait_s"] > fast["open_zone_breakdown"]["purge_wait_s"]
    assert slow["utilisation"]["open_zone"] > fast["utilisation"]["open_zone"]
    assert slow["bottleneck"] == "open_zone"
    assert slow["batches_completed"] < fast["batches_completed"]
    # no batch finished at all with the long purge, or later than any with the short one
    assert (slow["time_to_vein_days"]["max"] or math.inf) > fast["time_to_vein_days"]["max"]


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
    with pytest.raises(ValueError, match="stepping"):
        Twin(default_config_dir(), TwinParams(stepping="fast", out_dir=str(tmp_path)))


def _rest_cell() -> SimCell:
    sim = SimCell(load_config(default_config_dir()))
    sim.run_for(600.0, 1.0)  # the start-up transient (dP settling) decays
    return sim


def _schedule(twin: Twin) -> dict[str, list[tuple[str, str, float | None, float | None]]]:
    """Per batch: its phases' arbiter requests (phase, state, granted, released) in grant order."""
    out: dict[str, list[tuple[str, str, float | None, float | None]]] = {}
    for r in twin.arb.requests.values():
        out.setdefault(r.batch, []).append((r.phase, r.state.value, r.granted_at, r.released_at))
    for v in out.values():
        v.sort(key=lambda x: (math.inf if x[2] is None else x[2], x[0]))
    return out


@pytest.mark.timeout(300)  # ~6 s CPU (2,600 ticks); the suite's 120 s ran out at a load of 13 on 2 cores
def test_event_stepping_gives_the_same_schedule_as_stepping_every_5_s(
        pair: dict[str, tuple[Twin, dict[str, Any]]], tmp_path: Path) -> None:
    """The time-skipping rule is sound: the same scenario (2 patients, the scaled process: welds,
    spins, counts, seals, incubator loads and unloads) ticked from one foreseen event to the next
    and ticked every 5 s while any unit works or the incubator recovers (the reference) runs the
    same phases in the same order to the same outcomes; each grant and release within 30 s of the
    reference's (which sees a unit's end up to 5 s late, a few waits in a row), with far fewer ticks."""
    (ev, rep_ev), (ref, rep_ref) = pair["event"], _reference(pair, tmp_path)
    assert rep_ev["batches_completed"] == rep_ref["batches_completed"] == 2
    assert [(b["batch_id"], b["state"]) for b in rep_ev["batches"]] == [
        (b["batch_id"], b["state"]) for b in rep_ref["batches"]]
    a, b = _schedule(ev), _schedule(ref)
    assert a.keys() == b.keys()
    for bid in a:
        assert [x[:2] for x in a[bid]] == [x[:2] for x in b[bid]], bid
        for x, y in zip(a[bid], b[bid], strict=True):
            for u, v in ((x[2], y[2]), (x[3], y[3])):
                assert (u is None) == (v is None), (bid, x, y)
                if u is not None and v is not None:
                    assert abs(u - v) <= 30.0, (bid, x, y)
    for x, y in zip(rep_ev["batches"], rep_ref["batches"], strict=True):
        if x["ended_s"] is not None:
            assert abs(x["ended_s"] - y["ended_s"]) <= 30.0, (x, y)
    assert rep_ev["engine"]["supervisor_ticks"] * 3 < rep_ref["engine"]["supervisor_ticks"]


def _climate_in_limits(inc: Any) -> bool:
    c = inc.cfg
    return bool(c.temp_alarm_low_c <= inc.temp_c <= c.temp_alarm_high_c and inc.rh_pct >= c.rh_alarm_low_pct
                and c.co2_alarm_low_pct <= inc.co2_pct <= c.co2_alarm_high_pct)


def test_unit_models_foresee_their_next_event_and_one_long_step_reaches_it() -> None:
    """The process models' next_event: a spin's end, the incubator's door closing and its climate
    back in its alarm limits. One step to the event gives what 1 s steps give."""
    fine, coarse = SimCell(load_config(default_config_dir())), SimCell(load_config(default_config_dir()))
    for sim in (fine, coarse):
        cfg = sim.process["centrifuge"]
        prog = cfg.cfg.programs[0].id
        sim.process["centrifuge"].run(prog, "BAG-1", 250.0, 250.0)
        inc = sim.process["incubator"]
        inc.assign_slot(1, "B1", "COI-1")
        inc.load(1, "BAG-2", "COI-1")  # a door access of door_access_s
    cf, inc = coarse.process["centrifuge"], coarse.process["incubator"]
    t0 = coarse.now()
    assert inc.next_event() == pytest.approx(t0 + inc.cfg.door_access_s)
    p = cf._program
    assert cf.next_event() == pytest.approx(t0 + p.accel_s + p.duration_s + p.decel_s)  # the run's end
    # the door closes: one step (substep bound raised), the incubator split at the closing time
    inc.substep_max_s = 1e6
    coarse.step(inc.next_event() - t0)
    fine.run_for(inc.cfg.door_access_s, 1.0)
    fi = fine.process["incubator"]
    assert inc.door_open is False and fi.door_open is False
    assert inc.temp_c == pytest.approx(fi.temp_c, rel=1e-9) and inc.rh_pct == pytest.approx(fi.rh_pct, rel=1e-9)
    assert inc.sensors()["temp_c"] < inc.cfg.temp_alarm_low_c  # the door access put it out of limits
    events: list[float] = []
    while (back := inc.next_event()) < math.inf:  # T, CO2 and RH all back in their alarm limits
        assert back > coarse.now() and len(events) < 2
        coarse.step(back - coarse.now() + 0.01)
        events.append(back)
    assert len(events) == 1 and _climate_in_limits(inc)
    fine.run_for(events[-1] - 1.0 - fine.now(), 1.0)
    assert not _climate_in_limits(fi)  # a second before the last foreseen event: still out
    fine.run_for(1.01, 1.0)
    assert _climate_in_limits(fi) and fi.temp_c == pytest.approx(inc.temp_c, rel=1e-9)
    # the spin: step to its foreseen end; the run ends at the end the fine steps find
    while cf.busy:
        coarse.step(cf.next_event() - coarse.now())
    fine.run_until(lambda: not fine.process["centrifuge"].busy, 3600.0, 1.0)
    assert cf.last_result == fine.process["centrifuge"].last_result == "PASS"
    assert cf.last_report is not None and cf.last_report["end"] == pytest.approx(
        fine.process["centrifuge"].last_report["end"])
    assert cf.next_event() == math.inf
    # a fault: the model cannot foresee (the caller samples finely)
    cf.faults.inject("imbalance")
    cf.run(prog, "BAG-1", 250.0, 250.0)
    assert cf.next_event() == coarse.now()


def test_rest_rule_coarse_steps_match_fine_steps_at_rest() -> None:
    fine, coarse = _rest_cell(), _rest_cell()
    stats = TwinStats()
    fine.run_for(1800.0, 1.0)
    advance_models(coarse, 1800.0, stats)
    assert stats.rest_steps == 1 and stats.fine_steps == 0
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
    sim.inject_fault(sim.isolator.cfg.id, "fan_failure")
    assert not at_rest(sim)
    stats = TwinStats()
    advance_models(sim, 600.0, stats)
    assert stats.fine_steps == 1 and stats.rest_steps == 0
    assert sim.isolator.sensors()["dp_pa"] < 40.0  # the fan stopped: dP decayed, stepped finely


def test_coarse_substeps_sets_the_models_own_parameters_not_module_constants() -> None:
    import aseptic_cell.sim.incubator as inc_mod
    import aseptic_cell.sim.isolator as iso_mod
    import aseptic_cell.sim.isolator_particles as parts_mod

    sim = SimCell(load_config(default_config_dir()))
    other = SimCell(load_config(default_config_dir()))
    inc = sim.process["incubator"]
    modules = (iso_mod.SUBSTEP_S, parts_mod.PARTICLE_REPORT_INTERVAL_S, inc_mod.SUBSTEP_MAX_S)
    before = (sim.isolator.substep_s, sim.isolator.particle_report_interval_s, sim.autoclave.substep_max_s,
              inc.substep_max_s)
    with coarse_substeps(sim, 3600.0):
        assert sim.isolator.substep_s == 3600.0 and sim.autoclave.substep_max_s == 3600.0
        assert inc.substep_max_s == 3600.0
        assert sim.isolator.particle_report_interval_s == sim.isolator._sample_time_s()  # one whole sample
        assert (iso_mod.SUBSTEP_S, parts_mod.PARTICLE_REPORT_INTERVAL_S, inc_mod.SUBSTEP_MAX_S) == modules
        assert other.isolator.substep_s == iso_mod.SUBSTEP_S  # another cell is untouched
    assert (sim.isolator.substep_s, sim.isolator.particle_report_interval_s, sim.autoclave.substep_max_s,
            inc.substep_max_s) == before


def test_incubator_next_event_is_never_past_the_excursion_alarm_delay() -> None:
    """Out of limits longer than the alarm on-delay: the model's next event is 1 s past the delay
    (a supervisor ticking only at next events sees the excursion outlast it, INC-04), and a heater
    fault makes it unforeseeable (the current time)."""
    from aseptic_cell.sim.clock import SimClock
    from aseptic_cell.sim.incubator import IncubatorModel

    from aseptic_cell.devices.incubator.config import IncubatorConfig

    clock = SimClock()
    inc = IncubatorModel(IncubatorConfig(alarm_delay_s=30.0), clock, substep_max_s=1e6)
    inc.assign_slot(1, "B1", "COI-1")
    inc.load(1, "BAG-1", "COI-1")
    clock.advance(inc.next_event())
    inc.step(clock.now())
    assert not inc.door_open and not _climate_in_limits(inc)
    assert inc.next_event() == pytest.approx(clock.now() + 31.0)
    inc.faults.inject("heater_failure")
    assert inc.next_event() == clock.now()
    with pytest.raises(ValueError, match="substep_max_s"):
        IncubatorModel(IncubatorConfig(), clock, substep_max_s=0.0)
