"""Double-ended steam steriliser model (sim/autoclave.py).

Physics checks use independent hand calculations in the tests: F0 re-integrated from the
recorded load-probe series with numpy's trapezoid rule, steam-table consistency of the
recorded plateau P/T, leak rates from the configured leak rates.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from aseptic_cell.sim.autoclave import AutoclaveModel, AutoclavePhase, DoorState
from aseptic_cell.sim.clock import SimClock
from aseptic_cell.sim.common import CommandRefused, InvalidCommand
from aseptic_cell.sim.steam import p_sat_kpa, t_sat_c

from aseptic_cell.config.devices import AutoclavePrograms, CellLayout

CONFIG = Path(__file__).resolve().parents[2] / "config"
ATM = 101.325


@pytest.fixture(scope="module")
def cfg():
    return CellLayout.model_validate(yaml.safe_load((CONFIG / "cell.yaml").read_text())).autoclave


@pytest.fixture(scope="module")
def programs():
    return AutoclavePrograms.model_validate(yaml.safe_load((CONFIG / "autoclave_programs.yaml").read_text()))


def make(cfg, programs):
    clock = SimClock()
    return AutoclaveModel(cfg, clock, programs), clock


def run(model, clock, seconds, dt=1.0, until=None):
    end = clock.now() + seconds
    while clock.now() < end - 1e-9:
        clock.advance(dt)
        model.step(dt)
        if until is not None and until():
            return


def run_to_end(model, clock, dt=1.0, limit_s=4 * 3600.0):
    run(model, clock, limit_s, dt, until=lambda: model.last_result is not None)
    assert model.last_result is not None, model.phase
    return model.last_result


def run_to_phase(model, clock, phase, dt=1.0, limit_s=4 * 3600.0):
    run(model, clock, limit_s, dt, until=lambda: model.phase == phase)
    assert model.phase == phase


def cool_down(model, clock, cfg):
    run(model, clock, 3600.0, until=lambda: model.truth()["chamber_t_c"] < cfg.door_open_max_temp_c)


def wait_doors(model, clock, cfg):
    run(model, clock, 2 * (cfg.door_travel_s + cfg.gasket_pressurise_s) + 1.0)


def trapezoid_f0(res) -> float:
    """Independent F0: trapezoid rule over the recorded (t, load probe) series, in minutes."""
    t = np.array(res.series.t)
    lethal = 10.0 ** ((np.array(res.series.load_t_c) - 121.1) / 10.0)  # [FEDF0]
    return float(np.sum((lethal[1:] + lethal[:-1]) / 2 * np.diff(t)) / 60.0)


# --------------------------------------------------------------------------- sterilise
def test_p121_15_cycle_passes_and_releases_the_clean_side(cfg, programs):
    model, clock = make(cfg, programs)
    prog = programs.get("P121-15")
    model.start_program("P121-15", "LOAD-42", "op.alice")
    res = run_to_end(model, clock)

    assert res.result == "PASS", res.reasons
    assert res.f0_min >= 15.0
    assert res.f0_min == pytest.approx(trapezoid_f0(res), rel=0.02)
    # lower bound by hand: the load sits at >= set point for at least (hold - equilibration)
    lower = (
        (prog.plateau.hold_s - res.equilibration_s) / 60.0 * 10 ** ((prog.plateau.setpoint_c - 121.1) / 10)
    )
    assert res.f0_min > lower
    names = [p.phase for p in res.phases]
    assert names == [
        "PULSE_VACUUM_1",
        "PULSE_PRESSURE_1",
        "PULSE_VACUUM_2",
        "PULSE_PRESSURE_2",
        "PULSE_VACUUM_3",
        "PULSE_PRESSURE_3",
        "HEATUP",
        "PLATEAU",
        "EXHAUST",
        "DRYING",
        "AIR_BREAK",
    ]
    plateau = res.phase_times("PLATEAU")
    assert plateau.end - plateau.start == pytest.approx(prog.plateau.hold_s, abs=0.5)
    assert res.hold_time_in_band_s == pytest.approx(prog.plateau.hold_s, abs=0.5)
    lo, hi = prog.plateau.setpoint_c, prog.plateau.setpoint_c + prog.plateau.band_c
    assert lo <= res.plateau_min_c <= res.plateau_max_c <= hi
    assert res.max_probe_disagreement_c <= cfg.probe_disagreement_max_c
    # pulse durations by hand: linear pump / steam rates between the set points
    pv = prog.prevacuum
    first_vac = res.phases[0]
    assert first_vac.end - first_vac.start == pytest.approx(
        (ATM - pv.vacuum_kpa) / cfg.pump_rate_kpa_s, abs=1.0
    )
    fill = res.phases[1]
    assert fill.end - fill.start == pytest.approx(
        (pv.pulse_high_kpa - pv.vacuum_kpa) / cfg.steam_fill_kpa_s, abs=1.0
    )
    assert res.phase_times("DRYING").end - res.phase_times("DRYING").start == pytest.approx(
        prog.drying.time_s, abs=0.5
    )
    # recorded plateau P and T lie on the saturated-steam line (steam-table relation)
    for t, p, tc in zip(res.series.t, res.series.chamber_p_kpa, res.series.chamber_t_c, strict=True):
        if plateau.start < t <= plateau.end:
            assert p == pytest.approx(p_sat_kpa(tc), rel=0.005)
    duration_min = (res.end_time - res.start_time) / 60.0
    assert 20.0 < duration_min < 60.0
    assert model.unload_released and model.sensors()["unload_released"] is True
    d = res.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["result"] == "PASS" and d["load_id"] == "LOAD-42" and d["program_id"] == "P121-15"
    assert np.allclose(np.diff(res.series.t), model.record_interval_s, atol=0.5)


def test_p134_3_cycle_passes(cfg, programs):
    model, clock = make(cfg, programs)
    model.start_program("P134-3", "LOAD-43", "op")
    res = run_to_end(model, clock)
    assert res.result == "PASS", res.reasons
    # 3 min at >= 134 C alone is worth 3 x 10^1.29 = 58.5 min; the load lags by the equilibration time
    assert res.f0_min > (180.0 - res.equilibration_s) / 60.0 * 10**1.29
    assert res.f0_min == pytest.approx(trapezoid_f0(res), rel=0.02)
    assert res.plateau_min_c >= 134.0 and res.plateau_max_c <= 137.0


def test_results_independent_of_dt(cfg, programs):
    out = []
    for dt in (0.1, 1.0):
        model, clock = make(cfg, programs)
        model.start_program("P134-3", "L", "op")
        res = run_to_end(model, clock, dt=dt)
        out.append(res)
    a, b = out
    assert a.f0_min == pytest.approx(b.f0_min, rel=0.005)
    assert a.end_time - a.start_time == pytest.approx(b.end_time - b.start_time, abs=2.0)
    assert a.equilibration_s == pytest.approx(b.equilibration_s, abs=1.0)


def test_f0_below_target_fails(cfg, programs):
    # a target above the plateau's own F0 is refused when loading (test_autoclave_release.py):
    # a load that heats too slowly (a cold, dense load: long probe lag) misses a valid target
    prog = programs.get("P121-15").model_copy(update={"f0_target_min": 14.5})
    model, clock = make(cfg.model_copy(update={"load_probe_time_constant_s": 900.0}), programs)
    model.start_program(prog, "L", "op")
    res = run_to_end(model, clock)
    assert res.f0_min < 14.5
    assert res.result == "FAIL" and "F0_LOW" in [a.code for a in res.alarms]
    assert not model.unload_released


# --------------------------------------------------------------------------- aborts
def _assert_failed_and_vented(model, res, code):
    assert res.result == "FAIL"
    assert code in [a.code for a in res.alarms], res.alarms
    assert res.phases[-1].phase == "VENTING"
    assert model.phase == AutoclavePhase.FAILED
    assert abs(model.truth()["chamber_p_kpa"] - ATM) < 0.01
    assert not model.unload_released


def test_steam_failure_on_plateau_fails_and_vents(cfg, programs):
    model, clock = make(cfg, programs)
    model.start_program("P121-15", "L", "op")
    run_to_phase(model, clock, AutoclavePhase.PLATEAU)
    run(model, clock, 120.0)
    model.faults.inject("steam_failure")
    assert model.sensors()["steam_supply_ok"] is False
    clock.advance(1.0)
    model.step(1.0)
    assert model.phase == AutoclavePhase.VENTING
    # a door never opens on a pressurised, hot chamber
    with pytest.raises(CommandRefused) as exc:
        model.open_door("load")
    assert exc.value.code == "AC_PRESSURISED"
    res = run_to_end(model, clock)
    _assert_failed_and_vented(model, res, "STEAM_SUPPLY_FAILURE")


def test_probe_disagreement_fails(cfg, programs):
    model, clock = make(cfg, programs)
    model.start_program("P121-15", "L", "op")
    run_to_phase(model, clock, AutoclavePhase.PLATEAU)
    model.faults.inject("sensor:chamber_t_mon_c", mode="offset", offset=1.5 * cfg.probe_disagreement_max_c)
    res = run_to_end(model, clock)
    _assert_failed_and_vented(model, res, "PROBE_DISAGREEMENT")
    assert res.max_probe_disagreement_c == pytest.approx(1.5 * cfg.probe_disagreement_max_c)


def test_stuck_chamber_temperature_sensor_is_detected_by_saturation_check(cfg, programs):
    model, clock = make(cfg, programs)
    model.start_program("P121-15", "L", "op")
    run_to_phase(model, clock, AutoclavePhase.HEATUP)
    run(model, clock, 30.0)
    model.faults.inject("sensor:chamber_t_c", mode="stuck")
    t_stuck = clock.now()
    res = run_to_end(model, clock)
    _assert_failed_and_vented(model, res, "NON_SATURATED")
    # the controller kept heating on the frozen reading; at heat_rate the real temperature leaves
    # the tolerance after tol / rate seconds (hand calc)
    first = min(a.time for a in res.alarms)
    assert first - t_stuck == pytest.approx(
        cfg.probe_disagreement_max_c / (cfg.heat_rate_c_min / 60.0), abs=2.0
    )


def test_air_in_steam_is_detected_as_non_saturated(cfg, programs):
    model, clock = make(cfg, programs)
    model.faults.inject("steam_ncg", fraction=0.05)
    model.start_program("P121-15", "L", "op")
    res = run_to_end(model, clock)
    _assert_failed_and_vented(model, res, "NON_SATURATED")
    alarm = next(a for a in res.alarms if a.code == "NON_SATURATED")
    i = int(np.searchsorted(res.series.t, alarm.time)) - 1
    p, tc = res.series.chamber_p_kpa[i], res.series.chamber_t_c[i]
    assert p > p_sat_kpa(tc)  # pressure above the steam-table value for the measured temperature


def test_vacuum_not_reached_with_gross_leak(cfg, programs):
    model, clock = make(cfg, programs)
    # air ingress faster than the pump can remove it
    model.faults.inject("leak", rate=1.5 * cfg.pump_rate_kpa_s * 60.0)
    model.start_program("P121-15", "L", "op")
    res = run_to_end(model, clock)
    _assert_failed_and_vented(model, res, "VACUUM_NOT_REACHED")
    alarm = next(a for a in res.alarms if a.code == "VACUUM_NOT_REACHED")
    assert alarm.time - res.start_time == pytest.approx(
        programs.get("P121-15").prevacuum.pulse_timeout_s, abs=0.5
    )


def test_seal_loss_e_stop_and_operator_abort(cfg, programs):
    for action, code in (
        (lambda m: m.faults.inject("seal_loss", side="unload"), "DOOR_SEAL_LOSS"),
        (lambda m: m.faults.inject("e_stop"), "E_STOP"),
        (lambda m: m.abort("qa.bob", "load dropped"), "OPERATOR_ABORT"),
    ):
        model, clock = make(cfg, programs)
        model.start_program("P121-15", "L", "op")
        run_to_phase(model, clock, AutoclavePhase.PLATEAU)
        action(model)
        res = run_to_end(model, clock)
        _assert_failed_and_vented(model, res, code)


# --------------------------------------------------------------------------- test programs
def test_leak_test_passes_on_intact_chamber(cfg, programs):
    model, clock = make(cfg, programs)
    model.start_program("LEAK-TEST", "EMPTY", "op")
    res = run_to_end(model, clock)
    lt = programs.get("LEAK-TEST").leak_test
    assert res.result == "PASS"
    # hand calc: below the critical ratio (0.528 atm) air ingress is choked, i.e. constant
    assert res.leak_rate_kpa_min == pytest.approx(cfg.base_leak_kpa_per_min, rel=0.01)
    assert res.leak_rate_kpa_min <= lt.max_rate_kpa_min
    assert [p.phase for p in res.phases] == ["LEAK_EVACUATE", "LEAK_STABILISE", "LEAK_HOLD", "AIR_BREAK"]
    assert not model.unload_released  # a test cycle never releases the clean side


def test_leak_test_fails_with_configured_leak(cfg, programs):
    model, clock = make(cfg, programs)
    model.faults.inject("leak", rate=0.5)
    model.start_program("LEAK-TEST", "EMPTY", "op")
    res = run_to_end(model, clock)
    assert res.result == "FAIL" and "LEAK_RATE_HIGH" in [a.code for a in res.alarms]
    assert res.leak_rate_kpa_min == pytest.approx(cfg.base_leak_kpa_per_min + 0.5, rel=0.01)


def test_bowie_dick_passes_on_intact_chamber(cfg, programs):
    model, clock = make(cfg, programs)
    model.start_program("BOWIE-DICK", "BD-PACK", "op")
    res = run_to_end(model, clock)
    assert res.result == "PASS", res.reasons
    assert 0.0 <= res.bowie_dick_delta_c < programs.get("BOWIE-DICK").bowie_dick_max_delta_c
    assert not model.unload_released


def test_bowie_dick_fails_with_air_leak(cfg, programs):
    model, clock = make(cfg, programs)
    model.faults.inject("leak", rate=5.0)
    model.start_program("BOWIE-DICK", "BD-PACK", "op")
    run_to_phase(model, clock, AutoclavePhase.EXHAUST)
    # at the end of the hold the pack centre sits at the saturation temperature of the steam
    # partial pressure left beside the trapped air: dT = T_sat(P) - T_sat(P - p_air,pack)
    tr = model.truth()
    dt_expected = t_sat_c(tr["chamber_p_kpa"]) - t_sat_c(tr["chamber_p_kpa"] - tr["pack_air_kpa"])
    s = model.sensors()
    assert s["chamber_t_c"] - s["load_t_c"] == pytest.approx(dt_expected, abs=0.3)
    res = run_to_end(model, clock)
    assert res.result == "FAIL" and "BOWIE_DICK_FAIL" in [a.code for a in res.alarms]
    assert res.bowie_dick_delta_c >= programs.get("BOWIE-DICK").bowie_dick_max_delta_c


# --------------------------------------------------------------------------- door interlocks
def test_start_requires_both_doors_sealed(cfg, programs):
    model, clock = make(cfg, programs)
    model.open_door("load")
    with pytest.raises(CommandRefused) as exc:
        model.start_program("P121-15", "L", "op")
    assert exc.value.code == "AC_DOOR_NOT_SEALED"
    wait_doors(model, clock, cfg)
    assert model.doors["load"].state == DoorState.OPEN
    model.close_door("load")
    model.close_door("load")  # idempotent
    run(model, clock, cfg.door_travel_s + 0.5)
    assert model.sensors()["load_door_closed"] and not model.sensors()["load_door_gasket_ok"]
    with pytest.raises(CommandRefused):  # closed and locked, gasket still pressurising
        model.start_program("P121-15", "L", "op")
    run(model, clock, cfg.gasket_pressurise_s)
    assert model.sensors()["load_door_gasket_ok"]
    model.start_program("P121-15", "L", "op")
    with pytest.raises(CommandRefused) as exc:
        model.start_program("P121-15", "L", "op")
    assert exc.value.code == "AC_CYCLE_RUNNING"
    model.faults.inject("seal_loss", side="load")
    assert model.sensors()["load_door_gasket_ok"] is False


def test_doors_never_open_together_and_unload_only_after_pass(cfg, programs):
    model, clock = make(cfg, programs)
    # idle, cool, vented, no cycle yet: the load side may open, the clean side may not
    with pytest.raises(CommandRefused) as exc:
        model.open_door("unload")
    assert exc.value.code == "AC_UNLOAD_NOT_RELEASED"
    model.open_door("load")
    wait_doors(model, clock, cfg)
    model.close_door("load")
    wait_doors(model, clock, cfg)
    model.start_program("P121-15", "LOAD-1", "op")
    run_to_phase(model, clock, AutoclavePhase.PLATEAU)
    for side in ("load", "unload"):
        with pytest.raises(CommandRefused) as exc:
            model.open_door(side)
        assert exc.value.code == "AC_PRESSURISED"
    res = run_to_end(model, clock)
    assert res.result == "PASS"
    cool_down(model, clock, cfg)
    model.open_door("unload")
    with pytest.raises(CommandRefused) as exc:  # the other door is no longer sealed
        model.open_door("load")
    assert exc.value.code == "AC_OTHER_DOOR_OPEN"
    wait_doors(model, clock, cfg)
    assert model.sensors()["unload_door_open"] is True
    with pytest.raises(CommandRefused) as exc:
        model.open_door("load")
    assert exc.value.code == "AC_OTHER_DOOR_OPEN"
    model.open_door("unload")  # idempotent while open
    model.close_door("unload")
    wait_doors(model, clock, cfg)
    # the sterile load has been taken out: the clean side stays shut until the next PASS
    assert not model.unload_released
    with pytest.raises(CommandRefused) as exc:
        model.open_door("unload")
    assert exc.value.code == "AC_UNLOAD_NOT_RELEASED"


def test_opening_the_load_side_revokes_the_release(cfg, programs):
    model, clock = make(cfg, programs)
    model.start_program("P134-3", "LOAD-2", "op")
    run_to_end(model, clock)
    cool_down(model, clock, cfg)
    assert model.unload_released
    model.open_door("load")
    wait_doors(model, clock, cfg)
    model.close_door("load")
    wait_doors(model, clock, cfg)
    with pytest.raises(CommandRefused) as exc:
        model.open_door("unload")
    assert exc.value.code == "AC_UNLOAD_NOT_RELEASED"


def test_after_fail_only_load_side_unless_logged_override(cfg, programs):
    model, clock = make(cfg, programs)
    model.start_program("P121-15", "LOAD-3", "op")
    run_to_phase(model, clock, AutoclavePhase.PLATEAU)
    model.faults.inject("steam_failure")
    run_to_end(model, clock)
    model.faults.clear()
    with pytest.raises(CommandRefused) as exc:  # vented but still hot
        model.open_door("load")
    assert exc.value.code == "AC_HOT"
    cool_down(model, clock, cfg)
    with pytest.raises(CommandRefused) as exc:
        model.open_door("unload")
    assert exc.value.code == "AC_UNLOAD_NOT_RELEASED" and "not successful" in exc.value.reason
    with pytest.raises(InvalidCommand):
        model.override_unload("qa.carol", "")
    assert model.override_log == []
    clock.advance(5.0)
    model.override_unload("qa.carol", "deviation DEV-7: load to be destroyed inside isolator")
    entry = model.override_log[-1]
    assert entry["user"] == "qa.carol" and "DEV-7" in entry["reason"] and entry["time"] == clock.now()
    assert entry["last_result"] == "FAIL"
    model.open_door("unload")
    wait_doors(model, clock, cfg)
    model.close_door("unload")
    wait_doors(model, clock, cfg)
    with pytest.raises(CommandRefused):  # the override was used up
        model.open_door("unload")
    model.open_door("load")  # the load side is always allowed when safe


def test_test_cycle_pass_does_not_release_unload(cfg, programs):
    model, clock = make(cfg, programs)
    model.start_program("LEAK-TEST", "EMPTY", "op")
    res = run_to_end(model, clock)
    assert res.result == "PASS" and not res.releases_load
    with pytest.raises(CommandRefused) as exc:
        model.open_door("unload")
    assert "test cycle" in exc.value.reason
    model.open_door("load")


# --------------------------------------------------------------------------- bad arguments
def test_invalid_commands_change_nothing(cfg, programs):
    model, clock = make(cfg, programs)
    with pytest.raises(InvalidCommand):
        model.start_program("P999", "L", "op")
    bad = programs.get("P121-15")
    bad = bad.model_copy(update={"plateau": bad.plateau.model_copy(update={"setpoint_c": math.nan})})
    with pytest.raises(InvalidCommand):
        model.start_program(bad, "L", "op")
    with pytest.raises(InvalidCommand):
        model.start_program("P121-15", "", "op")
    with pytest.raises(InvalidCommand):
        model.open_door("side")
    with pytest.raises(InvalidCommand):
        model.step(math.nan)
    with pytest.raises(InvalidCommand):
        model.faults.inject("gremlins")
    assert model.phase == AutoclavePhase.IDLE and model.last_result is None
    assert all(d.state == DoorState.SEALED for d in model.doors.values())


def test_sensors_and_status(cfg, programs):
    model, clock = make(cfg, programs)
    s = model.sensors()
    for key in (
        "chamber_t_c",
        "chamber_t_mon_c",
        "chamber_p_kpa",
        "load_t_c",
        "f0_min",
        "phase",
        "load_door_closed",
        "unload_door_gasket_ok",
        "steam_supply_ok",
    ):
        assert key in s
    assert s["chamber_p_kpa"] == pytest.approx(ATM)
    assert model.status()["state"] == "IDLE"
    model.faults.inject("sensor:chamber_p_kpa", mode="nan")
    assert math.isnan(model.sensors()["chamber_p_kpa"])
    with pytest.raises(CommandRefused):
        model.faults.inject("e_stop") or model.close_door("load") or model.open_door("load")


def test_bad_fault_parameters_rejected(cfg, programs):
    model, clock = make(cfg, programs)
    for name, params in (
        ("leak", {"rate": math.nan}),
        ("steam_ncg", {"fraction": -0.1}),
        ("seal_loss", {"side": "roof"}),
        ("sensor:load_t_c", {"mode": "drift", "rate": math.nan}),
    ):
        with pytest.raises(InvalidCommand):
            model.faults.inject(name, **params)
    assert model.faults.names() == []
