"""Process alarms declared in alarms.yaml and evaluated generically (issue 13 items 11, 12, 19).

* ISO1_DP_LOW rides through a door cycle (the ΔP dip is shorter than the configured alarm
  delay) and fires when ΔP stays low longer than the delay; it returns to normal after the
  off-delay beyond the deadband; ``isolator.dp_in_band`` is the undelayed permissive;
* every alarm of the database is raised by the code path that owns it (its ``raised_by``),
  through that path; nothing raises an id outside the database.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import py_trees
import pytest

from aseptic_cell.alarms import UnknownAlarmError, load_alarms_file
from aseptic_cell.config import default_config_dir, load_config
from aseptic_cell.supervisor.process_alarms import AlarmConfigError, ProcessAlarms
from aseptic_cell.supervisor.runner import InProcessRun

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "tests" / "assets" / "em-short-recipe.yaml"


@pytest.fixture(autouse=True)
def _clean_blackboard():
    yield
    py_trees.blackboard.Blackboard.clear()


@pytest.fixture(scope="module")
def cfg():
    return load_config(default_config_dir())


def _state(run, aid: str) -> str:
    return run.sup.alarms.state(aid).value


def _door_cycle(run, door: str) -> None:
    for cmd in ("open_door", "close_door"):
        ok, code, why, _ = run.cell.execute("isolator", cmd, {"door": door}, user="op1", reason="test")
        assert ok, (cmd, code, why)
        run.advance(8.0)


# --------------------------------------------------------------------------- items 12 and 19
def test_dp_low_rides_through_door_cycles_and_fires_after_its_delay(cfg):
    p = cfg.layout.isolator.pressure
    run = InProcessRun(cfg, tick_s=0.5)
    dips = []
    run.hooks.append(lambda r: dips.append((r.sup.signal("isolator.dp_pa"), r.sup.signal("isolator.dp_in_band"))))
    run.advance(20.0)
    for _ in range(3):
        _door_cycle(run, "A")
        run.advance(12.0)  # dwell
    low = [d for d in dips if d[0] is not None and d[0] < p.alarm_low_pa]
    assert low, "the door cycles dip ΔP below alarm_low (the transient the delay rides through)"
    assert all(in_band is False for _dp, in_band in low)  # the permissive has no delay (item 19)
    assert _state(run, "ISO1_DP_LOW") == "NORMAL"
    assert not [a for a in run.sup.alarm_log if a.get("alarm") == "ISO1_DP_LOW"]
    # a leak that keeps ΔP low: raised once the delay has passed, not before
    run.cell.inject_fault("ISO1", "leak")
    assert run.run_until(lambda: (run.sup.signal("isolator.dp_pa") or 99) < p.alarm_low_pa, 120.0)
    t_low = run.now()
    assert run.run_until(lambda: _state(run, "ISO1_DP_LOW") != "NORMAL", 60.0)
    assert p.alarm_delay_s - 0.5 <= run.now() - t_low <= p.alarm_delay_s + 1.0
    # back in band: returns to normal only after the off-delay, beyond the deadband
    run.cell.clear_fault("ISO1", "leak")
    assert run.run_until(lambda: (run.sup.signal("isolator.dp_pa") or 0) > p.alarm_low_pa + 2.0, 120.0)
    t_ok = run.now()
    assert run.run_until(lambda: _state(run, "ISO1_DP_LOW") in ("RTN_UNACK", "NORMAL"), 60.0)
    assert run.now() - t_ok >= 5.0 - 0.5


def test_conditions_resolve_their_limits_from_the_configuration(cfg):
    pa = InProcessRun(cfg).sup.process_alarms
    c = pa._conds["ISO1_DP_LOW"]
    assert c.on_delay_s == cfg.layout.isolator.pressure.alarm_delay_s
    assert list(c.limits.values()) == [cfg.layout.isolator.pressure.alarm_low_pa]
    due = pa._conds["ISO1_GLOVE_TEST_DUE"]
    assert list(due.limits.values()) == [cfg.interlocks.parameters["glove_campaign_window_h"] - 12.0]
    assert len(due.bindings) == len(cfg.layout.isolator.glove_ports)
    bad = cfg.alarms.model_copy(deep=True)
    d = next(a for a in bad.alarms if a.id == "ISO1_DP_LOW")
    assert d.condition is not None
    d.condition.limit = "cfg:layout.isolator.pressure.no_such_value"
    alarms = pa.alarms.__class__(bad, pa.alarms._clock)
    with pytest.raises(AlarmConfigError, match="ISO1_DP_LOW.*no_such_value"):
        ProcessAlarms(dataclasses.replace(cfg, alarms=bad), alarms, lambda _n: None, lambda *a: None)


# --------------------------------------------------------------------------- item 11
def _raise_by_condition(run, aid: str) -> None:
    """Drive the process (faults, commands) until the condition alarm ``aid`` is raised."""
    cell, sim = run.cell, run.cell.sim
    if aid == "ISO1_DP_LOW":
        cell.inject_fault("ISO1", "leak")
    elif aid == "ISO1_DP_HIGH":
        cell.inject_fault("ISO1", "sensor:dp_pa", mode="offset", offset=60.0)
    elif aid in ("ISO1_PART_05_ALERT", "ISO1_PART_05_ACTION", "ISO1_PART_50_ALERT", "ISO1_PART_50_ACTION"):
        cell.inject_fault("ISO1", "particle_source", **{"0_5_per_m3": 30_000.0})
    elif aid == "ISO1_PART_SAMPLE_FLOW":
        cell.inject_fault("ISO1", "particle_monitor_failure")
    elif aid == "ISO1_AIRFLOW_BAND":
        cell.inject_fault("ISO1", "fan_failure")
    elif aid == "ISO1_GLOVE_TEST_FAIL":
        # the isolator's controller reports a FAIL (the glove model itself: tests/unit/test_isolator.py)
        cell.inject_fault("ISO1", "sensor:glove.GP1.last_test", mode="stuck", value="FAIL")
    elif aid == "ISO1_GLOVE_TEST_DUE":
        # the last PASS of GP2 was 70 h ago (window 72 h, due 12 h before)
        cell.inject_fault("ISO1", "sensor:glove.GP2.last_test_time", mode="stuck", value=run.now() - 70 * 3600.0)
    elif aid == "ISO1_HATCH_SEAL_LOSS":
        cell.inject_fault("ISO1", "seal_loss", door="A")
    elif aid == "ISO1_H2O2_ABOVE_RELEASE":
        sim.isolator.air.h2o2_ppm = 5.0
    elif aid == "ARM1_PROTECTIVE_STOP":
        ok, code, why, _ = cell.execute("arm", "protective_stop", {"reason": "test"}, user="op1")
        assert ok, (code, why)
    elif aid in ("INC1_TEMP_BAND", "INC1_CO2_BAND", "INC1_RH_LOW", "INC1_DOOR_OPEN_LONG"):  # process equipment
        sensor, params = {"INC1_TEMP_BAND": ("temp_c", {"mode": "offset", "offset": 3.0}),
                          "INC1_CO2_BAND": ("co2_pct", {"mode": "offset", "offset": -2.0}),
                          "INC1_RH_LOW": ("rh_pct", {"mode": "offset", "offset": -20.0}),
                          "INC1_DOOR_OPEN_LONG": ("door_open", {"mode": "stuck", "value": True})}[aid]
        cell.inject_fault("INC1", f"sensor:{sensor}", **params)
    elif aid == "CFG1_IMBALANCE":
        cell.inject_fault("CFG1", "imbalance", extra_g=20.0)
        ok, code, why, _ = cell.execute("centrifuge", "run", {"program": "pellet", "container_id": "C1",
                                                              "load_g": 100.0, "counterweight_g": 100.0}, user="op1")
        assert ok, (code, why)
    else:
        raise AssertionError(f"no way to raise {aid} in this test: add one")
    assert run.run_until(lambda: _state(run, aid) != "NORMAL", 900.0), aid


@pytest.mark.parametrize("alarm_id", [a.id for a in load_alarms_file(REPO / "config" / "alarms.yaml").alarms])
def test_every_alarm_is_raised_by_the_code_path_that_owns_it(cfg, alarm_id):
    d = next(a for a in cfg.alarms.alarms if a.id == alarm_id)
    if alarm_id == "CELL_BYPASS_ACTIVE":  # its owner: the bypass register (supervisor/bypass.py)
        run = InProcessRun(cfg, tick_s=1.0)
        run.advance(5.0)
        assert _state(run, alarm_id) == "NORMAL"
        sup, reason = run.sup, "fixed counter under repair; portable counter sampling at the same point"
        out = sup.batch_command("bypass.request IL-12 600", "sup1", reason=reason,
                                password="sup1-demo-2026", meaning="responsibility")
        assert out.accepted, out.reason
        assert sup.batch_command(f"bypass.approve {out.payload['bypass']}", "qa1", reason="checked",
                                 password="qa1-demo-2026", meaning="approval").accepted
        assert run.run_until(lambda: _state(run, alarm_id) != "NORMAL", 30.0), alarm_id
        return
    if d.raised_by == "lifecycle_manager":
        # raised by the ROS lifecycle manager on /cell/alarms: tests/ros/test_lifecycle_manager.py
        src = (REPO / "aseptic_cell" / "nodes" / "lifecycle_manager.py").read_text()
        assert f'"{alarm_id}"' in src
        return
    run = InProcessRun(cfg, tick_s=1.0)
    run.advance(5.0)
    assert _state(run, alarm_id) == "NORMAL"
    if d.raised_by == "condition":
        _raise_by_condition(run, alarm_id)
    elif d.raised_by == "cycle_result":
        assert d.cycle is not None
        code = d.cycle.codes[0] if d.cycle.codes else "E_STOP"
        run.sup.publish_result(d.cycle.result, {"result": "FAIL", "run_id": "R1", "reasons": [f"{code} test"],
                                                "alarms": [{"time": run.now(), "code": code, "text": "test"}]})
    elif d.raised_by == "comm_loss":
        node = next(n for n, dev in run.cell.node_devices.items() if dev == d.device)
        run.cell.comm_lost.add(node)
        run.advance(2.0)
    elif d.raised_by == "stale_data":
        frozen = run.sup.signals.get("isolator.dp_pa")
        orig = run.cell.refresh

        def refresh(table):
            orig(table)
            table.remove("isolator.dp_pa")  # the device stops updating this one signal
            table.update("isolator.dp_pa", frozen.value, frozen.t, frozen.source)

        run.cell.refresh = refresh
        run.advance(5.0)
    elif d.raised_by == "interlock_trip":
        run.sup.process_alarms.raise_("CELL_INTERLOCK_TRIP", "test")  # trips.py / Supervisor.hold call this
        assert "CELL_INTERLOCK_TRIP" in (REPO / "aseptic_cell" / "supervisor" / "trips.py").read_text()
    elif d.raised_by in ("supervisor_recovery", "record_fault"):
        src = "\n".join(p.read_text() for p in (REPO / "aseptic_cell" / "supervisor").glob("*.py"))
        assert f'process_alarms.raise_("{alarm_id}"' in src
        run.sup.process_alarms.raise_(alarm_id, "test")
    assert _state(run, alarm_id) != "NORMAL", (alarm_id, d.raised_by)


def test_nothing_raises_an_alarm_id_outside_the_database(cfg):
    ids = {a.id for a in cfg.alarms.alarms}
    src = "\n".join(p.read_text() for p in (REPO / "aseptic_cell").rglob("*.py"))
    literal = set(re.findall(r'raise_\(\s*"([A-Z0-9_]+)"', src)) | set(re.findall(r'_alarm\(\s*"([A-Z0-9_]+)"', src))
    assert literal <= ids, literal - ids
    assert not re.search(r'f"(NODE_LOST_|NODE_START_FAILED_|COMM_LOSS_)', src)  # the old ids built on the fly
    run = InProcessRun(cfg)
    with pytest.raises(UnknownAlarmError):
        run.sup.alarms.raise_("NODE_LOST_isolator")
