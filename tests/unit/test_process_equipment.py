"""Process equipment (issue 14 item 1): each unit's commands through the one command path of
the in-process cell (catalogue → latch → the unit's hard interlock → its simulated controller),
the hard interlocks tried from both layers (the device layer's check, and the controller's own
when the device layer is bypassed), the faults, the signals, and the results."""

from __future__ import annotations

import pytest
from aseptic_cell.sim.common import CommandRefused

from aseptic_cell.coi import decode_label, encode_label, make_din, parse_din
from aseptic_cell.coi.isbt128 import IdentifierError
from aseptic_cell.config import default_config_dir, load_config
from aseptic_cell.devices.codes import RefusalCode
from aseptic_cell.devices.signals import signals_from_readings
from aseptic_cell.supervisor.port import InProcessCell

COI_A, COI_B = "COI-AAAA01", "COI-BBBB02"


@pytest.fixture(scope="module")
def cfg():
    c = load_config(default_config_dir())
    assert c.layout.process_equipment.enabled
    return c


@pytest.fixture
def cell(cfg):
    return InProcessCell(cfg, check_mode="samples")


def run(cell, node, name, args=None):
    return cell.execute(node, name, dict(args or {}), user="op1", reason="test")


def ok(cell, node, name, args=None):
    accepted, code, why, payload = run(cell, node, name, args)
    assert accepted, (node, name, code, why)
    return payload


def refused(cell, node, name, args, code):
    accepted, got, why, _ = run(cell, node, name, args)
    assert not accepted and got == code, (node, name, got, why)
    return why


def sig(cell, node):
    return signals_from_readings(node, cell.sensors(node), cell.cfg)


# --------------------------------------------------------------------------- registration
def test_in_process_cell_hosts_the_process_equipment(cell):
    assert {n: cell.node_devices[n] for n in ("incubator", "welder", "sealer", "centrifuge", "counter", "scanner")} == {
        "incubator": "INC1", "welder": "WLD1", "sealer": "SEAL1", "centrifuge": "CFG1", "counter": "CNT1",
        "scanner": "SCN1"}
    from aseptic_cell.interlocks import SignalTable

    table = SignalTable()
    cell.refresh(table)
    assert table.get("incubator.in_spec").value is True
    assert table.get("incubator.slot.16.coi").value == ""
    assert table.get("welder.busy").value is False
    assert table.get("scanner.rtp.occupied").value is False


# --------------------------------------------------------------------------- incubator
def test_incubator_slot_lifecycle_and_signals(cell):
    ok(cell, "incubator", "assign_slot", {"slot": 3, "batch_id": "B1", "coi": COI_A})
    out = ok(cell, "incubator", "load", {"slot": 3, "container_id": "C1", "coi": COI_A})
    assert out == {"slot": 3, "door_event": 1}
    s = sig(cell, "incubator")
    assert (s["incubator.slot.3.batch_id"], s["incubator.slot.3.coi"], s["incubator.slot.3.container_id"]) == (
        "B1", COI_A, "C1")
    assert s["incubator.slots_free"] == 15
    assert s["incubator.door_open"] is True and s["incubator.door_events"] == 1.0
    refused(cell, "incubator", "release_slot", {"slot": 3}, RefusalCode.INC_SLOT_OCCUPIED)
    ok(cell, "incubator", "unload", {"slot": 3, "container_id": "C1"})
    ok(cell, "incubator", "release_slot", {"slot": 3})
    s = sig(cell, "incubator")
    assert s["incubator.slot.3.coi"] == "" and s["incubator.slots_free"] == 16


def test_incubator_refuses_a_container_of_another_coi_in_both_layers(cell):
    ok(cell, "incubator", "assign_slot", {"slot": 1, "batch_id": "B1", "coi": COI_A})
    why = refused(cell, "incubator", "load", {"slot": 1, "container_id": "C9", "coi": COI_B},
                  RefusalCode.INC_COI_MISMATCH)
    assert COI_A in why and COI_B in why
    assert sig(cell, "incubator")["incubator.slot.1.container_id"] == ""  # nothing changed
    assert cell.sim.process["incubator"].door_events == 0  # the door never opened
    # the controller's own interlock, with the device layer bypassed (defence in depth)
    with pytest.raises(CommandRefused) as exc:
        cell.sim.command("INC1", "load", {"slot": 1, "container_id": "C9", "coi": COI_B})
    assert exc.value.code == RefusalCode.INC_COI_MISMATCH
    # another batch cannot take an assigned slot; the owner may re-assert it (idempotent)
    refused(cell, "incubator", "assign_slot", {"slot": 1, "batch_id": "B2", "coi": COI_B},
            RefusalCode.INC_SLOT_ASSIGNED)
    refused(cell, "incubator", "assign_slot", {"slot": 1, "batch_id": "B2", "coi": COI_A},
            RefusalCode.INC_SLOT_ASSIGNED)  # same COI, another batch: still one batch per slot
    ok(cell, "incubator", "assign_slot", {"slot": 1, "batch_id": "B1", "coi": COI_A})
    with pytest.raises(CommandRefused) as exc:
        cell.sim.command("INC1", "assign_slot", {"slot": 1, "batch_id": "B2", "coi": COI_B})
    assert exc.value.code == RefusalCode.INC_SLOT_ASSIGNED


@pytest.mark.parametrize(("name", "args", "code"), [
    ("load", {"slot": 2, "container_id": "C1", "coi": COI_A}, "INC_SLOT_NOT_ASSIGNED"),
    ("load", {"slot": 0, "container_id": "C1", "coi": COI_A}, "INC_SLOT_INVALID"),
    ("load", {"slot": 17, "container_id": "C1", "coi": COI_A}, "INC_SLOT_INVALID"),
    ("assign_slot", {"slot": 1.5, "batch_id": "B1", "coi": COI_A}, "INC_SLOT_INVALID"),
    ("unload", {"slot": 2, "container_id": "C1"}, "INC_CONTAINER_NOT_IN_SLOT"),
    ("load", {"slot": "2", "container_id": "C1", "coi": COI_A}, "INVALID"),
    ("load", {"slot": float("nan"), "container_id": "C1", "coi": COI_A}, "INVALID"),
    ("load", {"slot": 2, "container_id": "", "coi": COI_A}, "INVALID"),
])
def test_incubator_bad_slot_commands_are_refused_and_change_nothing(cell, name, args, code):
    before = dict(cell.sensors("incubator"))
    refused(cell, "incubator", name, args, code)
    cell.invalidate()
    assert cell.sensors("incubator") == before


def test_incubator_second_container_and_lost_register(cell):
    ok(cell, "incubator", "assign_slot", {"slot": 5, "batch_id": "B1", "coi": COI_A})
    ok(cell, "incubator", "load", {"slot": 5, "container_id": "C1", "coi": COI_A})
    refused(cell, "incubator", "load", {"slot": 5, "container_id": "C2", "coi": COI_A}, RefusalCode.INC_SLOT_OCCUPIED)
    cell.inject_fault("INC1", "slot_register_lost")
    s = sig(cell, "incubator")
    assert s["incubator.slot.5.coi"] is None and s["incubator.slots_free"] is None  # unknown, never "free"
    refused(cell, "incubator", "unload", {"slot": 5, "container_id": "C1"}, RefusalCode.INC_SLOT_UNKNOWN)
    with pytest.raises(CommandRefused) as exc:
        cell.sim.command("INC1", "unload", {"slot": 5, "container_id": "C1"})
    assert exc.value.code == RefusalCode.INC_SLOT_UNKNOWN


def test_incubator_door_opening_disturbs_and_recovers(cell):
    c = cell.cfg.layout.process_equipment.incubator
    ok(cell, "incubator", "assign_slot", {"slot": 1, "batch_id": "B1", "coi": COI_A})
    ok(cell, "incubator", "load", {"slot": 1, "container_id": "C1", "coi": COI_A})
    cell.step(c.door_access_s)
    s = sig(cell, "incubator")
    assert s["incubator.co2_pct"] < c.co2_alarm_low_pct and s["incubator.in_spec"] is False  # door open 30 s
    cell.step(1.0)
    assert sig(cell, "incubator")["incubator.door_open"] is False
    cell.step(c.rh_recovery_s)  # the configured recovery time (95 %): back in spec before the alarm delay
    s = sig(cell, "incubator")
    assert s["incubator.in_spec"] is True
    assert c.rh_recovery_s < c.alarm_delay_s
    ev = cell.sim.process["incubator"].events
    assert len(ev) == 1 and ev[0]["slot"] == 1 and ev[0]["end"] is not None


def test_incubator_heater_runaway_trips_the_overtemperature_cutout(cell):
    c = cell.cfg.layout.process_equipment.incubator
    cell.inject_fault("INC1", "heater_runaway")
    for _ in range(40):
        cell.step(60.0)
        if sig(cell, "incubator")["incubator.overtemp_cutout"]:
            break
    s = sig(cell, "incubator")
    assert s["incubator.overtemp_cutout"] is True and s["incubator.in_spec"] is False
    assert s["incubator.temp_c"] >= c.overtemp_cutout_c - 0.5
    t_trip = s["incubator.temp_c"]
    cell.step(600.0)
    assert sig(cell, "incubator")["incubator.temp_c"] < t_trip  # heater cut: it cools


def test_incubator_safe_state_latches_door_access(cell):
    ok(cell, "incubator", "assign_slot", {"slot": 1, "batch_id": "B1", "coi": COI_A})
    ok(cell, "incubator", "safe_state", {"reason": "test"})
    refused(cell, "incubator", "load", {"slot": 1, "container_id": "C1", "coi": COI_A}, RefusalCode.LATCHED)
    assert cell.recover("incubator", user="op1", reason="checked").accepted
    ok(cell, "incubator", "load", {"slot": 1, "container_id": "C1", "coi": COI_A})


# --------------------------------------------------------------------------- welder / sealer
def test_weld_of_two_cois_is_refused_in_both_layers(cell):
    args = {"container_a": "C1", "coi_a": COI_A, "container_b": "C2", "coi_b": COI_B}
    why = refused(cell, "welder", "weld", args, RefusalCode.WELD_COI_MISMATCH)
    assert "SEG-03" in why
    assert sig(cell, "welder")["welder.busy"] is False
    with pytest.raises(CommandRefused) as exc:
        cell.sim.command("WLD1", "weld", args)
    assert exc.value.code == RefusalCode.WELD_COI_MISMATCH
    assert cell.sim.process["welder"].run_id == ""  # never started
    refused(cell, "welder", "weld", {**args, "coi_b": COI_A, "container_b": "C1"}, RefusalCode.INVALID)


def test_weld_result_and_misalignment_fault(cell):
    args = {"container_a": "C1", "coi_a": COI_A, "container_b": "C2", "coi_b": COI_A}
    rid = ok(cell, "welder", "weld", args)["run_id"]
    assert sig(cell, "welder")["welder.busy"] is True
    refused(cell, "welder", "weld", args, RefusalCode.WELDER_BUSY)
    cell.step(cell.cfg.layout.process_equipment.welder.weld_time_s + 1.0)
    s = sig(cell, "welder")
    assert s["welder.busy"] is False and s["welder.last_result"] == "PASS" and s["welder.last_score"] >= 0.8
    rep = ok(cell, "welder", "get_result")["result"]
    assert rep["run_id"] == rid and rep["result"] == "PASS" and rep["coi"] == COI_A
    cell.inject_fault("WLD1", "misalignment")
    assert sig(cell, "welder")["welder.misaligned"] is True
    ok(cell, "welder", "weld", args)
    cell.step(31.0)
    rep = ok(cell, "welder", "get_result")["result"]
    assert rep["result"] == "FAIL" and rep["score"] < 0.8 and "misalignment" in rep["reasons"][0]
    assert rep["alarms"][0]["code"] == "WELD_MISALIGNED"


def test_seal_result_fault_and_safe_state(cell):
    ok(cell, "sealer", "seal", {"container_id": "C1"})
    cell.step(6.0)
    assert ok(cell, "sealer", "get_result")["result"]["result"] == "PASS"
    cell.inject_fault("SEAL1", "heater_failure")
    ok(cell, "sealer", "seal", {"container_id": "C1"})
    cell.step(6.0)
    assert sig(cell, "sealer")["sealer.last_result"] == "FAIL"
    cell.clear_fault("SEAL1")
    ok(cell, "sealer", "seal", {"container_id": "C2"})
    ok(cell, "sealer", "safe_state", {"reason": "trip"})
    rep = ok(cell, "sealer", "get_result")["result"]
    assert rep["result"] == "FAIL" and "safe state" in rep["reasons"][0]
    refused(cell, "sealer", "seal", {"container_id": "C2"}, RefusalCode.LATCHED)  # no auto-resume


# --------------------------------------------------------------------------- centrifuge
def test_centrifuge_refuses_a_declared_imbalance_in_both_layers(cell):
    tol = cell.cfg.layout.process_equipment.centrifuge.imbalance_tolerance_g
    args = {"program": "cell_wash", "container_id": "C1", "load_g": 100.0, "counterweight_g": 100.0 + tol + 0.5}
    refused(cell, "centrifuge", "run", args, RefusalCode.CFG_IMBALANCE)
    with pytest.raises(CommandRefused) as exc:
        cell.sim.command("CFG1", "run", args)
    assert exc.value.code == RefusalCode.CFG_IMBALANCE
    refused(cell, "centrifuge", "run", {**args, "counterweight_g": 100.0, "program": "nope"}, RefusalCode.INVALID)
    refused(cell, "centrifuge", "run", {**args, "load_g": -1.0, "counterweight_g": -1.0}, RefusalCode.INVALID)
    assert sig(cell, "centrifuge")["centrifuge.busy"] is False


def test_centrifuge_program_runs_and_imbalance_fault_stops_it(cell):
    p = cell.cfg.layout.process_equipment.centrifuge.program("pellet")
    args = {"program": "pellet", "container_id": "C1", "load_g": 100.0, "counterweight_g": 102.0}
    ok(cell, "centrifuge", "run", args)
    cell.step(p.accel_s + 10.0)
    s = sig(cell, "centrifuge")
    assert s["centrifuge.rcf_g"] == pytest.approx(p.rcf_g) and s["centrifuge.lid_locked"] is True
    refused(cell, "centrifuge", "run", args, RefusalCode.CENTRIFUGE_BUSY)
    cell.step(p.duration_s + p.decel_s)
    assert ok(cell, "centrifuge", "get_result")["result"]["result"] == "PASS"
    cell.inject_fault("CFG1", "imbalance", extra_g=10.0)
    ok(cell, "centrifuge", "run", args)
    cell.step(5.0)
    s = sig(cell, "centrifuge")
    assert s["centrifuge.imbalance"] is True and s["centrifuge.phase"] in ("DECEL", "FAILED")
    cell.step(p.decel_s)
    rep = ok(cell, "centrifuge", "get_result")["result"]
    assert rep["result"] == "FAIL" and "imbalance" in rep["reasons"][0] and rep["end"] - rep["start"] < p.accel_s
    assert sig(cell, "centrifuge")["centrifuge.rcf_g"] == 0.0


# --------------------------------------------------------------------------- counter
def test_counter_result_is_plausible_and_reproducible(cell):
    ok(cell, "counter", "count", {"sample_id": "S-001"})
    refused(cell, "counter", "count", {"sample_id": "S-002"}, RefusalCode.COUNTER_BUSY)
    cell.step(cell.cfg.layout.process_equipment.counter.count_time_s)
    rep = ok(cell, "counter", "get_result")["result"]
    assert rep["result"] == "PASS" and 1e4 < rep["viable_per_ml"] < 1e8 and 50.0 < rep["viability_pct"] < 100.0
    assert rep["total_per_ml"] >= rep["viable_per_ml"]
    s = sig(cell, "counter")
    assert s["counter.last_viable_per_ml"] == rep["viable_per_ml"]
    other = InProcessCell(cell.cfg, check_mode="samples")  # the same sample reads the same again
    assert other.sim.process["counter"].sample_values("S-001") == (rep["viable_per_ml"], rep["viability_pct"])
    vals = [other.sim.process["counter"].sample_values(f"S-{i}")[1] for i in range(200)]
    assert 85.0 < sum(vals) / len(vals) < 95.0  # the configured distribution (mean 90 %)
    cell.inject_fault("CNT1", "clog")
    ok(cell, "counter", "count", {"sample_id": "S-003"})
    cell.step(200.0)
    rep = ok(cell, "counter", "get_result")["result"]
    assert rep["result"] == "FAIL" and "viable_per_ml" not in rep


# --------------------------------------------------------------------------- scanner
def _label(coi: str = COI_A, cid: str = "C1") -> str:
    return encode_label(coi, cid, str(make_din("G1234", "26", "000123")))


def test_scan_reads_what_stands_at_the_station(cell):
    out = ok(cell, "scanner", "scan", {"station": "welder"})
    assert out["read_failed"] is True and out["payload"] is None  # nothing there
    ok(cell, "scanner", "place", {"station": "welder", "container_id": "C1", "label": _label()})
    out = ok(cell, "scanner", "scan", {"station": "welder"})
    assert out["payload"] == _label() and out["symbology_ok"] and out["reader_id"] == "SCN1-welder"
    lab = decode_label(out["payload"])
    assert (lab.coi, lab.container_id) == (COI_A, "C1") and parse_din(lab.din).checked
    s = sig(cell, "scanner")
    assert s["scanner.welder.occupied"] is True and s["scanner.welder.last_status"] == "OK"
    refused(cell, "scanner", "place", {"station": "welder", "container_id": "C2", "label": _label(cid="C2")},
            RefusalCode.SCAN_STATION_OCCUPIED)
    refused(cell, "scanner", "scan", {"station": "freezer"}, RefusalCode.INVALID)
    ok(cell, "scanner", "remove", {"station": "welder"})
    assert sig(cell, "scanner")["scanner.welder.occupied"] is False


def test_scanner_faults_misread_no_read_swap(cell):
    for st in cell.cfg.layout.process_equipment.scanner.stations:
        ok(cell, "scanner", "place", {"station": st, "container_id": "C1", "label": _label()})
    cell.inject_fault("SCN1", "misread", station="sealer")
    out = ok(cell, "scanner", "scan", {"station": "sealer"})
    assert out["payload"] != _label() and out["symbology_ok"]
    with pytest.raises(IdentifierError):  # the garbled DIN fails its ISO 7064 Mod 37-2 check
        parse_din(decode_label(out["payload"]).din)
    assert ok(cell, "scanner", "scan", {"station": "rtp"})["payload"] == _label()  # other stations read fine
    no_din = encode_label(COI_A, "C7")
    ok(cell, "scanner", "remove", {"station": "sealer"})
    ok(cell, "scanner", "place", {"station": "sealer", "container_id": "C7", "label": no_din})
    out = ok(cell, "scanner", "scan", {"station": "sealer"})
    assert out["payload"] != no_din and out["symbology_ok"] is False
    cell.inject_fault("SCN1", "no_read", station="counter")
    out = ok(cell, "scanner", "scan", {"station": "counter"})
    assert out["read_failed"] is True and out["payload"] is None
    assert sig(cell, "scanner")["scanner.counter.last_status"] == "NO_READ"
    other = _label(COI_B, "X9")
    cell.inject_fault("SCN1", "swap", station="incubator", container_id="X9", label=other)
    cell.step(0.5)
    out = ok(cell, "scanner", "scan", {"station": "incubator"})
    assert decode_label(out["payload"]).coi == COI_B  # a bag of another COI stands there
    assert cell.sim.process["scanner"].truth["incubator"] == ("X9", other)


# --------------------------------------------------------------------------- through the supervisor
@pytest.fixture
def clean_blackboard():
    import py_trees

    py_trees.blackboard.Blackboard.clear()
    yield
    py_trees.blackboard.Blackboard.clear()


def test_supervisor_sees_the_equipment_and_its_excursion_alarm_waits_for_the_delay(cfg, clean_blackboard):
    """InProcessRun (the supervisor over InProcessCell): the signals reach its table, a heater
    failure raises INC1_TEMP_BAND only after the configured alarm delay, a door opening of
    one access recovers without an alarm, and a lost unit raises its COMM_LOSS alarm."""
    from aseptic_cell.supervisor.runner import InProcessRun

    c = cfg.layout.process_equipment.incubator
    run = InProcessRun(cfg, tick_s=5.0)
    run.advance(10.0)
    state = lambda aid: run.sup.alarms.state(aid).value  # noqa: E731
    assert run.sup.signals.get("incubator.in_spec").value is True
    # a supervisor-sent command takes the same path (the record sees it)
    h = run.sup.send("incubator", "assign_slot", {"slot": 1, "batch_id": "B1", "coi": COI_A}, user="op1")
    assert h.accepted, h.reason
    h = run.sup.send("incubator", "load", {"slot": 1, "container_id": "C1", "coi": COI_A}, user="op1")
    assert h.accepted, h.reason
    run.advance(c.alarm_delay_s + 60.0)  # door opening: out of spec for a while, recovered before the delay
    assert state("INC1_CO2_BAND") == "NORMAL" and state("INC1_RH_LOW") == "NORMAL"
    assert run.sup.signals.get("incubator.slot.1.container_id").value == "C1"
    run.cell.inject_fault("INC1", "heater_failure")
    assert run.run_until(lambda: run.sup.signals.get("incubator.in_spec").value is False, 3600.0)
    t_out = run.now()
    assert run.run_until(lambda: state("INC1_TEMP_BAND") != "NORMAL", 3600.0)
    assert run.now() - t_out >= c.alarm_delay_s - 5.0  # not before its on-delay (one tick of slack)
    run.cell.comm_lost.add("welder")
    run.advance(5.0)
    assert state("WLD1_COMM_LOSS") != "NORMAL"
