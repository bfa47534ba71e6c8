"""Environmental monitoring that acts (issue 13 item 10; Annex 1 §9 [ANNEX1-2022] [M]).

* the particle counter integrates counts over its sample volume (flow x sample time, 28.3 L at
  28.3 L/min for 1 min [TSI]; an ISO 21501-4 counter [ISO21501-4]); a single >= 5 um count in a
  sample is an alert, not an action excursion by itself (Annex 1's guidance on single 5 um
  counts), two in one sample or repeated counts are;
* during an open-product phase an action excursion raises its alarm and holds the batch within
  the monitoring interval (one sample); an alert excursion raises the alert alarm only;
* each open-product phase's record carries an EM summary (maximum counts, excursions).
"""

from __future__ import annotations

from pathlib import Path

import py_trees
import pytest
from aseptic_cell.sim.clock import SimClock
from aseptic_cell.sim.isolator import IsolatorModel

from aseptic_cell.config import default_config_dir, load_config
from aseptic_cell.records import BatchRecord
from aseptic_cell.supervisor.runner import InProcessRun
from aseptic_cell.supervisor.trips import SAFE_ORDER

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "tests" / "assets" / "em-short-recipe.yaml"
OPEN_PHASE = "PH-BAG-TO-INCUBATOR"  # robot_task: an open-product phase (alarms.yaml open_product_phase_types)


@pytest.fixture(autouse=True)
def _clean_blackboard():
    yield
    py_trees.blackboard.Blackboard.clear()


@pytest.fixture(scope="module")
def cfg():
    return load_config(default_config_dir())


# --------------------------------------------------------------------------- the counter
class _Counts:
    """Counts the counter's Poisson draws return, second by second: a scripted sample."""

    def __init__(self, five_um_at: set[int]) -> None:
        self.five_um_at = five_um_at
        self.calls = 0

    def __call__(self, mean: float) -> int:
        second, channel = divmod(self.calls, 2)  # per second: the >=5 um draw, then the 0.5-5 um draw
        self.calls += 1
        return 1 if channel == 0 and second in self.five_um_at else 0


def _counter(cfg, five_um_at: set[int]) -> IsolatorModel:
    iso = IsolatorModel(cfg.layout.isolator, SimClock(0.0), seed=1)
    iso._poisson = _Counts(five_um_at)  # type: ignore[method-assign]
    return iso


def test_a_single_5um_count_in_a_28_3_l_sample_is_an_alert_not_an_action(cfg):
    pc = cfg.layout.isolator.particles
    assert pc.sample_flow_l_min * pc.sample_time_s / 60.0 == pytest.approx(28.3)
    iso = _counter(cfg, five_um_at={10})  # one particle 10 s into the first sample
    iso.step(60.0)
    s = iso.sensors()
    assert s["particles.5_0_count"] == 1
    assert s["particles.5_0_per_m3"] == pytest.approx(1 / 0.0283, rel=1e-3)  # 35.3 /m3 > 29 /m3
    assert s["particles.5_0_per_m3"] > pc.action_5_0_per_m3
    assert s["particles.5_0_alert"] and not s["particles.5_0_action"] and not s["particles.action_excursion"]


def test_two_5um_counts_in_one_sample_or_repeated_counts_are_an_action(cfg):
    iso = _counter(cfg, five_um_at={10, 20})  # two particles in the first sample
    iso.step(30.0)  # reported before the sample ends: the running count already exceeds the limit
    s = iso.sensors()
    assert s["particles.5_0_count"] == 2 and s["particles.5_0_action"] and s["particles.action_excursion"]
    # one count in each of two of the last three samples: the repeated-count trend [HOSPINT]
    iso = _counter(cfg, five_um_at={10, 130})
    iso.step(125.0)
    assert not iso.sensors()["particles.5_0_action"]
    iso.step(10.0)
    assert iso.sensors()["particles.5_0_action"]


def test_particle_source_fault_is_checked_when_injected(cfg):
    iso = IsolatorModel(cfg.layout.isolator, SimClock(0.0), seed=1)
    from aseptic_cell.sim.common import InvalidCommand

    with pytest.raises(InvalidCommand, match="0_5_per_m3"):
        iso.faults.inject("particle_source", **{"0_5_per_m3": -5.0})
    with pytest.raises(InvalidCommand, match="unknown parameter"):
        iso.faults.inject("particle_source", ppm=3.0)


# --------------------------------------------------------------------------- the supervisor acts
def _to_open_phase(cfg, tmp_path, tick_s: float = 1.0):
    rec = BatchRecord(tmp_path / "b.db", SimClock(0.0))
    run = InProcessRun(cfg, tick_s=tick_s, record=rec)
    rec._clock = run.cell.sim.clock
    run.cell.sim.isolator.set_decon_status("DECONTAMINATED_RELEASED", "RUN-EM-TEST")
    assert run.sup.run_batch(str(RECIPE), "B-EM", "op1").accepted
    assert run.run_until(lambda: (run.sup.active_phase or "").endswith(OPEN_PHASE), 3000)
    return run, rec


def test_action_excursion_in_an_open_phase_holds_the_batch_within_one_sample(cfg, tmp_path):
    run, rec = _to_open_phase(cfg, tmp_path)
    sup = run.sup
    pc = cfg.layout.isolator.particles
    assert sup.sm.state.value == "Running"
    t0 = run.now()
    run.cell.inject_fault("ISO1", "particle_source", **{"0_5_per_m3": 20_000.0})
    assert run.run_until(lambda: sup.sm.state.value == "Held", 2 * pc.sample_time_s)
    latency = run.now() - t0
    assert latency <= pc.sample_time_s  # within the monitoring interval (one sample)
    assert sup.alarms.state("ISO1_PART_05_ACTION").value in ("UNACK", "ACKED")
    assert "ISO1_PART_05_ACTION" in sup.held_reason and OPEN_PHASE in sup.held_reason
    assert sup.trips[-1]["rule"] == "ISO1_PART_05_ACTION"  # held like a phase failure: every device safe
    # every device a trip makes safe (the process equipment runs on through it: INT-01)
    assert all(run.cell.latched(n) for n in SAFE_ORDER)
    # no resume while the excursion stands: a signed restart is held again at once
    out = sup.batch_command("restart", "sup1", "sup1-demo-2026", "responsibility", "excursion assessed")
    assert out.accepted, out.reason
    run.advance(3.0)
    assert sup.sm.state.value == "Held" and "ISO1_PART_05_ACTION" in sup.held_reason
    run.cell.clear_fault("ISO1", "particle_source")
    # the EM summary of the open phase is in the record
    env = [e.payload for e in rec.entries("B-EM", kinds=["environment"]) if e.action.endswith(".em_summary")]
    assert [s["phase_type"] for s in env][:2] == ["rtp_transfer_in", "robot_task"]  # every open phase has one
    assert env[0]["action_excursions"] == 0 and env[0]["max_0_5_per_m3"] < pc.alert_0_5_per_m3
    summary = env[1]
    assert summary["phase"].endswith(OPEN_PHASE)
    assert summary["max_0_5_per_m3"] > pc.action_0_5_per_m3
    assert summary["action_excursions"] >= 1 and summary["monitoring_valid"] is True
    assert any(e["alarm_id"] == "ISO1_PART_05_ACTION" for e in summary["excursions"])
    assert rec.verify().ok
    print(f"EM excursion-to-hold latency: {latency:.1f} s (source 20 000 /m3 at >= 0.5 um, tick 1 s)")


def test_alert_excursion_raises_the_alert_and_does_not_hold(cfg, tmp_path):
    """An alert-level source (2 300 /m3: above the 2 000 alert, below the 3 520 action limit)
    standing from before the open phases: the alert is raised, nothing holds, and each open
    phase's EM summary carries the standing alert."""
    rec = BatchRecord(tmp_path / "b.db", SimClock(0.0))
    run = InProcessRun(cfg, tick_s=2.0, record=rec)
    rec._clock = run.cell.sim.clock
    sup = run.sup
    run.cell.sim.isolator.set_decon_status("DECONTAMINATED_RELEASED", "RUN-EM-TEST")
    assert sup.run_batch(str(RECIPE), "B-EM", "op1").accepted
    run.cell.inject_fault("ISO1", "particle_source", **{"0_5_per_m3": 2_300.0, "5_0_per_m3": 0.0})
    assert run.run_until(lambda: sup.sm.state.final or sup.sm.state.value == "Held", 3000)
    assert sup.sm.state.value == "Complete", sup.held_reason
    assert sup.alarms.state("ISO1_PART_05_ALERT").value == "UNACK"
    assert sup.alarms.state("ISO1_PART_05_ACTION").value == "NORMAL"
    env = [e.payload for e in rec.entries("B-EM", kinds=["environment"]) if e.action.endswith(".em_summary")]
    assert [s["phase_type"] for s in env] == ["rtp_transfer_in", "robot_task"]
    for s in env:
        assert s["alert_excursions"] >= 1 and s["action_excursions"] == 0
        assert cfg.layout.isolator.particles.alert_0_5_per_m3 < s["max_0_5_per_m3"]
