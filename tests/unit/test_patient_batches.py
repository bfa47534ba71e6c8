"""Patient batches on the shared cell (issue 14 items 4-6), in-process on sim time: one executive
and one record per batch, admission, arbitration, chain of identity (COI-01/03/30, SEG-03), hold
scope (INT-01/03), segregation (SEG-01/04/05/06), the campaign recipe's exclusivity."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import py_trees
import pytest

from aseptic_cell.coi import ContainerStatus, CustodyLog, check_custody, encode_label
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
    """The cell's configuration with a 1 min line clearance and purge (site values [M]; the
    default 10 + 21 min only lengthen the run)."""
    c = load_config(default_config_dir())
    ch = c.scheduling.changeover.model_copy(update={"t_purge_min": 1, "t_line_clearance_min": 1})
    return dataclasses.replace(c, scheduling=c.scheduling.model_copy(update={"changeover": ch}))


def _run(cfg, d: Path) -> InProcessRun:
    d.mkdir(parents=True, exist_ok=True)
    return InProcessRun(cfg, tick_s=30.0, record=BatchRecord(d / "cell.db", _Clock()))


def _state(sup, b: str) -> str:
    return sup.patients[b].sm.state.value


def _start_two(run: InProcessRun) -> None:
    sup = run.sup
    assert sup.run_batch(RECIPE, "P-A", "op1", coi=COI_A, din=DIN_A).accepted
    assert sup.run_batch(RECIPE, "P-B", "op1", coi=COI_B, din=DIN_B).accepted


def _one_open_one_incubating(cfg, tmp_path: Path) -> tuple[InProcessRun, str, str]:
    """Two patient batches run until one is in an open phase while the other incubates."""
    run = _run(cfg, tmp_path)
    sup = run.sup
    _start_two(run)
    cell = sup.patient_cell

    def split() -> bool:
        kinds = {b: sup.patients[b].phase_kind(sup.patients[b].active_phase or "") for b in sup.patients}
        return sorted(kinds.values()) == ["incubation", "open"] and bool(cell.open_now)

    assert run.run_until(split, 4 * 3600)
    opener = next(iter(cell.open_now))
    return run, opener, next(b for b in sup.patients if b != opener)


@pytest.fixture(scope="module")
def two_patients(cfg, tmp_path_factory):
    """Two patients' batches run to the end together; every tick checks the open-zone rule."""
    run = _run(cfg, tmp_path_factory.mktemp("two"))
    sup = run.sup
    _start_two(run)
    seen: dict[str, object] = {"campaign": None, "open_cois": set(), "waits": []}

    def watch(r: InProcessRun) -> None:
        cell = r.sup.patient_cell
        opened = {r.sup.patients[b].coi for b in cell.open_now}
        assert len(opened) <= 1, f"SEG-01: two COIs open at once {opened}"
        seen["open_cois"] |= opened  # type: ignore[operator]
        seen["waits"] += [w for q in cell.queue() for w in q["why"]]  # type: ignore[operator]
        if opened and seen.get("last") and opened != seen["last"]:  # SEG-05: another COI opens only after the purge
            assert r.now() >= cell.arbiter.zone_ready_at, "SEG-05: opened during the purge wait"
            seen["changeovers"] = int(seen.get("changeovers", 0)) + 1  # type: ignore[call-overload]
        if opened:
            seen["last"] = opened
        if seen["campaign"] is None and r.now() > 600:
            seen["campaign"] = r.sup.run_batch("CART-TRANSDUCTION", "CAMPAIGN-1", "op1")

    run.hooks.append(watch)
    done = run.run_until(lambda: all(ex.sm.state.final or ex.sm.state.value == "Held"
                                     for ex in sup.patients.values()), 8 * 3600)
    assert done
    return run, seen


def test_two_patients_complete_each_with_its_own_verified_record_its_coi_in_every_entry_and_full_custody(
        two_patients):
    run, seen = two_patients
    sup = run.sup
    assert {b: _state(sup, b) for b in sup.patients} == {"P-A": "Complete", "P-B": "Complete"}, [
        (ex.batch_id, ex.held_reason) for ex in sup.patients.values()]
    paths = {ex.record.path for ex in sup.patients.values()}
    assert len(paths) == 2 and sup.record.path not in paths  # one chain per batch, not the cell's
    for ex in sup.patients.values():
        assert verify_file(ex.record.path).ok
        entries = ex.record.entries()
        assert entries and all(e.payload.get("coi") == ex.coi for e in entries)  # every entry carries its COI
        assert {e.batch_id for e in entries} == {ex.batch_id}
        assert check_custody(CustodyLog(ex.record._record, "CELL-01"), ex.batch_id) == {}
        assert [e.payload for e in ex.record.entries(kinds=["deviation"])] == []  # 0 COI mismatches
        actions = [e.action for e in ex.record.entries(kinds=["custody"])]
        assert actions[0] == "custody.aph_receipt" and "custody.weld" in actions and "custody.cryo_start" in actions
    assert sup.patient_cell.violations == []
    assert seen["open_cois"] == {COI_A, COI_B}  # both opened, never at once
    assert int(seen.get("changeovers", 0)) >= 2  # type: ignore[call-overload]  # each after its purge wait
    # SEG-04: the line clearance between the patients is recorded, then the purge wait (SEG-05)
    lc = [e for ex in sup.patients.values() for e in ex.record.entries(kinds=["custody"])
          if e.action == "custody.line_clearance"]
    assert lc and all(e.payload["extra"]["verifier"] for e in lc)
    assert any("purge wait" in w for w in seen["waits"]) and any("line clearance" in w for w in seen["waits"])
    # the slots went back to cleaning
    assert sup.patient_cell.arbiter.slot_of == {}
    view = sup.batches()
    assert [(b["batch_id"], b["coi"], b["state"]) for b in view["batches"]] == [
        ("P-A", COI_A, "Complete"), ("P-B", COI_B, "Complete")] and view["queue"] == []


def test_the_campaign_recipe_is_refused_beside_patient_batches_and_they_beside_it(two_patients, cfg, tmp_path):
    _run_, seen = two_patients
    out = seen["campaign"]
    assert out is not None and not out.accepted and out.code == "EXCLUSIVE", out
    run = _run(cfg, tmp_path)
    assert run.sup.run_batch("CART-TRANSDUCTION", "CAMPAIGN-2", "op1").accepted
    out = run.sup.run_batch(RECIPE, "P-X", "op1", coi=COI_A, din=DIN_A)
    assert not out.accepted and out.code == "EXCLUSIVE" and "CAMPAIGN-2" in out.reason
    assert run.sup.patients == {}


@pytest.mark.parametrize(("coi", "din", "code", "words"), [
    ("", DIN_A, "COI", "needs its COI"),
    ("coi lower", DIN_A, "COI", "coi_id"),
    (COI_A, "=G12341765432171", "COI", "din.check"),  # ISO 7064 Mod 37-2 check character wrong
    (COI_A, "", "COI", "apheresis DIN"),
])
def test_a_bad_coi_or_din_is_refused_naming_the_field_and_nothing_is_allocated(cfg, tmp_path, coi, din, code,
                                                                               words):
    run = _run(cfg, tmp_path)
    out = run.sup.run_batch(RECIPE, "P-BAD", "op1", coi=coi, din=din)
    assert not out.accepted and out.code == code and words in out.reason, out
    assert run.sup.patients == {} and run.sup.patient_cell.arbiter.slot_of == {}
    assert any(r["code"] == code for r in run.sup.refusals)  # the refusal is recorded


def test_admission_refuses_when_no_slot_is_free(cfg, tmp_path):
    res = cfg.scheduling.resources
    small = dataclasses.replace(cfg, scheduling=cfg.scheduling.model_copy(update={"resources": res.model_copy(
        update={"incubator": res.incubator.model_copy(update={"slots": 1})})}))
    run = _run(small, tmp_path)
    assert run.sup.run_batch(RECIPE, "P-1", "op1", coi=COI_A, din=DIN_A).accepted
    out = run.sup.run_batch(RECIPE, "P-2", "op1", coi=COI_B, din=DIN_B)
    assert not out.accepted and out.code == "ADMISSION" and "no free incubator slot" in out.reason


def test_a_mismatched_bag_at_the_rtp_stops_holds_both_batches_quarantines_and_allows_no_continue(cfg, tmp_path):
    """COI-30: batch B's receipt reads patient A's bag: nothing is received, both batches hold, A's
    bag is quarantined, a deviation is recorded, and no operator restart continues either batch."""
    run = _run(cfg, tmp_path)
    sup = run.sup
    assert sup.run_batch(RECIPE, "P-A", "op1", coi=COI_A, din=DIN_A).accepted
    g = sup.patient_cell.coi.genealogy
    run.run_until(lambda: g.get("APH-P-A") is not None and g.container("APH-P-A").location != "RTP", 600)
    sup.patient_cell.reader.presented[("APH-P-B", "RTP")] = encode_label(COI_A, "APH-P-A", DIN_A)  # A's bag to B
    assert sup.run_batch(RECIPE, "P-B", "op1", coi=COI_B, din=DIN_B).accepted
    run.run_until(lambda: _state(sup, "P-B") == "Held", 600)
    assert _state(sup, "P-B") == "Held" and _state(sup, "P-A") == "Held"
    assert g.get("APH-P-B") is None  # B's receipt never happened
    devs = sup.patients["P-B"].record.entries(kinds=["deviation"])
    assert devs and devs[0].payload["coi_read"] == COI_A and devs[0].payload["coi_expected"] == COI_B
    dev = devs[0].payload  # what stands at the RTP with a label of A's bag (in A's slot) is quarantined there
    assert dev["quarantine"] == ["FOUND-P-B-001"] and dev["container_read"] == "APH-P-A", dev
    found = g.container("FOUND-P-B-001")
    assert (found.status, found.location) == (ContainerStatus.QUARANTINE, "RTP")
    assert set(devs[0].payload["hold_batches"]) == {"P-A", "P-B"}
    holds = [e for e in sup.patients["P-A"].record.entries(kinds=["custody"]) if e.action == "custody.hold"]
    assert holds  # A's own record says why it holds
    for b in ("P-A", "P-B"):
        out = sup.batch_command("restart", "sup1", reason="looks fine", batch=b, **SIGN)
        assert not out.accepted and out.code == "COI" and "COI-30" in out.reason
    run.advance(300)
    assert _state(sup, "P-A") == "Held" and _state(sup, "P-B") == "Held"  # nothing resumes


@pytest.mark.parametrize(("label_coi", "held"), [("COI-CCCCCC", {"P-B"}), (COI_A, {"P-A", "P-B"})],
                         ids=["coi-of-no-batch", "coi-of-another-batch"])
def test_an_unregistered_bag_at_the_rtp_is_a_coi30_mismatch_and_is_quarantined_in_genealogy_and_custody(
        cfg, tmp_path, label_coi, held):
    """COI-30 at receipt: B's receipt reads a bag registered to no batch (its label names a COI no batch
    has, or patient A's COI on a container A never registered): nothing is received, the batches concerned
    hold, the bag is QUARANTINED in the genealogy and by a QUARANTINE custody event in B's record (its
    chain starts there), a deviation names it, no operator continue. (Before: the deviation said only
    ``unidentified_container_at``; the bag reached no QUARANTINE in the genealogy or the custody log.)"""
    run = _run(cfg, tmp_path)
    sup = run.sup
    assert sup.run_batch(RECIPE, "P-A", "op1", coi=COI_A, din=DIN_A).accepted
    g = sup.patient_cell.coi.genealogy
    run.run_until(lambda: g.get("APH-P-A") is not None, 600)
    sup.patient_cell.reader.presented[("APH-P-B", "RTP")] = encode_label(label_coi, "APH-STRAY", DIN_B)
    assert sup.run_batch(RECIPE, "P-B", "op1", coi=COI_B, din=DIN_B).accepted
    run.run_until(lambda: _state(sup, "P-B") == "Held", 600)
    assert {b for b in ("P-A", "P-B") if _state(sup, b) == "Held"} == held
    b = sup.patients["P-B"]
    assert g.get("APH-P-B") is None and "receipt" not in b.phase_ends  # the transfer in never ran
    custody = [e for e in b.record.entries(kinds=["custody"])]
    assert not [e for e in custody if e.action in ("custody.aph_receipt", "custody.rtp_transfer_in")]
    stray = g.container("FOUND-P-B-001")  # under an id of its own: "APH-STRAY" may yet be a real bag's
    assert stray.status is ContainerStatus.QUARANTINE and stray.location == "RTP" and stray.batch == "P-B"
    assert g.get("APH-STRAY") is None
    (dev,) = [e.payload for e in b.record.entries(kinds=["deviation"]) if "coi_expected" in e.payload]
    assert dev["code"] == "COI_MISMATCH" and dev["coi_read"] == label_coi and dev["container_read"] == "APH-STRAY"
    assert dev["quarantine"] == ["FOUND-P-B-001"] and set(dev["hold_batches"]) == held
    q = [e.payload for e in custody if e.action == "custody.quarantine"]
    assert [(p["container_ids"], p["deviation_ref"], p["location_to"], p["extra"]["found"]) for p in q] == [
        (["FOUND-P-B-001"], dev["deviation"], "RTP", True)]
    assert check_custody(CustodyLog(b.record._record, "CELL-01"), "P-B") == {}  # its chain starts at the quarantine
    for bid in held:
        out = sup.batch_command("restart", "sup1", reason="looks fine", batch=bid, **SIGN)
        assert not out.accepted and out.code == "COI" and "COI-30" in out.reason
    run.advance(300)
    assert {bid for bid in ("P-A", "P-B") if _state(sup, bid) == "Held"} == held  # nothing resumes


def test_a_batch_local_fault_holds_that_batch_only(cfg, tmp_path):
    """INT-03 / COI-03: B's bag cannot be read (re-reads exhausted): B holds, A runs on."""
    run = _run(cfg, tmp_path)
    sup = run.sup
    assert sup.run_batch(RECIPE, "P-A", "op1", coi=COI_A, din=DIN_A).accepted
    run.run_until(lambda: sup.patient_cell.coi.genealogy.get("APH-P-A") is not None, 600)
    run.advance(60)
    sup.patient_cell.reader.no_reads["APH-P-B"] = 99  # B's bag label never decodes after its receipt
    assert sup.run_batch(RECIPE, "P-B", "op1", coi=COI_B, din=DIN_B).accepted
    run.run_until(lambda: _state(sup, "P-B") == "Held", 3600)
    assert _state(sup, "P-B") == "Held" and "COI-03" in sup.patients["P-B"].held_reason
    assert _state(sup, "P-A") == "Running"
    assert not any(run.cell.latched(n) for n in ("isolator", "vhp", "autoclave", "arm"))  # no cell-wide safe state
    done_a = len(sup.patients["P-A"].phase_ends)
    run.advance(900)
    assert len(sup.patients["P-A"].phase_ends) > done_a and _state(sup, "P-B") == "Held"
    # INT-02: held beyond max_hold (3 min in the short process) -> a deviation for B only
    int02 = [e for e in sup.patients["P-B"].record.entries(kinds=["deviation"]) if e.payload.get("rule") == "INT-02"]
    assert len(int02) == 1 and int02[0].payload["max_hold_s"] == 180.0
    assert not [e for e in sup.patients["P-A"].record.entries(kinds=["deviation"]) if e.payload.get("rule") == "INT-02"]


def test_a_cell_wide_trip_holds_active_phases_incubation_runs_on_excursion_scope_and_own_restarts(cfg, tmp_path):
    """INT-01: a cell-wide trip holds every batch's active phase, a batch in incubation runs on;
    nothing resumes; each batch restarts with its own signed restart. SEG-06: the batch whose open
    phase overlapped the excursion is IMPACTED, the other is not."""
    run, opener, incubating = _one_open_one_incubating(cfg, tmp_path)
    sup, cell = run.sup, run.sup.patient_cell
    sup.hold_on_trip("grade A particle action limit", source="IL-12")
    assert _state(sup, opener) == "Held" and _state(sup, incubating) == "Running"
    assert sup.patients[incubating].phase_kind(sup.patients[incubating].active_phase or "") == "incubation"
    run.advance(600)
    assert _state(sup, opener) == "Held"  # never resumes by itself
    assert not any(r.batch == opener and r.state.value == "running" for r in cell.arbiter.requests.values())
    out = sup.batch_command("restart", "sup1", reason="counts back in limits", batch=opener, **SIGN)
    assert out.accepted, out
    assert sup.patients[opener].impacted and not sup.patients[incubating].impacted
    devs = sup.patients[opener].record.entries(kinds=["deviation"])
    assert any(d.payload.get("rule") == "SEG-06" for d in devs)
    assert not any(d.payload.get("rule") == "SEG-06" for d in sup.patients[incubating].record.entries(
        kinds=["deviation"])), [d.payload for d in sup.patients[incubating].record.entries(kinds=["deviation"])]
    run.advance(120)
    assert _state(sup, opener) == "Running"


def test_a_device_communication_loss_holds_the_patient_batches_and_nothing_resumes(cfg, tmp_path):
    """A device whose communication stays lost holds the patient batches' active phases as a cell-wide
    trip does, with no campaign batch running (before: only a running campaign batch was held, and
    patient batches waited on the lost device for ever); restoring it resumes nothing."""
    run = _run(cfg, tmp_path)
    sup = run.sup
    _start_two(run)
    run.advance(60)
    assert _state(sup, "P-A") == _state(sup, "P-B") == "Running" and sup.sm.state.value == "Idle"
    arm = run.cell.node_devices["arm"]
    run.cell.inject_fault(arm, "comm_loss")
    run.advance(float(getattr(run.cell, "comm_loss_hold_s", 0.0)) + 90)
    assert "arm" in sup.process_alarms.comm_lost
    held = [b for b in ("P-A", "P-B") if _state(sup, b) == "Held"]
    assert held, [_state(sup, b) for b in ("P-A", "P-B")]
    assert all("communication with arm" in sup.patients[b].held_reason for b in held)
    assert "communication with arm" in sup.patient_cell.arbiter.faults.get("ARM", "")
    run.cell.clear_fault(arm, "comm_loss")
    run.advance(600)
    assert [b for b in ("P-A", "P-B") if _state(sup, b) == "Held"] == held  # never resumes by itself


def test_a_slot_left_occupied_by_a_stopped_batch_is_not_given_to_another_until_emptied(cfg, tmp_path):
    """A batch stopped while its bag is in its incubator slot: the incubator refuses to free the slot
    (INC_SLOT_OCCUPIED), so admission must not offer it (before: the arbiter freed it, the next batch
    was refused EQUIPMENT on that same slot again and again); once an operator takes the bag out, the
    slot is released on the incubator and offered again."""
    run = _run(cfg, tmp_path)
    sup = run.sup
    assert sup.run_batch(RECIPE, "P-A", "op1", coi=COI_A, din=DIN_A).accepted
    slot = sup.patients["P-A"].slot
    n = sup.patient_cell.slot_number(slot)
    assert run.run_until(lambda: bool(sup.signal(f"incubator.slot.{n}.container_id")), 6 * 3600)
    bag = sup.signal(f"incubator.slot.{n}.container_id")
    assert sup.batch_command("stop", "sup1", reason="patient withdrawn", batch="P-A").accepted
    run.run_until(lambda: _state(sup, "P-A") == "Stopped", 3600)
    assert _state(sup, "P-A") == "Stopped" and sup.signal(f"incubator.slot.{n}.container_id") == bag
    assert "ended batch P-A" in sup.patient_cell.arbiter.faults.get(slot, "")
    assert sup.run_batch(RECIPE, "P-B", "op1", coi=COI_B, din=DIN_B).accepted
    assert sup.patients["P-B"].slot not in ("", slot)
    out, _h = sup.operate("incubator", "unload", {"slot": n, "container_id": bag}, "sup1", "bag of withdrawn P-A out")
    assert out.accepted, out
    run.advance(120)
    assert slot not in sup.patient_cell.arbiter.faults
    assert sup.signal(f"incubator.slot.{n}.batch_id") == ""
    assert sup.patient_cell.arbiter.free_slot(sup.now() + 10 * 86400) is not None


def test_a_particle_action_excursion_during_a_patient_open_phase_holds_it(cfg, tmp_path):
    """Annex 1 §9 for patient batches: a grade A particle action excursion while a patient batch is
    open holds it (a cell-wide trip: the other, incubating, runs on), and it is held again after a
    restart while the excursion stands (before: only the campaign batch's open phases were held, a
    patient batch stayed open through the excursion; found by the 4-batch stateful test)."""
    run, opener, incubating = _one_open_one_incubating(cfg, tmp_path)
    sup = run.sup
    run.cell.inject_fault(run.cell.node_devices["isolator"], "particle_source")
    assert run.run_until(lambda: _state(sup, opener) == "Held", 900), sup.process_alarms.active
    assert "ACTION" in sup.patients[opener].held_reason and "open phase" in sup.patients[opener].held_reason
    assert _state(sup, incubating) == "Running"
    run.advance(300)
    assert _state(sup, opener) == "Held"  # never resumes by itself


def test_a_weld_of_two_cois_is_refused_before_the_welder_moves_and_holds_both(cfg, tmp_path):
    """SEG-03 / COI-10: A's feed weld reads B's bag at the welder: no WELD is logged, both batches
    hold, a deviation names both COIs."""
    run = _run(cfg, tmp_path)
    sup = run.sup
    _start_two(run)
    cell = sup.patient_cell
    g = cell.coi.genealogy
    a = sup.patients["P-A"]
    run.run_until(lambda: g.get("BAG-P-B") is not None and g.get("BAG-P-A") is not None
                  and (a.active_phase or "").endswith("/incubate_d2"), 4 * 3600)
    assert (a.active_phase or "").endswith("/incubate_d2")  # A's next phase is feed_1: a weld
    cell.reader.presented[("BAG-P-A", "WLD")] = encode_label(COI_B, "BAG-P-B")
    welds = len([e for e in a.record.entries(kinds=["custody"]) if e.action == "custody.weld"])
    run.run_until(lambda: a.sm.state.value == "Held", 3600)
    assert a.sm.state.value == "Held" and _state(sup, "P-B") == "Held"
    assert "COI" in a.held_reason and a.coi_stop
    assert len([e for e in a.record.entries(kinds=["custody"]) if e.action == "custody.weld"]) == welds
    devs = [e.payload for e in a.record.entries(kinds=["deviation"]) if "coi_expected" in e.payload]
    assert devs and devs[-1]["coi_expected"] == COI_A and devs[-1]["code"] == "COI_CONNECT_REFUSED"
    assert devs[-1]["rule"] == "COI-10" and set(devs[-1]["hold_batches"]) == {"P-A", "P-B"}  # SEG-03


def test_a_second_patient_cannot_take_the_open_zone_while_another_owns_it(cfg, tmp_path):
    """SEG-01/04: a request for the open zone by B while A's open block owns it is not granted;
    the arbiter says why (dirty after A, line clearance) and raises A's line clearance first."""
    run = _run(cfg, tmp_path)
    sup = run.sup
    _start_two(run)
    cell = sup.patient_cell
    assert run.run_until(lambda: bool(cell.open_now), 3600)
    owner = next(iter(cell.open_now))
    other = next(b for b in sup.patients if b != owner)
    sneak = cell.arbiter.request(other, "sneak_open", {"GRADE_A_OPEN_ZONE"}, run.now(), open=True)
    cell.arbiter.arbitrate(run.now())
    assert sneak.state.value == "waiting"
    why = " ".join(str(w) for w in cell.arbiter.why(sneak, run.now()))
    assert "GRADE_A_OPEN_ZONE" in why and owner in why
    cell.arbiter.cancel(sneak.id)


def test_cellctl_demo_patients_prints_one_json_object_with_each_batch_coi_result_and_record(tmp_path, capsys):
    """``cellctl demo --patients N --in-process --json``: one patient, the cell's own configuration."""
    import json

    from aseptic_cell.cli import main

    code = main(["demo", "--patients", "1", "--in-process", "--speed", "max", "--json", "--record-dir", str(tmp_path)])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and out["result"] == "PASS", out
    (b,) = out["batches"]
    assert b["coi"] == "COI-DEMO0001" and b["result"] == "PASS" and Path(b["record"]).is_file()
    assert verify_file(b["record"]).ok and b["entries_with_coi"] == b["entries"] and b["custody_problems"] == {}
    assert out["segregation_violations"] == []


def test_a_coi_stamped_record_copies_as_itself():
    """A deep copy of a patient batch's record wrapper is a wrapper with its COI (before, ``__deepcopy__``
    was looked up on the wrapped record: the copy was the bare record, without the COI stamp)."""
    import copy

    from aseptic_cell.supervisor.executive import CoiStampedRecord

    class Rec:
        def __init__(self) -> None:
            self.rows: list[int] = []

    w = CoiStampedRecord(Rec(), "COI-X")
    c = copy.deepcopy(w)
    assert isinstance(c, CoiStampedRecord) and c.coi == "COI-X" and c.rows == [] and c._record is not w._record



def _phase(sup, b: str) -> str:
    return (sup.patients[b].active_phase or "").rsplit("/", 1)[-1]


def test_a_batch_local_hold_stops_that_batchs_spin_the_other_batch_runs_on_and_only_a_signed_restart_spins_again(
        cfg, tmp_path):
    """Batch-local hold scope (INT-03), per unit (patients.UNIT_ON_HOLD): the operator holds the batch
    whose centrifuge program is running: the rotor is stopped (safe_state, result FAIL), the hold is in
    that batch's record; the other batch (incubating) runs on and spins on the freed centrifuge (to PASS);
    nothing resumes by itself; the operator's restart is refused (a supervisor's signed restart is
    required) and the signed one spins again. (Before: the held batch's program ran on to its end.)"""
    run = _run(cfg, tmp_path)
    sup = run.sup
    _start_two(run)

    def spinning() -> str | None:
        for b in sup.patients:
            other = next(o for o in sup.patients if o != b)
            if _phase(sup, b) == "vector_wash" and sup.signal("centrifuge.busy") is True and (
                    _phase(sup, other) != "vector_wash"):
                return b
        return None

    assert run.run_until(lambda: spinning() is not None, 3 * 3600)
    a = spinning()
    assert a is not None
    b = next(o for o in sup.patients if o != a)
    assert sup.batch_command("hold", "op1", reason="operator check", batch=a).accepted
    assert _state(sup, a) == "Held" and _state(sup, b) == "Running"
    run.advance(30)
    assert sup.signal("centrifuge.busy") is False and sup.signal("centrifuge.last_result") == "FAIL"
    stops = [e for e in sup.patients[a].record.entries(kinds=["trip"]) if e.action == "centrifuge.safe_state"]
    assert len(stops) == 1 and stops[0].payload["policy"] == "stop"
    assert not [e for e in sup.patients[b].record.entries(kinds=["trip"]) if e.action.endswith(".safe_state")]
    # the other batch runs on: its incubation ends and its own spin starts on the freed centrifuge
    assert run.run_until(lambda: _phase(sup, b) == "vector_wash" and sup.signal("centrifuge.busy") is True, 3600)
    assert _state(sup, a) == "Held" and "centrifuge.vector_wash" not in sup.patients[a].results  # no auto-resume
    for user, kw in (("op1", {}), ("sup1", {})):  # the operator may not; a restart without its signature neither
        out = sup.batch_command("restart", user, reason="checked", batch=a, **kw)
        assert not out.accepted, out
    assert _state(sup, a) == "Held"
    assert sup.batch_command("restart", "sup1", reason="checked", batch=a, **SIGN).accepted
    assert run.run_until(lambda: "centrifuge.vector_wash" in sup.patients[a].results, 2 * 3600)
    assert sup.patients[a].results["centrifuge.vector_wash"]["result"] == "PASS"  # spun again from its start
    assert sup.patients[b].results["centrifuge.vector_wash"]["result"] == "PASS"  # the other's spin ran to its end


def test_a_batch_local_hold_lets_a_count_in_progress_finish_on_the_counter(cfg, tmp_path):
    """patients.UNIT_ON_HOLD: a count is analytical on a sample already drawn: the batch holds, the
    counter is not stopped (its run finishes PASS), the batch stays held."""
    run = _run(cfg, tmp_path)
    sup = run.sup
    assert sup.run_batch(RECIPE, "P-A", "op1", coi=COI_A, din=DIN_A).accepted
    assert run.run_until(lambda: sup.signal("counter.busy") is True, 3600)
    assert sup.batch_command("hold", "op1", reason="operator check", batch="P-A").accepted
    assert run.run_until(lambda: sup.signal("counter.busy") is False, 600)
    assert sup.signal("counter.last_result") == "PASS" and _state(sup, "P-A") == "Held"
    notes = [e for e in sup.patients["P-A"].record.entries(kinds=["note"]) if e.action == "counter.run_on"]
    assert len(notes) == 1 and not [e for e in sup.patients["P-A"].record.entries(kinds=["trip"])
                                    if e.action.endswith(".safe_state")]


def _unit_running(sup, b: str) -> str:
    """The unit whose run batch ``b``'s active phase has started and not yet taken the result of."""
    ex = sup.patients[b]
    node = next((n.decorated for n in ex.tree.children if n.phase_path == ex.active_phase), None)
    if node is None or node.op_stage != "running" or node.op_i >= len(node.ops):
        return ""
    return node.ops[node.op_i]


def test_a_batch_local_hold_stops_that_batchs_weld_and_the_welder_serves_the_next_weld(cfg, tmp_path):
    """patients.UNIT_ON_HOLD: a weld interrupted by its batch's hold is stopped (an interrupted weld is
    never trusted: result FAIL; the weld runs again after the signed restart); the welder is not left latched."""
    run = _run(cfg, tmp_path)
    sup = run.sup
    assert sup.run_batch(RECIPE, "P-A", "op1", coi=COI_A, din=DIN_A).accepted
    assert run.run_until(lambda: _unit_running(sup, "P-A") == "welder", 3600)
    model = run.cell.sim.models[run.cell.node_devices["welder"]]
    assert model.busy  # the weld is in progress now
    assert sup.batch_command("hold", "op1", reason="operator check", batch="P-A").accepted
    assert not model.busy and model.last_result == "FAIL" and "safe state" in model.last_report["reasons"][0]
    assert run.cell.latched("welder") is None  # the stop's own latch released: the unit serves other batches
    run.advance(300)
    assert _state(sup, "P-A") == "Held" and "welder.wash_setup" not in sup.patients["P-A"].results
    assert sup.batch_command("restart", "sup1", reason="checked", batch="P-A", **SIGN).accepted
    assert run.run_until(lambda: _unit_running(sup, "P-A") == "welder", 600)  # welds again after the restart
