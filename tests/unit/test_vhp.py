"""VHP unit process model (sim/vhp.py) against a small fake enclosure.

Physics checks use independent hand calculations in the tests (numpy eigen-solution of
the two-pool ODE, first-order bounds), not the model's own solver.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from aseptic_cell.sim.clock import SimClock
from aseptic_cell.sim.common import Atmosphere, CommandRefused, DeconStatus, InvalidCommand
from aseptic_cell.sim.vhp import (
    PPM_TO_MG_M3,
    VHPPhase,
    VHPUnitModel,
    h2o2_p_sat_kpa,
    relative_saturation_pct,
)

from aseptic_cell.config.devices import CellLayout, VHPCycleRecipe, VHPCycles

CONFIG = Path(__file__).resolve().parents[2] / "config"


@pytest.fixture(scope="module")
def unit_cfg():
    return CellLayout.model_validate(yaml.safe_load((CONFIG / "cell.yaml").read_text())).vhp_unit


@pytest.fixture(scope="module")
def iso_cfg():
    return CellLayout.model_validate(yaml.safe_load((CONFIG / "cell.yaml").read_text())).isolator


@pytest.fixture(scope="module")
def recipe() -> VHPCycleRecipe:
    return VHPCycles.model_validate(yaml.safe_load((CONFIG / "vhp_cycles.yaml").read_text())).get(
        "VHP-ISO-STD"
    )


class FakeEnclosure:
    """Minimal stand-in for the isolator: a sealed box with a settable dP and breaches."""

    def __init__(self, volume_m3: float, area_m2: float, temp_c: float = 21.0, rh_pct: float = 45.0) -> None:
        self.air = Atmosphere(temp_c=temp_c, rh_pct=rh_pct)
        self.volume_m3 = volume_m3
        self.internal_area_m2 = area_m2
        self.dp = 50.0
        self.open_breaches: list[str] = []
        self.leak_ok = True
        self.status_log: list[tuple[DeconStatus, str | None]] = []

    def dp_pa(self) -> float:
        return self.dp

    def breaches(self) -> list[str]:
        return list(self.open_breaches)

    def leak_test_passed(self) -> bool:
        return self.leak_ok

    def set_decon_status(self, status: DeconStatus, run_id: str | None) -> None:
        self.status_log.append((status, run_id))

    @property
    def status(self) -> DeconStatus | None:
        return self.status_log[-1][0] if self.status_log else None


class Robot:
    def __init__(self) -> None:
        self.ok, self.why = True, ""

    def __call__(self) -> tuple[bool, str]:
        return self.ok, self.why


def make(unit_cfg, iso_cfg, robot=None, **enc_kw):
    clock = SimClock()
    enc = FakeEnclosure(iso_cfg.volume_m3, iso_cfg.internal_area_m2, **enc_kw)
    return VHPUnitModel(unit_cfg, enc, clock, robot_safe=robot), enc, clock


def run(model, clock, seconds: float, dt: float = 1.0, until=None) -> None:
    """Advance clock then model by dt until ``seconds`` elapsed or ``until()`` is true."""
    end = clock.now() + seconds
    while clock.now() < end - 1e-9:
        clock.advance(dt)
        model.step(dt)
        if until is not None and until():
            return


def run_to_phase(model, clock, phase: VHPPhase, limit_s: float = 20000.0, dt: float = 1.0) -> None:
    run(model, clock, limit_s, dt, until=lambda: model.phase == phase)
    assert model.phase == phase


def run_to_end(model, clock, limit_s: float = 6 * 3600.0, dt: float = 1.0):
    run(model, clock, limit_s, dt, until=lambda: model.last_result is not None)
    assert model.last_result is not None, f"cycle did not finish; phase {model.phase}"
    return model.last_result


def no_hold(recipe):
    """The recipe without the rebound hold: aeration ends when the residual first reaches the
    limit (the catalytic-loop physics alone; the hold is tested in test_vhp_release.py)."""
    return recipe.model_copy(update={"aerate": recipe.aerate.model_copy(update={"hold_s": 0.0})})


def air_only_rate(unit_cfg, iso_cfg) -> float:
    """Hand calculation: loss rate of the air pool alone during aeration (1/s)."""
    qc = unit_cfg.catalyst_loop_m3_h / 3600.0
    qe = unit_cfg.exhaust_m3_h / 3600.0
    ka_a = unit_cfg.deposition_velocity_m_s * iso_cfg.internal_area_m2
    return (unit_cfg.catalyst_efficiency * qc + qe + ka_a) / iso_cfg.volume_m3


# --------------------------------------------------------------------------- helpers' physics
def test_h2o2_vapour_pressure_reproduces_normal_boiling_point():
    # pure H2O2 boils at 150.2 C (extrapolated) [BQ]: p_sat = 1 atm there
    assert h2o2_p_sat_kpa(150.2) == pytest.approx(101.325, rel=0.01)
    # and it is far less volatile than water at room temperature (about 1/10 .. 1/15)
    assert 0.1 < h2o2_p_sat_kpa(25.0) < 0.4


def test_relative_saturation_ideal_mixture():
    assert relative_saturation_pct(21.0, 30.0, 0.0) == pytest.approx(30.0)
    # 500 ppm at 1 atm is a partial pressure of 0.0507 kPa
    p_h = 500e-6 * 101.325
    assert relative_saturation_pct(21.0, 10.0, 500.0) == pytest.approx(
        10.0 + 100 * p_h / h2o2_p_sat_kpa(21.0)
    )


# --------------------------------------------------------------------------- full cycle
def test_standard_cycle_passes_and_releases(unit_cfg, iso_cfg, recipe):
    model, enc, clock = make(unit_cfg, iso_cfg, robot=Robot())
    rid = model.start_cycle(recipe, "op.alice")
    assert enc.status == DeconStatus.CYCLE_RUNNING
    res = run_to_end(model, clock)

    assert res.result == "PASS" and res.passed and res.reasons == ()
    assert [p.phase for p in res.phases] == ["PRECHECK", "DEHUMIDIFY", "CONDITION", "DECONTAMINATE", "AERATE"]
    assert [s for s, _ in enc.status_log] == [
        DeconStatus.CYCLE_RUNNING,
        DeconStatus.AERATING,
        DeconStatus.DECONTAMINATED_RELEASED,
    ]
    assert all(r == rid for _, r in enc.status_log)
    assert model.phase == VHPPhase.COMPLETE
    assert res.aeration_end_ppm <= recipe.aerate.release_ppm
    assert enc.air.h2o2_ppm <= recipe.aerate.release_ppm
    duration_h = (res.end_time - res.start_time) / 3600.0
    assert 1.0 <= duration_h <= 3.0  # about 1-3 h for isolators [V] [PATALERT]
    # phases chain without gaps; dwell lasted exactly the recipe's dwell time (sub-step grid)
    for a, b in zip(res.phases, res.phases[1:], strict=False):
        assert a.end == b.start
    dwell = res.phase_times("DECONTAMINATE")
    assert dwell.end - dwell.start == pytest.approx(recipe.decontaminate.dwell_s, abs=1.0)
    aer = res.phase_times("AERATE")
    assert aer.end - aer.start > dwell.end - dwell.start  # aeration is the longest phase [M]
    dc = recipe.decontaminate
    assert dc.min_ppm <= res.dwell_min_ppm <= res.dwell_mean_ppm <= res.dwell_max_ppm
    assert res.dwell_mean_ppm == pytest.approx(dc.setpoint_ppm, rel=0.02)
    assert res.max_rs_pct < dc.max_rs_pct
    # injected mass: at least what sits in the air at the set point (hand calc)
    assert res.injected_g > dc.setpoint_ppm * PPM_TO_MG_M3 / 1000.0 * iso_cfg.volume_m3
    assert res.injected_g == pytest.approx(model.truth()["injected_g"])
    assert unit_cfg.reservoir_g - model.truth()["reservoir_g"] == pytest.approx(
        res.injected_g / unit_cfg.solution_w_w
    )
    # the record: serialisable, downsampled to ~10 s, has the cycle-record fields
    d = res.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["recipe_id"] == "VHP-ISO-STD" and d["recipe_version"] == recipe.version
    assert d["operator"] == "op.alice" and d["result"] == "PASS"
    t = np.array(res.series.t)
    assert np.allclose(np.diff(t), 10.0, atol=1.0)
    assert len(t) == len(res.series.h2o2_ppm) == len(res.series.dp_pa) == len(res.series.rs_pct)
    assert max(res.series.h2o2_ppm) >= dc.setpoint_ppm * 0.98


def test_start_refused_while_active_and_invalid_arguments(unit_cfg, iso_cfg, recipe):
    model, enc, clock = make(unit_cfg, iso_cfg)
    bad = recipe.model_copy(
        update={"decontaminate": recipe.decontaminate.model_copy(update={"setpoint_ppm": math.nan})}
    )
    with pytest.raises(InvalidCommand):
        model.start_cycle(bad, "op")
    with pytest.raises(InvalidCommand):
        model.start_cycle(recipe, "")
    with pytest.raises(InvalidCommand):
        model.start_cycle("VHP-ISO-STD", "op")  # type: ignore[arg-type]
    assert model.phase == VHPPhase.IDLE and enc.status_log == []
    with pytest.raises(InvalidCommand):
        model.step(math.nan)
    with pytest.raises(InvalidCommand):
        model.refill_reservoir(math.nan)
    model.start_cycle(recipe, "op")
    with pytest.raises(CommandRefused) as exc:
        model.start_cycle(recipe, "op")
    assert exc.value.code == "VHP_CYCLE_ACTIVE"
    with pytest.raises(CommandRefused):
        model.refill_reservoir(100.0)
    with pytest.raises(InvalidCommand):
        model.abort("", "")


# --------------------------------------------------------------------------- aeration physics
def _two_pool_time_to(unit_cfg, iso_cfg, c0_ppm: float, s0_g: float, end_ppm: float) -> float:
    """Independent hand calculation: eigen-solution of the 2x2 linear ODE (numpy), bisection."""
    v, a = iso_cfg.volume_m3, iso_cfg.internal_area_m2
    qc, qe = unit_cfg.catalyst_loop_m3_h / 3600, unit_cfg.exhaust_m3_h / 3600
    ka, kd, ks = (
        unit_cfg.deposition_velocity_m_s,
        unit_cfg.desorption_per_min / 60,
        unit_cfg.surface_decomposition_per_min / 60,
    )
    mat = np.array([[-(unit_cfg.catalyst_efficiency * qc + qe + ka * a) / v, kd / v], [ka * a, -(kd + ks)]])
    lam, vec = np.linalg.eig(mat)
    x0 = np.array([c0_ppm * 1.39e-3, s0_g])  # 1 ppm = 1.39 mg/m3 [EPA-SUM]
    coef = np.linalg.solve(vec, x0)

    def c_ppm(t: float) -> float:
        return float((vec @ (coef * np.exp(lam * t)))[0]) / 1.39e-3

    lo, hi = 0.0, 1.0
    while c_ppm(hi) > end_ppm:
        hi *= 2
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if c_ppm(mid) > end_ppm else (lo, mid)
    return hi


@pytest.mark.parametrize("s0_g", [0.0, 3.0])
def test_aeration_time_matches_two_pool_hand_calculation(unit_cfg, iso_cfg, recipe, s0_g):
    model, enc, clock = make(unit_cfg, iso_cfg, rh_pct=10.0)
    enc.air.h2o2_ppm, enc.air.h2o2_surface_g = 800.0, s0_g
    model.start_aeration(no_hold(recipe), "op")
    assert enc.status == DeconStatus.NOT_DECONTAMINATED
    res = run_to_end(model, clock, dt=1.0)
    t_sim = res.end_time - res.start_time
    t_hand = _two_pool_time_to(unit_cfg, iso_cfg, 800.0, s0_g, recipe.aerate.release_ppm)
    t_air_only = math.log(800.0 / recipe.aerate.release_ppm) / air_only_rate(unit_cfg, iso_cfg)
    assert t_sim == pytest.approx(t_hand, abs=1.5)  # within the 1 s step / 0.5 s sub-step grid
    assert t_sim >= t_air_only  # not instant: desorption keeps it above the air-only decay
    assert res.result == "FAIL" and "aeration-only" in res.reasons[0]
    assert enc.status == DeconStatus.NOT_DECONTAMINATED
    if s0_g > 0:  # a loaded surface pool makes the tail much longer than the air-only time
        assert t_sim > 5 * t_air_only


def test_aeration_independent_of_dt(unit_cfg, iso_cfg, recipe):
    times = []
    for dt in (0.1, 1.0):
        model, enc, clock = make(unit_cfg, iso_cfg, rh_pct=10.0)
        enc.air.h2o2_ppm, enc.air.h2o2_surface_g = 800.0, 2.0
        model.start_aeration(no_hold(recipe), "op")
        res = run_to_end(model, clock, dt=dt)
        times.append(res.end_time - res.start_time)
    assert times[0] == pytest.approx(times[1], abs=1.0)


def test_dwell_independent_of_dt(unit_cfg, iso_cfg, recipe):
    out = []
    for dt in (0.1, 1.0):
        model, enc, clock = make(unit_cfg, iso_cfg)
        model.start_cycle(recipe, "op")
        run_to_phase(model, clock, VHPPhase.AERATE, dt=dt)
        out.append((clock.now(), model.truth()["injected_g"], enc.air.h2o2_surface_g, enc.air.rh_pct))
    (t1, m1, s1, rh1), (t2, m2, s2, rh2) = out
    assert t1 == pytest.approx(t2, abs=1.0)
    assert m1 == pytest.approx(m2, rel=0.01)
    assert s1 == pytest.approx(s2, rel=0.01)
    assert rh1 == pytest.approx(rh2, abs=0.5)


def test_catalyst_failure_slows_aeration(unit_cfg, iso_cfg, recipe):
    times = []
    for fault in (False, True):
        model, enc, clock = make(unit_cfg, iso_cfg, rh_pct=10.0)
        enc.air.h2o2_ppm, enc.air.h2o2_surface_g = 800.0, 0.0
        if fault:
            model.faults.inject("catalyst_failure", efficiency_factor=0.1)
        model.start_aeration(no_hold(recipe), "op")
        res = run_to_end(model, clock)
        times.append(res.end_time - res.start_time)
    assert times[1] > 2 * times[0]


def test_aeration_timeout_is_hold_closed(unit_cfg, iso_cfg, recipe):
    short = recipe.model_copy(update={"aerate": recipe.aerate.model_copy(update={"timeout_s": 600.0})})
    model, enc, clock = make(unit_cfg, iso_cfg)
    model.start_cycle(short, "op")
    run_to_phase(model, clock, VHPPhase.AERATE)
    t_aer = clock.now()
    model.faults.inject("catalyst_failure", efficiency_factor=0.0)
    run_to_phase(model, clock, VHPPhase.HOLD_CLOSED)
    assert clock.now() - t_aer == pytest.approx(600.0, abs=1.0)
    s = model.sensors()
    assert s["hold_closed"] is True and s["catalyst_loop_on"] is True  # still aerating
    assert enc.status != DeconStatus.DECONTAMINATED_RELEASED
    run(model, clock, 600.0)
    assert model.phase == VHPPhase.HOLD_CLOSED  # no timer ends it: only the measured endpoint
    model.faults.clear("catalyst_failure")  # catalyst replaced
    res = run_to_end(model, clock)
    assert res.result == "FAIL" and any("hold closed" in r for r in res.reasons)
    assert res.aeration_end_ppm <= 1.0
    assert enc.status == DeconStatus.NOT_DECONTAMINATED


# --------------------------------------------------------------------------- abort rules
def _assert_failed_and_aerated(res, enc, code: str, recipe) -> None:
    assert res.result == "FAIL"
    assert code in [a.code for a in res.alarms], res.alarms
    assert enc.status == DeconStatus.NOT_DECONTAMINATED
    assert DeconStatus.DECONTAMINATED_RELEASED not in [s for s, _ in enc.status_log]
    assert res.aeration_end_ppm is not None and res.aeration_end_ppm <= recipe.aerate.release_ppm
    assert enc.air.h2o2_ppm <= recipe.aerate.release_ppm


def test_breach_during_dwell_fails_and_still_aerates(unit_cfg, iso_cfg, recipe):
    model, enc, clock = make(unit_cfg, iso_cfg)
    model.start_cycle(recipe, "op")
    run_to_phase(model, clock, VHPPhase.DECONTAMINATE)
    run(model, clock, 300.0)
    enc.open_breaches = ["glove port GP2 in use"]
    clock.advance(1.0)
    model.step(1.0)
    assert model.phase == VHPPhase.AERATE
    assert enc.status == DeconStatus.NOT_DECONTAMINATED
    injected = model.truth()["injected_g"]
    s = model.sensors()
    assert s["injection_g_min"] == 0.0 and s["catalyst_loop_on"] is True
    res = run_to_end(model, clock)
    _assert_failed_and_aerated(res, enc, "ENCLOSURE_BREACH", recipe)
    assert any("GP2" in r for r in res.reasons)
    assert res.injected_g == pytest.approx(injected)  # injection stopped at the abort
    assert model.phase == VHPPhase.FAILED
    assert [p.phase for p in res.phases][-2:] == ["DECONTAMINATE", "AERATE"]


def test_injector_failure_aborts_on_low_concentration_after_tolerance(unit_cfg, iso_cfg, recipe):
    model, enc, clock = make(unit_cfg, iso_cfg)
    model.start_cycle(recipe, "op")
    run_to_phase(model, clock, VHPPhase.DECONTAMINATE)
    run(model, clock, 300.0)
    c_start = model.sensors()["h2o2_ppm"]
    t_fail = clock.now()
    model.faults.inject("injector_failure")
    below_at = None
    while model.phase == VHPPhase.DECONTAMINATE:
        clock.advance(1.0)
        model.step(1.0)
        if below_at is None and enc.air.h2o2_ppm < recipe.decontaminate.min_ppm:
            below_at = clock.now()
    t_abort = clock.now()
    dc = recipe.decontaminate
    # Hand bound: without injection the air pool decays at most at (Q_e + k_a A)/V (desorption only slows it)
    k_max = (
        unit_cfg.exhaust_m3_h / 3600 + unit_cfg.deposition_velocity_m_s * iso_cfg.internal_area_m2
    ) / iso_cfg.volume_m3
    t_fall_min = math.log(c_start / dc.min_ppm) / k_max
    assert below_at - t_fail >= t_fall_min - 1.0
    assert t_abort - below_at == pytest.approx(dc.low_tolerance_s, abs=1.5)
    res = run_to_end(model, clock)
    _assert_failed_and_aerated(res, enc, "LOW_CONCENTRATION", recipe)


def test_dehumidify_timeout(unit_cfg, iso_cfg, recipe):
    model, enc, clock = make(unit_cfg, iso_cfg)
    model.faults.inject("dryer_failure")
    model.start_cycle(recipe, "op")
    run_to_phase(model, clock, VHPPhase.DEHUMIDIFY)
    t0 = clock.now()
    res = run_to_end(model, clock)
    alarm = next(a for a in res.alarms if a.code == "DEHUMIDIFY_TIMEOUT")
    assert alarm.time - t0 == pytest.approx(recipe.dehumidify.timeout_s, abs=1.0)
    assert res.injected_g == 0.0
    _assert_failed_and_aerated(res, enc, "DEHUMIDIFY_TIMEOUT", recipe)


def test_dehumidify_duration_matches_dryer_and_exhaust_hand_calc(unit_cfg, iso_cfg, recipe):
    # Without the exhaust's dry make-up air, RH falls linearly at the dryer rate; the exhaust
    # makes it faster. Bound: t <= (RH0 - target) / rate.
    model, enc, clock = make(unit_cfg, iso_cfg, rh_pct=45.0)
    model.start_cycle(recipe, "op")
    run_to_phase(model, clock, VHPPhase.DEHUMIDIFY)
    t0 = clock.now()
    run_to_phase(model, clock, VHPPhase.CONDITION)
    t_linear = (45.0 - recipe.dehumidify.target_rh_pct) / unit_cfg.dryer_rate_pct_min * 60.0
    k_ex = unit_cfg.exhaust_m3_h / 3600 / iso_cfg.volume_m3
    # with the exhaust: dRH/dt = -rate - k_ex RH  -> closed form
    r = unit_cfg.dryer_rate_pct_min / 60.0
    t_both = math.log((45.0 + r / k_ex) / (recipe.dehumidify.target_rh_pct + r / k_ex)) / k_ex
    assert clock.now() - t0 == pytest.approx(t_both, abs=1.5)
    assert clock.now() - t0 < t_linear


def test_rs_limit_aborts(unit_cfg, iso_cfg, recipe):
    low_rs = recipe.model_copy(
        update={"decontaminate": recipe.decontaminate.model_copy(update={"max_rs_pct": 40.0})}
    )
    model, enc, clock = make(unit_cfg, iso_cfg)
    model.start_cycle(low_rs, "op")
    res = run_to_end(model, clock)
    alarm = next(a for a in res.alarms if a.code == "RS_LIMIT")
    i = int(np.searchsorted(res.series.t, alarm.time))
    assert res.max_rs_pct >= 40.0
    # independent check of the RS at the abort from recorded RH and ppm (ideal mixture)
    rs_rec = relative_saturation_pct(21.0, res.series.rh_pct[i - 1], res.series.h2o2_ppm[i - 1])
    assert rs_rec == pytest.approx(res.series.rs_pct[i - 1], rel=1e-9)
    _assert_failed_and_aerated(res, enc, "RS_LIMIT", recipe)


def test_nan_sensor_aborts_and_endpoint_uses_redundant_sensor(unit_cfg, iso_cfg, recipe):
    model, enc, clock = make(unit_cfg, iso_cfg)
    model.start_cycle(recipe, "op")
    run_to_phase(model, clock, VHPPhase.DECONTAMINATE)
    run(model, clock, 100.0)
    model.faults.inject("sensor:h2o2_ppm", mode="nan")
    clock.advance(1.0)
    model.step(1.0)
    assert model.phase == VHPPhase.AERATE
    assert math.isnan(model.sensors()["h2o2_ppm"])
    res = run_to_end(model, clock)
    _assert_failed_and_aerated(res, enc, "SENSOR_FAULT", recipe)
    json.dumps(res.to_dict(), allow_nan=False)  # NaN readings recorded as null


def test_nan_rh_sensor_during_dehumidify(unit_cfg, iso_cfg, recipe):
    model, enc, clock = make(unit_cfg, iso_cfg)
    model.start_cycle(recipe, "op")
    run_to_phase(model, clock, VHPPhase.DEHUMIDIFY)
    model.faults.inject("sensor:rh_pct", mode="nan")
    res = run_to_end(model, clock)
    assert "SENSOR_FAULT" in [a.code for a in res.alarms]
    assert any("rh_pct" in r for r in res.reasons)


def test_redundant_ppm_sensor_disagreement(unit_cfg, iso_cfg, recipe):
    model, enc, clock = make(unit_cfg, iso_cfg)
    model.start_cycle(recipe, "op")
    run_to_phase(model, clock, VHPPhase.DECONTAMINATE)
    model.faults.inject("sensor:h2o2_ppm_b", mode="offset", offset=-0.1 * unit_cfg.sensor_range_ppm)
    res = run_to_end(model, clock)
    _assert_failed_and_aerated(res, enc, "SENSOR_DISAGREEMENT", recipe)


def test_robot_not_safe_at_precheck(unit_cfg, iso_cfg, recipe):
    robot = Robot()
    robot.ok, robot.why = False, "drives enabled, not in decon pose"
    model, enc, clock = make(unit_cfg, iso_cfg, robot=robot)
    model.start_cycle(recipe, "op")
    res = run_to_end(model, clock)
    assert res.result == "FAIL"
    assert "ROBOT_NOT_SAFE" in [a.code for a in res.alarms]
    assert any("decon pose" in r for r in res.reasons)
    assert [p.phase for p in res.phases] == ["PRECHECK", "AERATE"]
    assert res.injected_g == 0.0
    assert enc.status == DeconStatus.NOT_DECONTAMINATED


def test_robot_moving_during_dwell_aborts(unit_cfg, iso_cfg, recipe):
    robot = Robot()
    model, enc, clock = make(unit_cfg, iso_cfg, robot=robot)
    model.start_cycle(recipe, "op")
    run_to_phase(model, clock, VHPPhase.DECONTAMINATE)
    robot.ok, robot.why = False, "drives enabled"
    res = run_to_end(model, clock)
    _assert_failed_and_aerated(res, enc, "ROBOT_NOT_SAFE", recipe)


@pytest.mark.parametrize(
    "setup, code",
    [
        (lambda enc: setattr(enc, "leak_ok", False), "LEAK_TEST_NOT_PASSED"),
        (lambda enc: enc.open_breaches.append("hatch HATCH1 inner door open"), "ENCLOSURE_BREACH"),
        (lambda enc: setattr(enc.air, "temp_c", 38.0), "TEMP_OUT_OF_RANGE"),
    ],
)
def test_precheck_failures(unit_cfg, iso_cfg, recipe, setup, code):
    model, enc, clock = make(unit_cfg, iso_cfg)
    setup(enc)
    model.start_cycle(recipe, "op")
    res = run_to_end(model, clock)
    assert res.result == "FAIL" and code in [a.code for a in res.alarms]
    assert res.injected_g == 0.0


def test_precheck_waits_for_dp_then_times_out(unit_cfg, iso_cfg, recipe):
    model, enc, clock = make(unit_cfg, iso_cfg)
    enc.dp = 5.0
    model.start_cycle(recipe, "op")
    run(model, clock, 100.0)
    assert model.phase == VHPPhase.PRECHECK  # still waiting for dP to settle
    res = run_to_end(model, clock)
    alarm = next(a for a in res.alarms if a.code == "DP_OUT_OF_RANGE")
    assert alarm.time == pytest.approx(recipe.precheck.timeout_s, abs=1.0)


def test_dp_out_of_band_during_dwell(unit_cfg, iso_cfg, recipe):
    model, enc, clock = make(unit_cfg, iso_cfg)
    model.start_cycle(recipe, "op")
    run_to_phase(model, clock, VHPPhase.DECONTAMINATE)
    enc.dp = recipe.limits.dp_min_pa - 1.0  # fan failure
    res = run_to_end(model, clock)
    _assert_failed_and_aerated(res, enc, "DP_OUT_OF_RANGE", recipe)


def test_e_stop_stops_everything_then_aerates_after_release(unit_cfg, iso_cfg, recipe):
    model, enc, clock = make(unit_cfg, iso_cfg)
    model.start_cycle(recipe, "op")
    run_to_phase(model, clock, VHPPhase.DECONTAMINATE)
    model.faults.inject("e_stop")
    run(model, clock, 120.0)
    s = model.sensors()
    assert s["injection_g_min"] == 0.0 and s["catalyst_loop_on"] is False
    assert model.phase == VHPPhase.AERATE and enc.status == DeconStatus.NOT_DECONTAMINATED
    with pytest.raises(CommandRefused):
        model.start_cycle(recipe, "op")
    model.faults.clear("e_stop")
    res = run_to_end(model, clock)
    _assert_failed_and_aerated(res, enc, "E_STOP", recipe)


def test_leak_fault_costs_the_hand_calculated_extra_h2o2(unit_cfg, iso_cfg, recipe):
    injected = []
    q_leak_m3_h = 2.0
    for leak in (False, True):
        model, enc, clock = make(unit_cfg, iso_cfg)
        if leak:
            model.faults.inject("leak", m3_h=q_leak_m3_h)
        model.start_cycle(recipe, "op")
        run_to_phase(model, clock, VHPPhase.AERATE)
        injected.append(model.truth()["injected_g"])
    # extra loss ~ Q_leak * C_setpoint * dwell (plus a little during the short ramp)
    extra = q_leak_m3_h / 3600 * recipe.decontaminate.setpoint_ppm * 1.39e-3 * recipe.decontaminate.dwell_s
    assert injected[1] - injected[0] == pytest.approx(extra, rel=0.1)


def test_operator_abort(unit_cfg, iso_cfg, recipe):
    model, enc, clock = make(unit_cfg, iso_cfg)
    model.start_cycle(recipe, "op")
    run_to_phase(model, clock, VHPPhase.CONDITION)
    model.abort("qa.bob", "customer request")
    res = run_to_end(model, clock)
    _assert_failed_and_aerated(res, enc, "OPERATOR_ABORT", recipe)
    assert any("qa.bob" in r for r in res.reasons)
    # a new cycle may start after the previous one finished
    model.start_cycle(recipe, "op")
    assert model.phase == VHPPhase.PRECHECK


def test_sensors_status_and_sensor_faults(unit_cfg, iso_cfg, recipe):
    model, enc, clock = make(unit_cfg, iso_cfg)
    s = model.sensors()
    assert {"h2o2_ppm", "h2o2_ppm_b", "rh_pct", "rs_pct", "temp_c", "dp_pa", "phase"} <= set(s)
    assert s["phase"] == "IDLE" and model.status()["state"] == "IDLE"
    model.faults.inject("sensor:temp_c", mode="offset", offset=2.0)
    assert model.sensors()["temp_c"] == pytest.approx(enc.air.temp_c + 2.0)
    assert model.truth()["temp_c"] == enc.air.temp_c
    with pytest.raises(InvalidCommand):
        model.faults.inject("no_such_fault")


def test_bad_fault_parameters_rejected(unit_cfg, iso_cfg):
    model, enc, clock = make(unit_cfg, iso_cfg)
    for name, params in (
        ("leak", {"m3_h": math.nan}),
        ("catalyst_failure", {"efficiency_factor": 2.0}),
        ("sensor:h2o2_ppm", {"mode": "offset", "offset": math.inf}),
    ):
        with pytest.raises(InvalidCommand):
            model.faults.inject(name, **params)
    assert model.faults.names() == []


def test_robot_status_unreadable_counts_as_not_safe(unit_cfg, iso_cfg, recipe):
    def broken() -> tuple[bool, str]:
        raise RuntimeError("arm controller offline")

    model, enc, clock = make(unit_cfg, iso_cfg, robot=broken)
    model.start_cycle(recipe, "op")
    res = run_to_end(model, clock)
    assert res.result == "FAIL" and any("offline" in r for r in res.reasons)
