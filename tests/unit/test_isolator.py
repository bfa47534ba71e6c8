"""Behaviour of the simulated isolator (sim/isolator.py).

Expected figures are hand calculations from the configuration, not calls into the model.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import yaml
from aseptic_cell.sim.clock import SimClock
from aseptic_cell.sim.common import CommandRefused, DeconStatus, InvalidCommand
from aseptic_cell.sim.isolator import IsolatorModel

from aseptic_cell.config.devices import CellLayout

CONFIG = Path(__file__).resolve().parents[2] / "config"
P_ATM = 101_325.0  # Pa, ISO 2533 standard atmosphere (hand calculations below)


@pytest.fixture(scope="module")
def layout() -> CellLayout:
    return CellLayout.model_validate(yaml.safe_load((CONFIG / "cell.yaml").read_text()))


@pytest.fixture
def cfg(layout):
    return layout.isolator


class Rig:
    """An isolator on a sim clock, stepped like the sim runner does."""

    def __init__(self, cfg, seed: int = 1, dt: float = 0.5) -> None:
        self.clock = SimClock()
        self.iso = IsolatorModel(cfg, self.clock, seed=seed)
        self.dt = dt

    def run(self, seconds: float, dt: float | None = None) -> None:
        dt = dt or self.dt
        for _ in range(round(seconds / dt)):
            self.clock.advance(dt)
            self.iso.step(dt)

    def run_until(self, pred, limit_s: float, dt: float | None = None) -> float:
        dt = dt or self.dt
        t0 = self.clock.now()
        while not pred():
            assert self.clock.now() - t0 < limit_s, "condition not reached in time"
            self.run(dt, dt)
        return self.clock.now() - t0


def lam_enclosure(cfg, factor: float = 1.0) -> float:
    """Hand calc: laminar leak decay constant (1/s) from the ISO 10648-2 hourly leak rate."""
    return cfg.pressure.leak_rate_per_h * factor * P_ATM / (3600.0 * cfg.leak_test.test_pressure_pa)


def dp_steady(cfg) -> float:
    tau = cfg.pressure.fan_time_constant_s
    return cfg.pressure.setpoint_pa / (1.0 + lam_enclosure(cfg) * tau)


def hatch_state(iso):
    s = iso.sensors()
    return {k: v for k, v in s.items() if k.startswith("hatch.")}, iso.status()["hatch_decontaminated"]


def refused(code, fn, *args, **kw):
    with pytest.raises(CommandRefused) as ei:
        fn(*args, **kw)
    assert ei.value.code == code, ei.value
    return ei.value


# --------------------------------------------------------------------------- ΔP
def test_dp_settles_at_setpoint_less_leak_offset(cfg):
    r = Rig(cfg)
    r.run(60)
    expected = dp_steady(cfg)  # 50 / (1 + lambda * 4 s); 49.98 Pa for 1e-3 /h
    assert r.iso.sensors()["dp_pa"] == pytest.approx(expected, abs=1e-6)
    assert r.iso.sensors()["dp_in_band"] and not r.iso.sensors()["dp_alarm"]


def test_door_dip_recovers_within_the_hatch_dwell(cfg):
    p, h = cfg.pressure, cfg.hatch
    r = Rig(cfg, dt=0.1)
    r.run(30)
    iso = r.iso
    iso.open_door("A")
    r.run_until(lambda: iso.sensors()["hatch.door_A"] == "open", 10)
    r.run(30)  # loading through door A
    iso.close_door("A")
    r.run_until(lambda: iso.sensors()["hatch.door_A.closed"], 10)
    # the dip: full door_event_drop right at closing (out of band, ridden through by the alarm delay)
    assert dp_steady(cfg) - iso.dp_pa() == pytest.approx(p.door_event_drop_pa, abs=2.0)
    t_wait = r.run_until(lambda: iso.sensors()["hatch.seal_A.inflated"], 10)
    iso.mark_hatch_decontaminated()
    # door B is refused until the dwell has run ...
    refused("HATCH_DWELL", iso.open_door, "B")
    r.run_until(lambda: iso.sensors()["hatch.dwell_remaining_s"] <= 0.0, h.dwell_s)
    # ... and by then the dip has recovered: 25 Pa * exp(-10 s / 3 s) = 0.89 Pa left
    residual = p.door_event_drop_pa * math.exp(-h.dwell_s / p.recovery_time_constant_s)
    assert residual == pytest.approx(0.89, abs=0.01)
    # time to recover to within 1 Pa: 3 s * ln(25) = 9.66 s <= 10 s dwell
    assert p.recovery_time_constant_s * math.log(p.door_event_drop_pa / 1.0) <= h.dwell_s
    assert dp_steady(cfg) - iso.dp_pa() == pytest.approx(residual, abs=0.15)
    assert dp_steady(cfg) - iso.dp_pa() < 1.0
    assert not iso.sensors()["dp_alarm"]
    iso.open_door("B")  # now allowed
    assert t_wait <= h.seal_inflate_s + 0.2


def test_hatch_interlock_refusals_change_nothing(cfg):
    r = Rig(cfg)
    iso = r.iso
    r.run(20)
    iso.open_door("A")
    r.run(5)
    before = hatch_state(iso)
    e = refused("HATCH_OTHER_DOOR_OPEN", iso.open_door, "B")
    assert "door A" in e.reason
    assert hatch_state(iso) == before
    iso.close_door("A")
    r.run_until(lambda: iso.sensors()["hatch.door_A.closed"], 10)
    # seal still inflating
    before = hatch_state(iso)
    e = refused("HATCH_SEAL_DEFLATED", iso.open_door, "B")
    assert "seal of door A" in e.reason
    assert hatch_state(iso) == before
    r.run_until(lambda: iso.sensors()["hatch.seal_A.inflated"], 10)
    iso.mark_hatch_decontaminated()
    before = hatch_state(iso)
    e = refused("HATCH_DWELL", iso.open_door, "B")
    assert "dwell" in e.reason
    assert hatch_state(iso) == before
    r.run(cfg.hatch.dwell_s)
    # seal of A deflates (fault): B refused although the dwell has run
    iso.faults.inject("seal_loss", door="A")
    r.run(cfg.hatch.seal_deflate_s + 0.5)
    before = hatch_state(iso)
    refused("HATCH_SEAL_DEFLATED", iso.open_door, "B")
    assert hatch_state(iso) == before
    iso.faults.clear("seal_loss")
    r.run(cfg.hatch.seal_inflate_s + 0.5)
    iso.open_door("B")  # seal back, dwell long past, chamber decontaminated
    r.run(5)
    assert iso.sensors()["hatch.door_B"] == "open"
    assert iso.sensors()["hatch.door_A.closed"]


def test_door_b_needs_decontaminated_chamber_and_dp_in_band(cfg):
    r = Rig(cfg)
    iso = r.iso
    r.run(20)
    refused("HATCH_NOT_DECONTAMINATED", iso.open_door, "B")
    iso.mark_hatch_decontaminated()
    iso.faults.inject("fan_failure")
    r.run(10)
    e = refused("DP_OUT_OF_BAND", iso.open_door, "B")
    assert "ΔP" in e.reason
    # opening A clears the chamber's decontaminated flag
    iso.faults.clear("fan_failure")
    r.run(20)
    iso.open_door("A")
    assert not iso.sensors()["hatch.decontaminated"]
    with pytest.raises(InvalidCommand):
        iso.open_door("C")


def test_hatch_doors_never_open_together_under_random_commands(cfg):
    rng = random.Random(7)
    r = Rig(cfg)
    iso = r.iso
    for _ in range(400):
        cmd = rng.choice(["open", "close", "decon", "wait"])
        door = rng.choice("AB")
        try:
            if cmd == "open":
                iso.open_door(door)
            elif cmd == "close":
                iso.close_door(door)
            elif cmd == "decon":
                iso.mark_hatch_decontaminated()
        except CommandRefused:
            pass
        r.run(rng.choice([0.5, 1.0, 3.0]))
        s = iso.sensors()
        assert s["hatch.door_A.closed"] or s["hatch.door_B.closed"]


# --------------------------------------------------------------------------- RTP
def test_rtp_interlocks(cfg):
    r = Rig(cfg)
    iso = r.iso
    rtp = cfg.rtps[0]
    r.run(10)
    refused("RTP_NO_BETA", iso.open_alpha, rtp.id)
    e = refused("BETA_NOT_STERILE", iso.dock_beta, rtp.id, "BETA-7", "quarantine")
    assert "quarantine" in e.reason
    assert not iso.sensors()[f"rtp.{rtp.id}.beta_docked"]
    iso.dock_beta(rtp.id, "BETA-7", "sterile")
    refused("RTP_BETA_NOT_LOCKED", iso.open_alpha, rtp.id)
    iso.lock_beta(rtp.id)
    r.run(rtp.lock_time_s + 0.5)
    assert iso.sensors()[f"rtp.{rtp.id}.beta_locked"]
    iso.open_alpha(rtp.id)
    r.run(rtp.door_travel_s + 0.5)
    s = iso.sensors()
    assert s[f"rtp.{rtp.id}.alpha_door"] == "open"
    refused("RTP_ALPHA_OPEN", iso.unlock_beta, rtp.id)
    refused("RTP_ALPHA_OPEN", iso.undock_beta, rtp.id)
    assert iso.sensors()[f"rtp.{rtp.id}.beta_locked"]
    assert f"RTP {rtp.id} alpha door not closed (open)" in iso.breaches()
    iso.close_alpha(rtp.id)
    r.run(rtp.door_travel_s + 0.5)
    refused("BETA_LOCKED", iso.undock_beta, rtp.id)
    iso.unlock_beta(rtp.id)
    r.run(rtp.lock_time_s + 0.5)
    iso.undock_beta(rtp.id)
    assert not iso.sensors()[f"rtp.{rtp.id}.beta_docked"]
    with pytest.raises(InvalidCommand):
        iso.open_alpha("RTP9")


# --------------------------------------------------------------------------- gloves
def _glove_drops_by_hand(cfg, hole_um: float | None):
    gt = cfg.glove_test
    # the glove is a flexible volume: capacitance C = V / p_atm + compliance (m3/Pa)
    cap = gt.glove_volume_l * 1e-3 / P_ATM + gt.glove_compliance_l_per_kpa * 1e-6
    lam_rigid = cfg.pressure.leak_rate_per_h * P_ATM / (3600.0 * gt.test_pressure_pa)
    lam_g = lam_rigid * (gt.glove_volume_l * 1e-3 / P_ATM) / cap
    intact_start = gt.test_pressure_pa * math.exp(-lam_g * gt.stabilisation_s)
    intact = intact_start * (1.0 - math.exp(-lam_g * gt.test_s))
    if hole_um is None:
        return intact, None
    # orifice: dp/dt = -k sqrt(p), k = Cd A sqrt(2 / rho) / C  ->  sqrt(p) falls linearly
    area = math.pi * (hole_um * 1e-6) ** 2 / 4.0
    k = 0.61 * area * math.sqrt(2.0 / 1.204) / cap
    s0 = math.sqrt(gt.test_pressure_pa)
    s1 = max(0.0, s0 - 0.5 * k * gt.stabilisation_s)
    s2 = max(0.0, s1 - 0.5 * k * gt.test_s)
    return intact, s1**2 - s2**2


def test_glove_test_pass_when_intact_and_record_content(cfg):
    gt = cfg.glove_test
    r = Rig(cfg)
    iso = r.iso
    iso.start_glove_test("GP1", user="qa.tester", batch_id="B-001")
    assert iso.sensors()["glove.GP1.test_running"]
    r.run(gt.stabilisation_s + gt.test_s + 1)
    rec = iso.glove_test_record("GP1")
    intact, _ = _glove_drops_by_hand(cfg, None)  # 0.22 Pa for 1e-3 /h at 1000 Pa (flexible glove, 1.5 L/kPa)
    assert rec["drop_pa"] == pytest.approx(intact, rel=1e-3)
    assert rec["result"] == "PASS" and rec["drop_pa"] < gt.max_drop_pa
    for key in ("port_id", "glove_lot", "fitted", "method", "test_pressure_pa", "stabilisation_s", "test_s",
                "drop_pa", "limit_pa", "result", "user", "timestamp", "instrument_id", "batch_id"):
        assert key in rec
    assert rec["glove_lot"] == cfg.glove_ports[0].glove_lot and rec["instrument_id"] == gt.instrument_id
    assert rec["user"] == "qa.tester" and rec["timestamp"] == pytest.approx(r.clock.now(), abs=1.0)
    s = iso.sensors()
    assert s["glove.GP1.last_test"] == "PASS" and not s["glove.GP1.test_running"]
    iso.use_glove("GP1")  # PASS: usable


def test_glove_test_fails_with_breach_and_blocks_port(cfg):
    gt = cfg.glove_test
    r = Rig(cfg)
    iso = r.iso
    iso.faults.inject("glove_breach:GP2", hole_um=100.0)
    iso.start_glove_test("GP2", user="qa.tester")
    r.run(gt.stabilisation_s + gt.test_s + 1)
    rec = iso.glove_test_record("GP2")
    intact, hole = _glove_drops_by_hand(cfg, 100.0)
    assert hole == pytest.approx(37.5, abs=1.0)
    assert rec["drop_pa"] == pytest.approx(hole, rel=0.01)  # permeation is minor next to the hole
    assert rec["result"] == "FAIL"
    e = refused("GLOVE_FAILED", iso.use_glove, "GP2")
    assert "GP2" in e.reason
    assert not iso.sensors()["glove.GP2.in_use"]
    # a small hole (20 um) passes: below the test's detection limit (~90 um, test_glove_leak.py)
    iso.faults.inject("glove_breach:GP3", hole_um=20.0)
    iso.start_glove_test("GP3", user="qa.tester")
    r.run(gt.stabilisation_s + gt.test_s + 1)
    _, small = _glove_drops_by_hand(cfg, 20.0)
    assert small < gt.max_drop_pa
    assert iso.glove_test_record("GP3")["result"] == "PASS"
    # replacing the glove lifts the block
    iso.replace_glove("GP2", "GL-2026-0999", "2026-11-20")
    iso.use_glove("GP2")


def test_glove_test_refused_while_in_use_and_use_refused_while_testing(cfg):
    r = Rig(cfg)
    iso = r.iso
    iso.use_glove("GP4")
    refused("GLOVE_IN_USE", iso.start_glove_test, "GP4", "qa.tester")
    assert not iso.sensors()["glove.GP4.test_running"]
    iso.release_glove("GP4")
    iso.start_glove_test("GP4", "qa.tester")
    refused("GLOVE_TEST_RUNNING", iso.use_glove, "GP4")
    with pytest.raises(InvalidCommand):
        iso.start_glove_test("GP9", "qa.tester")
    with pytest.raises(InvalidCommand):
        iso.start_glove_test("GP1", "")


# --------------------------------------------------------------------------- enclosure leak test
def _leak_decay_by_hand(cfg, factor: float = 1.0) -> float:
    lt = cfg.leak_test
    return lt.test_pressure_pa * (1.0 - math.exp(-lam_enclosure(cfg, factor) * lt.test_s))


def test_leak_test_decay_matches_hand_calculation_for_shipped_config(cfg):
    lt = cfg.leak_test
    r = Rig(cfg)
    r.run(10)
    r.iso.start_leak_test()
    r.run(lt.test_s + 1)
    rec = r.iso.leak_test_record()
    expected = _leak_decay_by_hand(cfg)  # 16.3 Pa for 1e-3 /h over 600 s at 250 Pa
    assert rec["decay_pa"] == pytest.approx(expected, rel=1e-3)
    assert rec["result"] == ("PASS" if expected <= lt.max_decay_pa else "FAIL")


def test_leak_test_passes_tight_enclosure_and_fails_with_leak(cfg):
    tight = cfg.model_copy(update={"pressure": cfg.pressure.model_copy(update={"leak_rate_per_h": 5e-4})})
    lt = cfg.leak_test
    r = Rig(tight)
    r.run(10)
    r.iso.start_leak_test()
    assert not r.iso.leak_test_passed()
    r.run(lt.test_s + 1)
    rec = r.iso.leak_test_record()
    assert rec["decay_pa"] == pytest.approx(_leak_decay_by_hand(tight), rel=1e-3)  # 8.3 Pa
    assert rec["result"] == "PASS" and r.iso.leak_test_passed()
    # a breach afterwards (a glove in use) invalidates the result
    r.iso.use_glove("GP1")
    r.run(1)
    assert not r.iso.leak_test_passed()
    r.iso.release_glove("GP1")
    r.run(20)
    assert not r.iso.leak_test_passed()
    # same enclosure with a leak fault (x10) fails
    r.iso.faults.inject("leak", factor=10.0)
    r.iso.start_leak_test()
    r.run(lt.test_s + 1)
    rec = r.iso.leak_test_record()
    assert rec["decay_pa"] == pytest.approx(_leak_decay_by_hand(tight, 10.0), rel=1e-3)  # 61 Pa
    assert rec["result"] == "FAIL" and not r.iso.leak_test_passed()


def test_leak_test_refused_when_not_sealed(cfg):
    r = Rig(cfg)
    r.run(10)
    r.iso.use_glove("GP1")
    e = refused("LEAK_TEST_NOT_SEALED", r.iso.start_leak_test)
    assert "glove GP1 in use" in e.reason


def test_leak_fault_lowers_achievable_dp(cfg):
    p = cfg.pressure
    r = Rig(cfg)
    r.iso.faults.inject("leak", rate_per_h=5.0)  # gross leak on top of the qualified rate
    r.run(60)
    lam = (p.leak_rate_per_h + 5.0) * P_ATM / (3600.0 * cfg.leak_test.test_pressure_pa)  # 0.56 /s
    expected = p.setpoint_pa / (1.0 + lam * p.fan_time_constant_s)  # ~15 Pa
    assert r.iso.dp_pa() == pytest.approx(expected, rel=1e-4)
    assert expected < p.alarm_low_pa
    assert r.iso.sensors()["dp_alarm"]
    # without parameters the fault is the same gross leak
    r2 = Rig(cfg)
    r2.iso.faults.inject("leak")
    r2.run(60)
    assert r2.iso.dp_pa() == pytest.approx(expected, rel=1e-4)


# --------------------------------------------------------------------------- alarms
def test_fan_failure_alarm_only_after_delay(cfg):
    p = cfg.pressure
    r = Rig(cfg, dt=0.1)
    r.run(30)
    dp0 = r.iso.dp_pa()
    r.iso.faults.inject("fan_failure")
    tau_eff = 1.0 / (1.0 / p.fan_time_constant_s + lam_enclosure(cfg))
    t_cross = tau_eff * math.log(dp0 / p.alarm_low_pa)  # 2.04 s
    assert t_cross == pytest.approx(2.04, abs=0.01)
    r.run(t_cross + p.alarm_delay_s - 0.3)
    assert r.iso.dp_pa() < p.alarm_low_pa
    assert not r.iso.sensors()["dp_alarm"]
    r.run(0.6)
    assert r.iso.sensors()["dp_alarm"]
    assert r.iso.status()["dp_alarm_kind"] == "low"
    r.run(30)
    assert r.iso.dp_pa() == pytest.approx(0.0, abs=0.01)
    assert r.iso.sensors()["airflow_alarm"]


# --------------------------------------------------------------------------- particles
def _minute_average_after_burst(pc, burst: float) -> float:
    """Hand calc: rolling one-minute mean of background + burst * exp(-t/tau), t in [0, 60 s]."""
    tau = pc.burst_decay_s
    return pc.background_0_5_per_m3 + burst * tau / 60.0 * (1.0 - math.exp(-60.0 / tau))


def test_single_shipped_intervention_stays_below_alert(cfg):
    pc = cfg.particles
    # 150 + 1200 * 20/60 * (1 - e^-3) = 530 /m3: one glove intervention does not alert
    assert _minute_average_after_burst(pc, pc.burst_intervention_0_5) == pytest.approx(530, abs=1)
    r = Rig(cfg)
    r.run(60)
    r.iso.use_glove("GP1")
    peak = 0.0
    for _ in range(60):
        r.run(1)
        peak = max(peak, r.iso.sensors()["particles.0_5_per_m3"])
    assert peak < pc.alert_0_5_per_m3


def test_particle_burst_exceeds_alert_and_decays(cfg):
    # a large corrective intervention (site-configurable burst size)
    pc = cfg.particles.model_copy(update={"burst_intervention_0_5": 8000.0})
    big = cfg.model_copy(update={"particles": pc})
    expected = _minute_average_after_burst(pc, pc.burst_intervention_0_5)  # 2687 /m3
    sigma = math.sqrt(expected * 0.0283) / 0.0283  # counting noise of a 28.3 L sample: 308 /m3
    assert expected - 2 * sigma > pc.alert_0_5_per_m3
    r = Rig(big)
    iso = r.iso
    r.run(120)
    assert not iso.sensors()["particles.0_5_alert"]
    iso.use_glove("GP1")
    assert iso.truth()["particles_0_5_per_m3"] == pytest.approx(pc.background_0_5_per_m3 + 8000.0)
    r.run(60)
    s = iso.sensors()
    assert s["particles.0_5_per_m3"] == pytest.approx(expected, abs=3 * sigma)
    assert s["particles.0_5_alert"]
    r.run(10 * pc.burst_decay_s)  # bursts decay to e^-10 of their peak
    late = []
    for _ in range(60):
        r.run(1)
        s = iso.sensors()
        late.append(s["particles.0_5_per_m3"])
        assert not s["particles.0_5_alert"] and not s["particles.0_5_action"]
    assert sum(late) / len(late) == pytest.approx(pc.background_0_5_per_m3, abs=100)
    # >=5 um counts are whole particles in 28.3 L: readings are multiples of 35.3 /m3
    v5 = iso.sensors()["particles.5_0_per_m3"] * 0.0283
    assert v5 == pytest.approx(round(v5), abs=1e-6)


def test_particle_noise_is_seeded_and_unbiased(cfg):
    pc = cfg.particles

    def trace(seed):
        r = Rig(cfg, seed=seed)
        out = []
        for _ in range(600):
            r.run(1)
            out.append(r.iso.sensors()["particles.0_5_per_m3"])
        return out

    a, b, c = trace(1), trace(1), trace(2)
    assert a == b and a != c
    minutes = a[59::60]  # independent one-minute windows
    mean = sum(minutes) / len(minutes)
    # one-minute sample volume 28.3 L: sigma of one reading = sqrt(150*0.0283)/0.0283 = 73 /m3
    sigma_mean = math.sqrt(pc.background_0_5_per_m3 * 0.0283) / 0.0283 / math.sqrt(len(minutes))
    assert mean == pytest.approx(pc.background_0_5_per_m3, abs=4 * sigma_mean)
    assert len(set(a)) > 5  # noisy, not constant


def test_particle_monitor_failure(cfg):
    r = Rig(cfg)
    r.run(5)
    assert r.iso.sensors()["particles.monitor_running"]
    assert r.iso.sensors()["particles.sample_flow_l_min"] == cfg.particles.sample_flow_l_min
    r.iso.faults.inject("particle_monitor_failure")
    r.run(2)
    s = r.iso.sensors()
    assert not s["particles.monitor_running"] and s["particles.sample_flow_l_min"] == 0.0
    assert math.isnan(s["particles.0_5_per_m3"])


# --------------------------------------------------------------------------- sensor faults
def test_stuck_dp_sensor_is_detectable(cfg):
    r = Rig(cfg)
    r.run(30)
    r.iso.faults.inject("sensor:dp_pa", mode="stuck")
    r.run(1)
    stuck = r.iso.sensors()["dp_pa"]
    r.iso.faults.inject("fan_failure")
    readings, truths = [], []
    for _ in range(10):
        r.run(1)
        readings.append(r.iso.sensors()["dp_pa"])
        truths.append(r.iso.truth()["dp_pa"])
    assert all(v == stuck for v in readings)  # reading frozen ...
    assert max(truths) - min(truths) > 20.0  # ... while the truth falls
    r.iso.faults.clear("sensor:dp_pa")
    assert r.iso.sensors()["dp_pa"] == pytest.approx(r.iso.truth()["dp_pa"])


def test_nan_and_drift_sensor_faults(cfg):
    r = Rig(cfg)
    r.run(30)
    r.iso.faults.inject("sensor:temp_c", mode="nan")
    assert math.isnan(r.iso.sensors()["temp_c"])
    r.iso.faults.inject("sensor:rh_pct", mode="drift", rate=0.1)
    r.run(1)
    base = r.iso.sensors()["rh_pct"]
    r.run(50)
    assert r.iso.sensors()["rh_pct"] - base == pytest.approx(5.0, abs=0.1)
    # a NaN ΔP reading is out of band: the hatch interlock fails safe
    r.iso.mark_hatch_decontaminated()
    r.iso.faults.inject("sensor:dp_pa", mode="nan")
    assert not r.iso.sensors()["dp_in_band"]
    refused("DP_OUT_OF_BAND", r.iso.open_door, "A")
    # non-numeric sensor stuck
    r.iso.faults.inject("sensor:glove.GP1.in_use", mode="stuck")
    r.iso.sensors()
    r.iso.use_glove("GP1")
    assert r.iso.sensors()["glove.GP1.in_use"] is False


# --------------------------------------------------------------------------- decon status
def _released(cfg):
    r = Rig(cfg)
    r.run(30)
    r.iso.set_decon_status(DeconStatus.DECONTAMINATED_RELEASED, "VHP-0001")
    return r


def test_decon_breached_on_glove_fail(cfg):
    r = _released(cfg)
    r.iso.faults.inject("glove_breach:GP5")
    r.iso.start_glove_test("GP5", "qa.tester")
    r.run(cfg.glove_test.stabilisation_s + cfg.glove_test.test_s + 1)
    st = r.iso.status()
    assert st["decon_status"] == "BREACHED" and "GP5" in st["breach_reason"]
    assert r.iso.sensors()["decon_status"] == "BREACHED"


def test_decon_breached_on_seal_loss_and_on_low_dp(cfg):
    r = _released(cfg)
    r.iso.faults.inject("seal_loss")  # common seal supply: both seals deflate
    r.run(cfg.hatch.seal_deflate_s + 1)
    assert r.iso.decon_status == DeconStatus.BREACHED
    assert "seal" in r.iso.status()["breach_reason"]

    r = _released(cfg)
    r.iso.faults.inject("fan_failure")
    r.run(5)
    assert r.iso.decon_status == DeconStatus.DECONTAMINATED_RELEASED  # within the alarm delay
    r.run(cfg.pressure.alarm_delay_s)
    assert r.iso.decon_status == DeconStatus.BREACHED
    assert "alarm_low" in r.iso.status()["breach_reason"]


def test_decon_breached_when_alpha_open_without_locked_beta(cfg):
    r = _released(cfg)
    rtp = cfg.rtps[0].id
    r.iso.dock_beta(rtp, "BETA-3", "sterile")
    r.iso.lock_beta(rtp)
    r.run(2)
    r.iso.open_alpha(rtp)
    r.run(3)
    assert r.iso.decon_status == DeconStatus.DECONTAMINATED_RELEASED  # normal transfer
    r.iso.faults.inject(f"beta_lock_failure:{rtp}")
    r.run(1)
    assert r.iso.decon_status == DeconStatus.BREACHED
    assert rtp in r.iso.status()["breach_reason"]


def test_normal_hatch_transfer_keeps_release(cfg):
    r = _released(cfg)
    iso = r.iso
    iso.open_door("A")
    r.run(10)
    iso.close_door("A")
    r.run(cfg.hatch.door_travel_s + cfg.hatch.dwell_s + 1)
    iso.mark_hatch_decontaminated()
    iso.open_door("B")
    r.run(10)
    iso.close_door("B")
    r.run(10)
    assert iso.decon_status == DeconStatus.DECONTAMINATED_RELEASED
    with pytest.raises(InvalidCommand):
        iso.set_decon_status("CLEAN", "x")


def test_breaches_and_gloves_extended_for_vhp(cfg):
    r = Rig(cfg)
    r.run(10)
    assert r.iso.breaches() == []
    assert not r.iso.gloves_extended()
    for g in cfg.glove_ports:
        r.iso.extend_glove(g.id)
    assert r.iso.gloves_extended() and r.iso.breaches() == []
    refused("GLOVE_EXTENDED", r.iso.use_glove, "GP1")
    r.iso.retract_glove("GP1")
    r.iso.use_glove("GP1")
    assert r.iso.breaches() == ["glove GP1 in use"]
    r.iso.open_door("A")
    assert "hatch door A not closed (releasing)" in r.iso.breaches()
    assert r.iso.volume_m3 == cfg.volume_m3 and r.iso.internal_area_m2 == cfg.internal_area_m2
    r.iso.air.rh_pct = 80.0  # as the VHP unit would write it
    r.iso.set_decon_status(DeconStatus.CYCLE_RUNNING, "VHP-2")
    r.run(100)
    assert r.iso.air.rh_pct == 80.0  # the isolator leaves RH alone while a cycle runs


# --------------------------------------------------------------------------- determinism
def _scenario(cfg, dt):
    # door/seal times that put events between step boundaries
    hatch = cfg.hatch.model_copy(update={"door_travel_s": 2.3, "seal_deflate_s": 1.7, "seal_inflate_s": 2.9})
    r = Rig(cfg.model_copy(update={"hatch": hatch}), dt=dt)
    iso = r.iso
    out = []
    r.run(20)
    iso.open_door("A")
    r.run(10)
    iso.close_door("A")
    iso.faults.inject("glove_breach:GP1", hole_um=30.0)
    iso.start_glove_test("GP1", "qa")
    for _ in range(20):
        r.run(1)
        out.append(iso.dp_pa())
    iso.faults.inject("fan_failure")
    for _ in range(10):
        r.run(1)
        out.append(iso.dp_pa())
    out.append(iso.sensors()["dp_alarm"])
    r.run(400)
    out.append(iso.glove_test_record("GP1")["drop_pa"])
    out.append(iso.sensors()["particles.0_5_per_m3"])
    return out


def test_results_do_not_depend_on_dt(cfg):
    ref = _scenario(cfg, 0.1)
    for dt in (0.25, 0.5, 1.0):
        got = _scenario(cfg, dt)
        assert got[:-3] == pytest.approx(ref[:-3], abs=1e-6)
        assert got[-3] == ref[-3]
        assert got[-2] == pytest.approx(ref[-2], rel=1e-6)
        assert got[-1] == ref[-1]  # particle draws on a fixed sim-time grid


def test_bad_arguments(cfg):
    r = Rig(cfg)
    with pytest.raises(InvalidCommand):
        r.iso.step(math.nan)
    with pytest.raises(InvalidCommand):
        r.iso.use_glove("GP42")
    with pytest.raises(InvalidCommand):
        r.iso.note_intervention("sneeze")
    with pytest.raises(InvalidCommand):
        r.iso.note_intervention("glove", port="GP42")
    r.iso.note_intervention("door", port="autoclave_unload")  # any door id for door events
    assert r.iso.truth()["particles_0_5_per_m3"] == pytest.approx(
        cfg.particles.background_0_5_per_m3 + cfg.particles.burst_door_0_5)
    with pytest.raises(InvalidCommand):
        r.iso.faults.inject("meteor")
    with pytest.raises(InvalidCommand):
        r.iso.dock_beta(cfg.rtps[0].id, "", "sterile")
