"""The discrete-event model of the cell (aseptic_cell/scheduling/simulate.py) on the shortened process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aseptic_cell.scheduling.simulate import CellSimulation, build, main

CONFIG = Path(__file__).resolve().parents[2] / "config"
SHORT = "cart-autologous-short.yaml"


def short_cell(purge_min: float = 2.0, slots: int = 8):  # type: ignore[no-untyped-def]
    """The short process with the changeover and slot turnaround scaled down like its phases."""
    cfg, proc = build(CONFIG, SHORT, purge_min=purge_min, lc_min=1.0, slots=slots)
    cfg.changeover.t_stable_min = 0.1
    cfg.resources.incubator.slot_turnaround_h = 0.1
    cfg.admission.bucket_h = 0.25
    return cfg, proc


def test_random_arrivals_with_faults_complete_without_violations() -> None:
    cfg, proc = short_cell()
    cfg.simulation.resource_mtbf_h = 2.0
    cfg.simulation.resource_mttr_h = 0.2
    cfg.simulation.failure_rate = 0.3
    cfg.simulation.campaign_max_days = 0.25
    cfg.simulation.vhp_duration_h = 0.2
    sim = CellSimulation(cfg, proc, days=0.5, patients=30, seed=3, check=True)
    res = sim.run()
    assert sim.violations == []
    assert res.admitted + res.waiting_admission == 30 and res.completed >= 5 and res.failed >= 1
    assert res.max_concurrent_batches <= 8 and sum(res.refusals.values()) > 0
    assert res.line_clearances > 0 and res.phases_granted > res.completed * 20
    assert 0 < res.utilisation["INCUBATOR_slots"] <= 1
    assert res.bottleneck in res.utilisation
    assert res.time_to_vein_days["n"] == res.completed
    assert res.time_to_vein_days["min"] >= cfg.admission.release_lead_days


def test_purge_time_changes_throughput_when_the_open_zone_binds() -> None:
    out = {}
    for purge in (2.0, 0.3):
        cfg, proc = short_cell(purge, slots=16)
        out[purge] = CellSimulation(cfg, proc, days=0.5, saturate=True, seed=1, faults=False, vhp=False).run()
    slow, fast = out[2.0], out[0.3]
    assert slow.admission_limited_by == "projected GRADE_A_OPEN_ZONE"
    assert fast.completed > 1.5 * slow.completed, (fast.completed, slow.completed)


def test_deterministic_for_a_seed() -> None:
    cfg, proc = build(CONFIG, SHORT)
    a = CellSimulation(cfg, proc, days=0.2, patients=10, seed=7).run().as_dict()
    b = CellSimulation(cfg, proc, days=0.2, patients=10, seed=7).run().as_dict()
    a["parameters"].pop("wall_s")
    b["parameters"].pop("wall_s")
    assert a == b


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--patients", "5", "--days", "0.2", "--process", SHORT, "--config", str(CONFIG), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["patients"] == 5 and "bottleneck" in data and "batches_per_year" in data
