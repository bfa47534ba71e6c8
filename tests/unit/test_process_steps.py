"""The patient process drives the real process equipment and reads with the scanner device (issue 14),
in-process on sim time: each phase commands the welder, centrifuge, counter, sealer and incubator
through the one command path and waits on their results; every COI scan is the scanner's read
(misread, no read, swapped container); faults and refusals hold only the batch they concern."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import py_trees
import pytest

from aseptic_cell.coi import ContainerStatus, encode_label
from aseptic_cell.coi.cell import Outcome
from aseptic_cell.coi.verify import Action, Code, Verdict
from aseptic_cell.config import load_config
from aseptic_cell.config.loader import default_config_dir
from aseptic_cell.records import BatchRecord, verify_file
from aseptic_cell.supervisor.runner import InProcessRun

RECIPE = "PATIENT-CART-SHORT"
COI_A, COI_B = "COI-AAAAAA", "COI-BBBBBB"
DIN_A, DIN_B = "=G12341765432170", "A999917123456 9"
SIGN = {"password": "sup1-demo-2026", "meaning": "responsibility"}


class _Clock:
    def __init__(self) -> None:
        self.t = 1_790_000_000.0

    def now(self) -> float:
        self.t += 0.01
        return self.t


@pytest.fixture(autouse=True)
def _clean_blackboard():
    py_trees.blackboard.Blackboard.clear()
    yield


@pytest.fixture(scope="module")
def cfg():
    """The cell's configuration with a 1 min line clearance and purge (site values [M])."""
    c = load_config(default_config_dir())
    ch = c.scheduling.changeover.model_copy(update={"t_purge_min": 1, "t_line_clearance_min": 1})
    return dataclasses.replace(c, scheduling=c.scheduling.model_copy(update={"changeover": ch}))


def _run(cfg, d: Path) -> tuple[InProcessRun, list[tuple[str, str, dict, bool]]]:
    d.mkdir(parents=True, exist_ok=True)
    run = InProcessRun(cfg, tick_s=30.0, record=BatchRecord(d / "cell.db", _Clock()))
    sent: list[tuple[str, str, dict, bool]] = []
    run.cell.listeners.append(lambda node, cmd, args, ok: sent.append((node, cmd, dict(args), ok)))
    return run, sent


def _state(run: InProcessRun, b: str) -> str:
    return run.sup.patients[b].sm.state.value


def _model(run: InProcessRun, kind: str):
    return run.cell.sim.models[run.cell.node_devices[kind]]


def _custody(ex, action: str) -> list:
    return [e for e in ex.record.entries(kinds=["custody"]) if e.action == f"custody.{action}"]


@pytest.fixture(scope="module")
def one_patient(cfg, tmp_path_factory):
    run, sent = _run(cfg, tmp_path_factory.mktemp("one"))
    assert run.sup.run_batch(RECIPE, "P-A", "op1", coi=COI_A, din=DIN_A).accepted
    assert run.run_until(lambda: run.sup.patients["P-A"].sm.state.final or _state(run, "P-A") == "Held", 6 * 3600)
    return run, sent


def test_a_patient_batch_drives_the_units_and_its_record_holds_their_results(one_patient):
    """Every weld, spin, count, seal and slot access of the run went to the device through the one
    command path, and each unit's result is in the batch's own record."""
    run, sent = one_patient
    ex = run.sup.patients["P-A"]
    assert ex.sm.state.value == "Complete", ex.held_reason
    ok = Counter((n, c) for n, c, _a, accepted in sent if accepted)
    assert not [s for s in sent if not s[3]], [s for s in sent if not s[3]]  # nothing refused
    phases = ex.process.run_phases()
    welds = [p.id for p in phases if "WLD" in p.resources]
    spins = [p.id for p in phases if "CFG" in p.resources and not p.id.endswith("_setup")]
    counts = [p.id for p in phases if "CC" in p.resources]
    incubations = [p.id for p in phases if p.kind.value == "incubation"]
    assert ok[("welder", "weld")] == len(welds) == 7 and ok[("centrifuge", "run")] == len(spins) == 2
    assert ok[("counter", "count")] == len(counts) == 9 and ok[("sealer", "seal")] == 1
    assert ok[("incubator", "assign_slot")] == 1 and ok[("incubator", "release_slot")] == 1
    assert ok[("incubator", "load")] == ok[("incubator", "unload")] == len(incubations)
    # every COI scan was the scanner's read: one scan per verified read in the custody log
    scans = sum(len(e.payload.get("scan_payloads") or []) for e in ex.record.entries(kinds=["custody"]))
    assert ok[("scanner", "scan")] == ok[("scanner", "place")] == scans > 30
    # the device's results in the batch's record (its own chain, its COI on every entry)
    results = [e for e in ex.record.entries(kinds=["material"])]
    by_unit = Counter(e.payload["unit"] for e in results)
    assert by_unit == {"welder": 7, "centrifuge": 2, "counter": 9, "sealer": 1}
    count = next(e.payload for e in results if e.payload["unit"] == "counter" and e.payload["phase"] == "sample_d5")
    assert count["result"] == "PASS" and count["viable_per_ml"] > 0 and 0 < count["viability_pct"] <= 100
    assert count["sample_id"] == "S-P-A-sample_d5" and count["coi"] == COI_A
    spin = next(e.payload for e in results if e.payload["unit"] == "centrifuge")
    assert spin["program"] == "cell_wash" and spin["result"] == "PASS" and spin["rcf_g"] == 400.0
    # WELD and SEAL custody events carry the unit's quality; the slot's door events are noted
    weld = _custody(ex, "weld")
    assert len(weld) == 7 and all(w.payload["extra"]["quality"] == "PASS" and w.payload["extra"]["score"] >= 0.8
                                  for w in weld)
    assert _custody(ex, "seal")[0].payload["extra"]["run_id"].startswith("SEALER-")
    doors = [e.payload["door_event"] for e in ex.record.entries(kinds=["note"]) if e.action == "incubator.load"]
    assert len(doors) == len(incubations) and all(isinstance(d, int) and d > 0 for d in doors)
    env = ex.record.entries(kinds=["environment"])
    assert len(env) == len(incubations) and all(e.payload["excursions_over_alarm_delay"] == [] for e in env)
    assert verify_file(ex.record.path).ok
    # the slot went back to free on the incubator
    inc = _model(run, "incubator")
    assert all(not s["coi"] and not s["container_id"] for s in inc.slots)


def test_an_imbalance_fault_holds_only_the_batch_whose_spin_tripped(cfg, tmp_path):
    """The centrifuge trips on an undeclared imbalance: that batch holds (batch-local) with the
    imbalance alarm and the FAIL result in its record; the other batch runs on; nothing resumes."""
    run, _sent = _run(cfg, tmp_path)
    sup = run.sup
    assert sup.run_batch(RECIPE, "P-A", "op1", coi=COI_A, din=DIN_A).accepted
    assert sup.run_batch(RECIPE, "P-B", "op1", coi=COI_B, din=DIN_B).accepted
    run.cell.inject_fault("CFG1", "imbalance")

    def cleared(r: InProcessRun) -> None:  # the fault is on the first spin only
        if "imbalance" in _model(r, "centrifuge").faults and _model(r, "centrifuge").imbalance:
            r.cell.clear_fault("CFG1", "imbalance")

    run.hooks.append(cleared)
    assert run.run_until(lambda: any(_state(run, b) == "Held" for b in sup.patients), 4 * 3600)
    held = next(b for b in sup.patients if _state(run, b) == "Held")
    other = next(b for b in sup.patients if b != held)
    ex = sup.patients[held]
    assert "centrifuge" in ex.held_reason and "imbalance" in ex.held_reason, ex.held_reason
    assert _state(run, other) == "Running"
    fail = [e.payload for e in ex.record.entries(kinds=["material"]) if e.payload["unit"] == "centrifuge"]
    assert fail and fail[-1]["result"] == "FAIL" and fail[-1]["imbalance_g"] > 5.0
    assert any(e.payload.get("source") == "procedure" or "centrifuge" in e.reason
               for e in ex.record.entries(kinds=["trip"]))
    assert "CFG1_IMBALANCE" in {a.id for a in sup.alarms.active()}
    assert not any(run.cell.latched(n) for n in run.cell.node_devices)  # no cell-wide safe state
    done = len(sup.patients[other].phase_ends)
    run.advance(1800)
    assert _state(run, held) == "Held"  # never resumes by itself
    assert len(sup.patients[other].phase_ends) > done and _state(run, other) in ("Running", "Complete")
    # after a signed restart the spin runs again and passes (the fault was cleared)
    assert sup.batch_command("restart", "sup1", reason="load rebalanced", batch=held, **SIGN).accepted
    assert run.run_until(lambda: [e.payload["result"] for e in ex.record.entries(kinds=["material"])
                                  if e.payload["unit"] == "centrifuge"][-1] == "PASS", 3600)


def _bypass_connect_check(run: InProcessRun) -> None:
    """The supervisor's two-COI check (COI-10) says PROCEED whatever it read."""
    def proceed(end_a, end_b, *, actor):
        ids = [end_a[1].container_id, end_b[1].container_id]
        return Outcome(Verdict(Code.OK, Action.PROCEED, "COI-10", "bypassed in the test", details={"ends": ids}))

    cell = run.sup.patient_cell
    assert cell is not None
    cell.coi.check_connect = proceed  # type: ignore[method-assign]


def test_the_welder_refuses_a_weld_of_two_cois_even_with_the_supervisor_check_bypassed(cfg, tmp_path):
    """SEG-03: B's bag stands at the welder where A's weld expects A's; with the supervisor's check
    bypassed the welder gets the COIs it read and its own interlock refuses (WELD_COI_MISMATCH):
    the blades never move, the refusal is in A's record, A holds."""
    run, sent = _run(cfg, tmp_path)
    sup = run.sup
    assert sup.run_batch(RECIPE, "P-A", "op1", coi=COI_A, din=DIN_A).accepted
    _bypass_connect_check(run)
    assert sup.patient_cell is not None
    sup.patient_cell.reader.presented[("APH-P-A", "WLD")] = encode_label(COI_B, "APH-P-B")
    assert run.run_until(lambda: _state(run, "P-A") == "Held", 3600)
    ex = sup.patients["P-A"]
    assert "WELD_COI_MISMATCH" in ex.held_reason, ex.held_reason
    welds = [s for s in sent if s[:2] == ("welder", "weld")]
    assert len(welds) == 1 and not welds[0][3] and {welds[0][2]["coi_a"], welds[0][2]["coi_b"]} == {COI_A, COI_B}
    assert _model(run, "welder").run_id == ""  # no weld ever started
    refusals = [e.payload for e in ex.record.entries(kinds=["refusal"])]
    assert [(r["device"], r["command"], r["code"]) for r in refusals] == [("welder", "weld", "WELD_COI_MISMATCH")]
    assert "CELL_INTERLOCK_TRIP" in {a.id for a in sup.alarms.active()}  # the phase failure's alarm
    assert _custody(ex, "weld") == []
    run.advance(600)
    assert _state(run, "P-A") == "Held"


def _after_receipt(run: InProcessRun, b: str = "P-A") -> None:
    assert run.sup.patient_cell is not None
    g = run.sup.patient_cell.coi.genealogy
    assert run.run_until(lambda: g.get(f"APH-{b}") is not None, 1200)


def test_a_misread_is_read_again_and_the_step_proceeds(cfg, tmp_path):
    """COI-03: the RTP reader garbles the label of A's bag once (symbol check fails); the step reads
    again and proceeds: the MOVE carries the second read; the batch never holds."""
    run, _sent = _run(cfg, tmp_path)
    sup = run.sup
    assert sup.run_batch(RECIPE, "P-A", "op1", coi=COI_A, din=DIN_A).accepted
    _after_receipt(run)
    scanner = _model(run, "scanner")
    run.cell.inject_fault("SCN1", "misread", station="rtp")
    reads = scanner.reads
    assert run.run_until(lambda: scanner.reads > reads, 1200)
    assert scanner.last["rtp"][0] == "OK" and scanner.last["rtp"][1] != encode_label(COI_A, "APH-P-A")  # garbled
    run.cell.clear_fault("SCN1", "misread")
    ex = sup.patients["P-A"]
    assert run.run_until(lambda: bool(_custody(ex, "move")), 600)
    move = _custody(ex, "move")[0].payload
    assert move["scan_payloads"][0]["attempt"] == 2 and move["scan_payloads"][0]["reader_id"] == "SCN1-rtp"
    assert _state(run, "P-A") == "Running"


def test_a_label_that_never_reads_holds_the_batch_after_its_retries(cfg, tmp_path):
    """COI-03: the RTP reader reads nothing for A's bag: 1 + n_scan_retry reads, then A holds with
    a HOLD in its custody log; it does not resume by itself."""
    run, _sent = _run(cfg, tmp_path)
    sup = run.sup
    assert sup.run_batch(RECIPE, "P-A", "op1", coi=COI_A, din=DIN_A).accepted
    _after_receipt(run)
    scanner = _model(run, "scanner")
    run.cell.inject_fault("SCN1", "no_read", station="rtp")
    reads = scanner.reads
    assert run.run_until(lambda: _state(run, "P-A") == "Held", 1800)
    ex = sup.patients["P-A"]
    assert "COI-03" in ex.held_reason, ex.held_reason
    assert scanner.reads - reads == 1 + cfg.coi.n_scan_retry
    assert _custody(ex, "move") == [] and _custody(ex, "hold")
    run.advance(600)
    assert _state(run, "P-A") == "Held"


def test_a_swapped_bag_at_the_rtp_holds_both_batches_and_is_quarantined(cfg, tmp_path):
    """COI-30: at B's receipt the RTP station holds A's bag, just received (the scanner's swap fault):
    nothing is received for B, both batches hold, the bag at the RTP is quarantined there (a receipt
    read identifies no container of the cell: the RTP is the quarantine position), a deviation is
    recorded with the scanner's read; no operator restart continues either batch."""
    run, _sent = _run(cfg, tmp_path)
    sup = run.sup
    assert sup.run_batch(RECIPE, "P-A", "op1", coi=COI_A, din=DIN_A).accepted
    assert sup.run_batch(RECIPE, "P-B", "op1", coi=COI_B, din=DIN_B).accepted
    assert sup.patient_cell is not None
    g = sup.patient_cell.coi.genealogy
    _after_receipt(run)
    assert g.container("APH-P-A").location == "RTP"  # B's receipt is next at the RTP (FIFO)
    run.cell.inject_fault("SCN1", "swap", station="rtp", container_id="APH-P-A",
                          label=encode_label(COI_A, "APH-P-A", DIN_A))
    assert run.run_until(lambda: _state(run, "P-B") == "Held", 1200)
    assert _state(run, "P-A") == "Held" and g.get("APH-P-B") is None
    devs = sup.patients["P-B"].record.entries(kinds=["deviation"])
    dev = devs[0].payload
    assert dev["coi_read"] == COI_A and dev["coi_expected"] == COI_B and set(dev["hold_batches"]) == {"P-A", "P-B"}
    assert dev["unidentified_container_at"] == "RTP" and dev["container_read"] == "APH-P-A"
    assert dev["scans"][0]["reader_id"] == "SCN1-rtp"
    assert g.container("APH-P-A").status is ContainerStatus.ACTIVE  # A's own bag, registered, is not touched
    assert _custody(sup.patients["P-A"], "hold") and _custody(sup.patients["P-B"], "hold")
    for b in ("P-A", "P-B"):
        out = sup.batch_command("restart", "sup1", reason="looks fine", batch=b, **SIGN)
        assert not out.accepted and out.code == "COI" and "COI-30" in out.reason
    run.advance(300)
    assert _state(run, "P-A") == "Held" and _state(run, "P-B") == "Held"


def test_an_incubator_excursion_beyond_its_alarm_delay_fails_the_incubation_of_that_batch(cfg, tmp_path):
    """INC-04: the incubator's heater fails during A's first incubation; the chamber stays out of its
    T band longer than the alarm delay after the last door access (60 s here [M]): A's incubation
    ends in a hold with the excursion in A's record (environment + deviation); nothing resumes."""
    pe = cfg.layout.process_equipment
    inc = pe.incubator.model_copy(update={"alarm_delay_s": 60.0})
    layout = cfg.layout.model_copy(update={"process_equipment": pe.model_copy(update={"incubator": inc})})
    run, _sent = _run(dataclasses.replace(cfg, layout=layout), tmp_path)
    sup = run.sup
    assert sup.run_batch(RECIPE, "P-A", "op1", coi=COI_A, din=DIN_A).accepted
    ex = sup.patients["P-A"]
    assert run.run_until(lambda: (ex.active_phase or "").endswith("/incubate_activation"), 3 * 3600)
    run.cell.inject_fault("INC1", "heater_failure")
    assert run.run_until(lambda: _state(run, "P-A") == "Held", 1800)
    assert "INC-04" in ex.held_reason and "incubate_activation" in ex.held_reason, ex.held_reason
    env = [e.payload for e in ex.record.entries(kinds=["environment"])]
    assert env and env[-1]["phase"] == "incubate_activation" and env[-1]["excursions_over_alarm_delay"]
    assert env[-1]["temp_c"] < inc.temp_alarm_low_c
    devs = [e.payload for e in ex.record.entries(kinds=["deviation"]) if e.payload.get("rule") == "INC-04"]
    assert len(devs) == 1 and devs[0]["slot"] == ex.slot
    run.advance(600)
    assert _state(run, "P-A") == "Held"
