"""Deviations and QA disposition (issue 15 items 1 and 4), in process on a real SQLite record and
the real users.yaml: every automatic source raises a linked deviation as the supervisor's journal
writes the entry; every refusal of the disposition is tried (open deviation, chain that does not
verify, batch not ended, a role without the permission, a wrong password, an append after release,
the IL-06 dead end), and the signed post-release correction reopens the disposition. The store's
own closure on both backends is in test_records_closure.py; the path over the ROS graph in
tests/ros/test_supervisor_graph.py."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from aseptic_cell import disposition as qa
from aseptic_cell.auth import UserDirectory
from aseptic_cell.records import BatchRecord, RecordClosedError, verify_file
from aseptic_cell.supervisor.journal import BatchJournal

REPO = Path(__file__).resolve().parents[2]
PW = {"qa1": "qa1-demo-2026", "sup1": "sup1-demo-2026", "op1": "op1-demo-2026", "eng1": "eng1-demo-2026"}
T0 = 1_790_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def now(self) -> float:
        self.t += 1.0
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def cfg_dir(tmp_path_factory) -> Path:
    """config/users.yaml (same users, roles, permissions) with the demo passwords re-hashed at the
    policy's own PBKDF2 floor instead of 600 000 iterations (a third of the hashing per
    signature: the file's tests sign some sixty times), and config/deviations.yaml."""
    import shutil

    import yaml

    from aseptic_cell.auth.passwords import hash_password

    d = tmp_path_factory.mktemp("config")
    doc = yaml.safe_load((REPO / "config" / "users.yaml").read_text(encoding="utf-8"))
    floor = int(doc["policy"]["min_iterations"])
    for u in doc["users"]:
        u["password_hash"] = hash_password(f"{u['id']}-demo-2026", iterations=floor)
    (d / "users.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    shutil.copy(REPO / "config" / "deviations.yaml", d / "deviations.yaml")
    return d


@pytest.fixture
def users(clock, cfg_dir) -> UserDirectory:
    return UserDirectory.from_file(cfg_dir / "users.yaml", clock)


@pytest.fixture
def rec(tmp_path, clock):
    with BatchRecord(tmp_path / "r.db", clock) as r:
        yield r


def _batch(j: BatchJournal, to: str, frm: str, actor: str = "system") -> None:
    j.audit("phase_transition", actor, "batch.x", f"{frm} -> {to}", {"level": "batch", "from": frm, "to": to})


def _tripped_batch(rec, clock, batch: str = "B-1", end: str = "Complete") -> BatchJournal:
    """A batch written through the supervisor's journal: start, an interlock trip, held, signed
    restart, then ``end`` ("" leaves it running)."""
    j = BatchJournal(rec, clock.now, lambda: batch)
    j.audit("command", "op1", "batch.start", "recipe CART v1", {"recipe_id": "CART-TRANSDUCTION"})
    _batch(j, "Running", "Idle", "op1")
    j.audit("trip", "system", "interlock.IL-05", "glove integrity test FAIL on GP2", {"rule": "IL-05"})
    _batch(j, "Held", "Holding")
    _batch(j, "Restarting", "Held", "sup1")
    _batch(j, "Running", "Restarting")
    if end:
        _batch(j, end, "Running" if end == "Complete" else "Aborting", "system" if end == "Complete" else "sup1")
    return j


def _only_dev(rec, batch: str = "B-1") -> qa.Deviation:
    devs = qa.deviations(rec, batch)
    assert len(devs) == 1, [d.id for d in devs]
    return devs[0]


# ------------------------------------------------------------------ item 1: raised automatically
def test_a_trip_raises_a_deviation_linked_to_the_trip_entry_with_the_configured_class(rec, clock):
    _tripped_batch(rec, clock, end="")
    trip = rec.entries("B-1", kinds=["trip"])[0]
    dev = _only_dev(rec)
    assert dev.source == "interlock_trip" and dev.rule == "IL-05" and dev.state == "RAISED"
    assert dev.cls == qa.DeviationPolicy.load(REPO / "config").class_of("interlock_trip") == "major"
    assert dev.links == [{"seq": trip.seq, "hash": trip.hash, "kind": "trip", "action": "interlock.IL-05"}]
    assert dev.raised_seq == trip.seq + 1 and dev.raised_by == "system"  # written with the trip, next entry
    assert rec.verify().ok


def test_every_automatic_source_raises_one_deviation_and_a_device_latch_none(rec, clock):
    j = BatchJournal(rec, clock.now, lambda: "B-2")
    j.auto.policy = qa.DeviationPolicy.from_mapping({"max_hold_s": 60})
    _batch(j, "Running", "Idle", "op1")
    j.refusal("supervisor", "arm", "move_to_pose", {}, "INTERLOCK", "IL-09 glove in use", source="supervisor")
    j.refusal("supervisor", "arm", "move_to_pose", {}, "INTERLOCK", "IL-09 glove in use", source="supervisor")
    j.refusal("op1", "isolator", "open_door", {}, "INTERLOCK", "IL-01", source="operate")  # an operator's: none
    j.audit("trip", "system", "ARM1.latched", "safe state", {})  # a device made safe by the hold: none
    j.audit("environment", "system", "ISO1_PART_05_ACTION.hold", "action excursion", {"phase": "PH-FILL"})
    j.audit("environment", "system", "PH-FILL.em_summary", "summary", {"phase": "PH-FILL"})  # none
    j.audit("command", "sup1", "bypass.approve", "counter repair", {"rule": "IL-12"})
    _batch(j, "Holding", "Running")  # the hold the EM excursion caused: its deviation is raised already
    _batch(j, "Held", "Holding")
    clock.t += 61.0
    _batch(j, "Restarting", "Held", "sup1")
    _batch(j, "Running", "Restarting")
    j.audit("trip", "system", "batch.hold", "phase failed", {"source": "PH-X"})  # the hold's transition raises it
    _batch(j, "Holding", "Running")  # a hold by the system nothing explained: a phase failure
    _batch(j, "Held", "Holding")
    j.audit("trip", "system", "supervisor.lost", "supervisor interrupted", {})
    j.audit("refusal", "qa1", "batch.close_record", "IL-06: no end glove test", {})
    _batch(j, "Holding", "Running", "op1")  # held by a person: not a deviation by itself
    _batch(j, "Aborted", "Aborting", "sup1")
    devs = qa.deviations(rec, "B-2")
    assert sorted(d.source for d in devs) == sorted([
        "recipe_step_refused", "em_excursion_open_phase", "bypass", "hold_beyond_max", "phase_failure",
        "supervisor_interrupted", "end_glove_test_missing", "batch_aborted"])
    by = {d.source: d for d in devs}
    assert by["em_excursion_open_phase"].cls == "critical" and by["batch_aborted"].cls == "critical"
    assert by["recipe_step_refused"].cls == "minor"
    trans = rec.entries("B-2", kinds=["phase_transition"])
    held = next(e for e in trans if e.payload["to"] == "Held")
    restart = next(e for e in trans if e.payload["to"] == "Restarting")
    assert [x["seq"] for x in by["hold_beyond_max"].links] == [held.seq, restart.seq]
    second_hold = [e for e in trans if e.payload["to"] == "Holding"][1]
    assert by["phase_failure"].links[0]["seq"] == second_hold.seq
    assert rec.verify().ok


def test_entries_written_late_after_a_record_failure_raise_a_record_write_failure_deviation(rec, clock):
    j = BatchJournal(rec, clock.now, lambda: "B-3")
    _batch(j, "Running", "Idle", "op1")
    rec.close()  # the store refuses every append now
    j.audit("note", "op1", "note.add", "while the record failed", {})
    j.audit("trip", "system", "interlock.IL-12", "particle counter failed", {"rule": "IL-12"})
    assert len(j.unwritten) == 2
    path = rec.path
    with BatchRecord(path, clock) as again:
        j.record = again
        assert j.flush_unwritten() == 0
        devs = {d.source: d for d in qa.deviations(again, "B-3")}
        assert set(devs) == {"interlock_trip", "record_write_failure"}
        late = [e for e in again.entries("B-3") if "late" in e.payload]
        assert [x["seq"] for x in devs["record_write_failure"].links] == [e.seq for e in late]
        assert again.verify().ok


def test_after_the_batch_ended_the_cells_alarms_and_trips_are_not_the_batchs(rec, clock):
    """The executive keeps the ended batch's id while the cell idles: its alarms, trips and EM then
    are the cell's (found over the graph: idle alarms kept changing a batch QA was signing)."""
    j = _tripped_batch(rec, clock)
    before = len(qa.deviations(rec, "B-1"))
    j.audit("alarm", "system", "alarm.raised", "particle alert while idle", {})
    j.audit("trip", "system", "interlock.RB-02", "comm lost with VHP1", {"rule": "RB-02"})
    j.audit("command", "qa1", "batch.close_record", "record closed", {})  # still the batch's
    last = rec.entries()[-3:]
    assert [(e.kind, e.batch_id) for e in last] == [("alarm", ""), ("trip", ""), ("command", "B-1")]
    assert last[0].payload["after_batch"] == "B-1" and len(qa.deviations(rec, "B-1")) == before
    assert not qa.deviations(rec, "")  # a cell-level trip is no batch's deviation


def test_coi_mismatch_deviations_of_the_custody_log_are_read_with_the_same_shape(rec, clock):
    rec.append("deviation", batch_id="B-4", actor="system", action="deviation.raise", reason="COI mismatch",
               payload={"deviation": "DEV-B-4-COI-001", "rule": "COI-02", "description": "wrong bag",
                        "coi_expected": "W1234", "batch": "B-4"})
    dev = _only_dev(rec, "B-4")
    assert dev.source == "coi_mismatch" and dev.cls == "critical" and dev.open


def test_a_deviation_raised_without_an_id_is_named_by_its_seq_and_blocks_the_disposition(rec, clock, users):
    """A patient batch's INT-02 deviation (supervisor/patients.py) carries no id: it is still an open
    deviation of the batch, closed by QA like any other, and the hold does not raise a second one."""
    j = _tripped_batch(rec, clock, end="")
    _close_all(rec, users)
    j.auto.policy = qa.DeviationPolicy.from_mapping({"max_hold_s": 60})
    _batch(j, "Held", "Holding")
    clock.t += 120.0
    j.audit("deviation", "system", "deviation.raise", "INT-02: held 120 s > max_hold 60 s", {"rule": "INT-02"})
    _batch(j, "Restarting", "Held", "sup1")
    _batch(j, "Running", "Restarting")
    _batch(j, "Complete", "Running")
    open_devs = [d for d in qa.deviations(rec, "B-1") if d.open]
    assert [(d.source, d.id) for d in open_devs] == [("hold_beyond_max", f"DEV-B-1-S{open_devs[0].raised_seq}")]
    with pytest.raises(qa.DeviationError) as e:
        qa.dispose(rec, users, "qa1", PW["qa1"], "B-1", "release")
    assert e.value.code == "DEVIATION_OPEN"
    _close_all(rec, users)
    assert qa.dispose(rec, users, "qa1", PW["qa1"], "B-1", "release").action == "disposition.release"


def test_deviations_yaml_is_validated():
    with pytest.raises(ValueError, match="unknown source"):
        qa.DeviationPolicy.from_mapping({"default_class": {"trips": "major"}})
    with pytest.raises(ValueError, match="class must be one of"):
        qa.DeviationPolicy.from_mapping({"default_class": {"bypass": "severe"}})
    with pytest.raises(ValueError, match="max_hold_s"):
        qa.DeviationPolicy.from_mapping({"max_hold_s": 0})


# ------------------------------------------------------------------ item 1: lifecycle, by hand
def test_deviation_lifecycle_raised_classified_investigated_closed_by_qa_with_signature(rec, clock, users):
    _tripped_batch(rec, clock, end="")
    trip = rec.entries("B-1", kinds=["trip"])[0]
    with pytest.raises(qa.DeviationError) as e:
        qa.raise_deviation(rec, users, "op1", "B-1", "short")
    assert e.value.code == "INVALID"
    with pytest.raises(qa.DeviationError) as e:
        qa.raise_deviation(rec, users, "op1", "B-1", "an operator saw a torn sleeve", links=[99999])
    assert e.value.code == "INVALID"
    dev = qa.raise_deviation(rec, users, "op1", "B-1", "an operator saw a torn sleeve on GP2", links=[trip.seq])
    assert dev.source == "manual" and dev.cls == "minor" and dev.links[0]["hash"] == trip.hash
    with pytest.raises(qa.DeviationError) as e:
        qa.classify(rec, users, "op1", dev.id, "major", "operators do not classify")
    assert e.value.code == "PERMISSION"
    assert qa.classify(rec, users, "qa1", dev.id, "major", "product contact possible").cls == "major"
    assert qa.investigate(rec, users, "eng1", dev.id, "sleeve seam split at the cuff ring").state == "INVESTIGATED"
    for who, pw, code in (("op1", PW["op1"], "PERMISSION"), ("sup1", PW["sup1"], "PERMISSION"),
                          ("qa1", "wrong-password", "SIGNATURE"), ("qa1", "", "SIGNATURE")):
        with pytest.raises(qa.DeviationError) as e:
            qa.close_deviation(rec, users, who, pw, dev.id, "seam failure of glove lot 42, lot blocked")
        assert e.value.code == code, (who, e.value.reason)
    with pytest.raises(qa.DeviationError) as e:
        qa.close_deviation(rec, users, "qa1", PW["qa1"], dev.id, "bad")
    assert e.value.code == "INVALID"
    assert qa.deviations(rec, "B-1")[1].open  # nothing closed by a refusal
    closed = qa.close_deviation(rec, users, "qa1", PW["qa1"], dev.id, "seam failure of glove lot 42, lot blocked")
    assert closed.state == "CLOSED" and closed.closed_by == "qa1"
    sig = rec.get(closed.closed_seq - 1)
    assert sig.kind == "signature" and sig.payload["meaning"] == "approval" and sig.payload["user_id"] == "qa1"
    assert dev.id in sig.payload["signed_content"] and "glove lot 42" in sig.payload["signed_content"]
    with pytest.raises(qa.DeviationError) as e:
        qa.close_deviation(rec, users, "qa1", PW["qa1"], dev.id, "closing it a second time")
    assert e.value.code == "STATE"
    report = rec.verify()
    assert report.ok and report.signatures_checked >= 1
    refusals = [x for x in rec.entries("B-1", kinds=["refusal"]) if x.payload.get("source") == "qa"]
    assert {x.payload["code"] for x in refusals} >= {"INVALID", "PERMISSION", "SIGNATURE", "STATE"}


def test_the_person_who_raised_a_deviation_cannot_close_it(rec, clock, users):
    _tripped_batch(rec, clock)
    dev = qa.raise_deviation(rec, users, "qa1", "B-1", "label printer smeared lot text")
    with pytest.raises(qa.DeviationError) as e:
        qa.close_deviation(rec, users, "qa1", PW["qa1"], dev.id, "printer ribbon replaced, labels reprinted")
    assert e.value.code == "PERMISSION" and "second person" in e.value.reason


# ------------------------------------------------------------------ item 4: disposition refusals
def _close_all(rec, users, batch: str = "B-1") -> None:
    for d in qa.deviations(rec, batch):
        if d.open:
            qa.close_deviation(rec, users, "qa1", PW["qa1"], d.id, "assessed: glove replaced and retested PASS")


def test_disposition_is_refused_while_a_deviation_is_open_and_released_once_closed(rec, clock, users):
    _tripped_batch(rec, clock)
    head = rec.head()
    for decision in ("release", "reject"):
        with pytest.raises(qa.DeviationError) as e:
            qa.dispose(rec, users, "qa1", PW["qa1"], "B-1", decision)
        assert e.value.code == "DEVIATION_OPEN" and "DEV-B-1-A" in e.value.reason
    assert qa.disposition_status(rec, "B-1")["state"] == "OPEN"
    assert not rec.entries("B-1", kinds=["disposition"]) and rec.head()[0] == head[0] + 2  # the 2 refusals only
    _close_all(rec, users)
    entry = qa.dispose(rec, users, "qa1", PW["qa1"], "B-1", "release")
    sig = rec.get(entry.payload["signature_seq"])
    assert entry.action == "disposition.release" and sig.payload["meaning"] == "approval"
    assert (entry.payload["head_seq"], entry.payload["head_hash"]) == (sig.seq - 1, rec.get(sig.seq - 1).hash)
    assert f'"head_hash":"{entry.payload["head_hash"]}"' in sig.payload["signed_content"]  # signed over the head
    st = qa.disposition_status(rec, "B-1")
    assert st["state"] == "RELEASED" and st["by"] == "qa1"
    assert rec.verify().ok


def test_disposition_is_refused_while_the_batch_has_not_ended(rec, clock, users):
    _tripped_batch(rec, clock, end="")
    _close_all(rec, users)
    with pytest.raises(qa.DeviationError) as e:
        qa.dispose(rec, users, "qa1", PW["qa1"], "B-1", "release")
    assert e.value.code == "BATCH_NOT_ENDED"
    with pytest.raises(qa.DeviationError) as e:
        qa.dispose(rec, users, "qa1", PW["qa1"], "B-NONE", "release")
    assert e.value.code == "INVALID"


def test_disposition_is_refused_when_the_chain_does_not_verify(tmp_path, clock, users):
    path = tmp_path / "t.db"
    with BatchRecord(path, clock) as rec:
        _tripped_batch(rec, clock)
        _close_all(rec, users)
    raw = sqlite3.connect(str(path), isolation_level=None)
    raw.execute("DROP TRIGGER entries_no_update")
    raw.execute("UPDATE entries SET reason = 'nothing happened' WHERE kind = 'trip'")  # a hidden trip
    raw.close()
    with BatchRecord(path, clock) as rec:
        with pytest.raises(qa.DeviationError) as e:
            qa.dispose(rec, users, "qa1", PW["qa1"], "B-1", "release")
        assert e.value.code == "CHAIN_INVALID" and "hash mismatch" in e.value.reason
        assert not rec.entries("B-1", kinds=["disposition"])


def test_only_qa_may_disposition_and_only_with_its_password(rec, clock, users):
    _tripped_batch(rec, clock)
    _close_all(rec, users)
    for who, pw, code in (("op1", PW["op1"], "PERMISSION"), ("sup1", PW["sup1"], "PERMISSION"),
                          ("eng1", PW["eng1"], "PERMISSION"), ("op2", "op2-demo-2026", "PERMISSION"),
                          ("nobody", "x", "PERMISSION"), ("qa1", "wrong-password", "SIGNATURE"),
                          ("qa1", "", "SIGNATURE")):
        with pytest.raises(qa.DeviationError) as e:
            qa.dispose(rec, users, who, pw, "B-1", "release")
        assert e.value.code == code, (who, e.value.reason)
    with pytest.raises(qa.DeviationError) as e:
        qa.dispose(rec, users, "qa1", PW["qa1"], "B-1", "approve")
    assert e.value.code == "INVALID"
    assert qa.disposition_status(rec, "B-1")["state"] == "OPEN"


def test_an_aborted_batch_ends_in_a_signed_reject_or_a_release_with_justification(rec, clock, users):
    """IL-06's dead end: the abort raised a critical deviation; once QA closed it, the batch is
    dispositioned, and a release needs a written justification."""
    _tripped_batch(rec, clock, end="Aborted")
    assert {d.source for d in qa.deviations(rec, "B-1")} == {"interlock_trip", "batch_aborted"}
    _close_all(rec, users)
    with pytest.raises(qa.DeviationError) as e:
        qa.dispose(rec, users, "qa1", PW["qa1"], "B-1", "release")
    assert e.value.code == "JUSTIFICATION_REQUIRED" and "aborted" in e.value.reason
    entry = qa.dispose(rec, users, "qa1", PW["qa1"], "B-1", "release",
                       justification="aborted after fill; sterility and identity retested PASS (QC-778)")
    assert entry.payload["dead_end"] == "the batch was aborted" and "QC-778" in entry.payload["justification"]


def test_a_missing_end_glove_test_needs_a_justification_to_release_but_not_to_reject(rec, clock, users):
    j = _tripped_batch(rec, clock)
    j.audit("refusal", "qa1", "batch.close_record", "IL-06: the end-of-batch glove test did not pass", {})
    _close_all(rec, users)
    with pytest.raises(qa.DeviationError) as e:
        qa.dispose(rec, users, "qa1", PW["qa1"], "B-1", "release")
    assert e.value.code == "JUSTIFICATION_REQUIRED" and "IL-06" in e.value.reason
    assert qa.dispose(rec, users, "qa1", PW["qa1"], "B-1", "reject").action == "disposition.reject"


def test_an_entry_of_the_batch_written_while_qa_signs_refuses_the_disposition(rec, clock, users):
    """The record is shared with other writers: the signed head must still be the batch's last entry."""
    _tripped_batch(rec, clock)
    _close_all(rec, users)

    class Racing:  # another writer appends to the batch while QA types the password
        def __getattr__(self, name):
            return getattr(users, name)

        def sign(self, *a, **k):
            rec.append("intervention", batch_id="B-1", actor="sup1", action="ISO1.recover", reason="late step")
            return users.sign(*a, **k)

    with pytest.raises(qa.DeviationError) as e:
        qa.dispose(rec, Racing(), "qa1", PW["qa1"], "B-1", "release")
    assert e.value.code == "CONCURRENT_CHANGE"
    assert qa.disposition_status(rec, "B-1")["state"] == "OPEN"
    assert qa.dispose(rec, users, "qa1", PW["qa1"], "B-1", "release").action == "disposition.release"


# ------------------------------------------------------------------ item 4: closed record
def test_a_released_batch_refuses_every_append_and_every_qa_action(rec, clock, users):
    j = _tripped_batch(rec, clock)
    _close_all(rec, users)
    qa.dispose(rec, users, "qa1", PW["qa1"], "B-1", "release")
    head = rec.head()
    with pytest.raises(RecordClosedError, match="released by QA"):
        rec.append("note", batch_id="B-1", actor="op1", action="note.add", reason="late remark")
    with pytest.raises(RecordClosedError):
        rec.correct(3, actor="sup1", role="supervisor", reason="typo", changes={"reason": ("a", "b")})
    # what the executive still writes under the released batch's id (its reset to Idle) goes to the
    # cell level, naming the batch: recorded, the released batch unchanged, nothing held
    _batch(j, "Idle", "Complete", "op1")
    moved = rec.entries()[-1]
    assert not j.unwritten and moved.batch_id == "" and moved.payload["closed_batch"] == "B-1"
    for call, code in ((lambda: qa.dispose(rec, users, "qa1", PW["qa1"], "B-1", "reject"), "DISPOSITIONED"),
                       (lambda: qa.raise_deviation(rec, users, "op1", "B-1", "found something later"),
                        "DISPOSITIONED")):
        with pytest.raises(qa.DeviationError) as e:
            call()
        assert e.value.code == code
    assert all(e.batch_id == "" for e in rec.entries() if e.seq > head[0])  # refusals are cell-level
    rec.append("note", batch_id="B-OTHER", actor="op1", action="note.add", reason="another batch is open")
    assert rec.verify().ok


def test_a_signed_post_release_correction_reopens_the_disposition(rec, clock, users):
    _tripped_batch(rec, clock)
    _close_all(rec, users)
    qa.dispose(rec, users, "qa1", PW["qa1"], "B-1", "release")
    start = rec.entries("B-1", kinds=["command"])[0]
    for who, pw, code in (("sup1", PW["sup1"], "PERMISSION"), ("qa1", "wrong-password", "SIGNATURE")):
        with pytest.raises(qa.DeviationError) as e:
            qa.correct_after_release(rec, users, who, pw, "B-1", start.seq, "recipe version mistyped on start",
                                     {"recipe_version": (1, 2)})
        assert e.value.code == code
    # forged: a correction whose "signature" does not cover its content is refused by the store
    with pytest.raises(RecordClosedError, match="does not cover"):
        rec.append("correction", batch_id="B-1", actor="qa1", action="record.post_release_correction",
                   reason="forged", payload={"signature": {"user_id": "qa1", "record_hash": "0" * 64,
                                                           "signed_content": "{}"}})
    c = qa.correct_after_release(rec, users, "qa1", PW["qa1"], "B-1", start.seq, "recipe version mistyped on start",
                                 {"recipe_version": (1, 2)})
    assert c.payload["corrects_hash"] == start.hash and c.payload["signature"]["meaning"] == "responsibility"
    assert qa.disposition_status(rec, "B-1")["state"] == "REOPENED"
    rec.append("note", batch_id="B-1", actor="qa1", action="note.add", reason="reopened: appendable")
    with pytest.raises(qa.DeviationError) as e:  # reopened: it must be dispositioned again
        qa.correct_after_release(rec, users, "qa1", PW["qa1"], "B-1", start.seq, "again", {"x": (1, 2)})
    assert e.value.code == "STATE"
    qa.dispose(rec, users, "qa1", PW["qa1"], "B-1", "release")
    assert qa.disposition_status(rec, "B-1")["state"] == "RELEASED"
    with pytest.raises(RecordClosedError):
        rec.append("note", batch_id="B-1", actor="qa1", action="note.add", reason="closed again")
    assert rec.verify().ok


# ------------------------------------------------------------------ CLI, HMI, report
def _sealed(tmp_path, monkeypatch):
    from aseptic_cell.records.seal import init_seal_key, load_sealer

    sec = tmp_path / "security"
    monkeypatch.setenv("ASEPTIC_CELL_SECURITY_DIR", str(sec))
    init_seal_key(sec)
    return load_sealer(sec)


def test_cellctl_record_deviation_and_disposition(tmp_path, monkeypatch, capsys, clock, cfg_dir):
    from aseptic_cell.cli import main

    sealer = _sealed(tmp_path, monkeypatch)
    path = tmp_path / "cli.db"
    with BatchRecord(path, clock, sealer=sealer) as rec:
        _tripped_batch(rec, clock)
    f = str(path)
    CFG = ["--config", str(cfg_dir)]  # noqa: N806
    monkeypatch.setenv("QA_PW", PW["qa1"])
    monkeypatch.setenv("OP_PW", PW["op1"])
    assert main(["record", "deviation", "list", f, *CFG]) == 0
    out = capsys.readouterr().out
    assert "batch B-1: 1 deviation(s), 1 open" in out and "[major] RAISED (interlock_trip)" in out
    with BatchRecord(path, clock) as rec:
        dev_id = _only_dev(rec, "B-1").id
    assert main(["record", "disposition", f, *CFG, "--release", "--user", "qa1", "--password-env", "QA_PW"]) == 1
    assert "REFUSED (DEVIATION_OPEN)" in capsys.readouterr().err
    assert main(["record", "disposition", f, *CFG, "--release", "--user", "op1", "--password-env", "OP_PW"]) == 1
    assert "REFUSED (PERMISSION)" in capsys.readouterr().err
    assert main(["record", "deviation", "raise", f, *CFG, "--user", "op1", "--description", "cuff ring loose on GP2",
                 "--class", "major"]) == 0
    assert "DEV-B-1-M001 [major] RAISED" in capsys.readouterr().out
    for d in (dev_id, "DEV-B-1-M001"):
        assert main(["record", "deviation", "close", f, d, *CFG, "--user", "qa1", "--password-env", "QA_PW",
                     "--root-cause", "glove lot 42 seam failure, lot blocked"]) == 0
    assert "CLOSED" in capsys.readouterr().out
    assert main(["record", "disposition", f, *CFG, "--status"]) == 0
    assert "batch B-1: OPEN" in capsys.readouterr().out
    assert main(["record", "disposition", f, *CFG, "--release", "--user", "qa1", "--password-env", "QA_PW"]) == 0
    assert "batch B-1 released at seq" in capsys.readouterr().out
    assert main(["record", "verify", f]) == 0  # still sealed to the head: the CLI wrote with the cell key
    assert main(["record", "deviation", "raise", f, *CFG, "--user", "op1", "--description", "after the release"]) == 1
    assert "REFUSED (DISPOSITIONED)" in capsys.readouterr().err


def test_cellctl_disposition_refuses_a_rewritten_record_with_a_recomputed_chain(tmp_path, monkeypatch, capsys,
                                                                               clock, users, cfg_dir):
    """The walk of `cellctl record verify`: a chain recomputed without the cell key is refused."""
    from aseptic_cell.cli import main

    sealer = _sealed(tmp_path, monkeypatch)
    path = tmp_path / "cli.db"
    with BatchRecord(path, clock, sealer=sealer) as rec:
        _tripped_batch(rec, clock)
        _close_all(rec, users)
    other = tmp_path / "rewritten.db"
    with BatchRecord(path, clock) as src, BatchRecord(other, clock) as dst:  # same content, no cell key
        for e in src.entries():
            dst.append(e.kind, batch_id=e.batch_id, actor=e.actor, role=e.role, action=e.action, reason=e.reason,
                       payload=e.payload)
    monkeypatch.setenv("QA_PW", PW["qa1"])
    assert main(["record", "disposition", str(other), "--config", str(cfg_dir), "--release", "--user", "qa1",
                 "--password-env", "QA_PW"]) == 1
    assert "REFUSED (CHAIN_INVALID)" in capsys.readouterr().err


def test_hmi_disposition_routes(tmp_path, monkeypatch, clock, users):
    from fastapi.testclient import TestClient

    from aseptic_cell.hmi.app import create_app
    from aseptic_cell.hmi.config import HmiConfig

    monkeypatch.setenv("ASEPTIC_CELL_SECURITY_DIR", str(tmp_path / "no-key"))  # unsealed record, no key
    path = tmp_path / "hmi.db"
    with BatchRecord(path, clock) as rec:
        _tripped_batch(rec, clock)

    class Backend:
        def start(self, hub):
            pass

        def stop(self):
            pass

        def snapshot(self):
            return {"devices": {}, "batch": {"batch_id": "B-1", "record_path": str(path)}}

        def trends(self):
            return {}

        def record_path(self):
            return str(path)

    app = create_app(HmiConfig(), Backend(), users, plant={"cell": {"name": "test"}})
    base = "http://127.0.0.1:8700"
    with TestClient(app, base_url=base) as c:
        assert c.get("/api/record/deviations").status_code == 401
        csrf = c.post("/api/login", json={"user": "op1", "password": PW["op1"]}).json()["csrf"]
        h = {"X-CSRF-Token": csrf}
        devs = c.get("/api/record/deviations").json()["deviations"]
        assert len(devs) == 1 and devs[0]["class"] == "major"
        r = c.post("/api/record/deviations", headers=h, json={"description": "sleeve seam worn at GP3"})
        assert r.status_code == 200 and r.json()["deviation"]["id"] == "DEV-B-1-M001"
        sig = {"user": "op1", "password": PW["op1"]}
        r = c.post("/api/record/disposition", headers=h, json={"decision": "release", "signature": sig})
        assert r.status_code == 403 and r.json()["error"]["code"] == "ROLE_FORBIDDEN"
        r = c.post(f"/api/record/deviations/{devs[0]['id']}/close", headers=h,
                   json={"root_cause": "glove lot 42 seam failure", "signature": sig})
        assert r.status_code == 403 and r.json()["error"]["upstream_code"] == "PERMISSION"
        c.post("/api/logout", headers=h)
        csrf = c.post("/api/login", json={"user": "qa1", "password": PW["qa1"]}).json()["csrf"]
        h = {"X-CSRF-Token": csrf}
        sig = {"user": "qa1", "password": PW["qa1"]}
        r = c.post("/api/record/disposition", headers=h, json={"decision": "release", "signature": sig})
        assert r.status_code == 409 and r.json()["error"]["upstream_code"] == "DEVIATION_OPEN"
        blocking = c.get("/api/record/disposition").json()["blocking"]
        assert [b["code"] for b in blocking] == ["DEVIATION_OPEN"]
        for d in c.get("/api/record/deviations").json()["deviations"]:
            r = c.post(f"/api/record/deviations/{d['id']}/close", headers=h,
                       json={"root_cause": "glove lot 42 seam failure, lot blocked", "signature": sig})
            assert r.status_code == 200 and r.json()["deviation"]["state"] == "CLOSED", r.text
        r = c.post("/api/record/disposition", headers=h,
                   json={"decision": "release", "signature": {**sig, "password": "wrong-password"}})
        assert r.status_code == 403 and r.json()["error"]["code"] == "SIGNATURE_REFUSED"
        r = c.post("/api/record/disposition", headers=h, json={"decision": "release", "signature": sig})
        assert r.status_code == 200 and r.json()["decision"] == "release", r.text
        assert c.get("/api/record/disposition").json()["state"] == "RELEASED"
    assert verify_file(path).ok


def test_the_batch_report_shows_the_deviations_and_the_disposition(rec, clock, users):
    from aseptic_cell.report import build_report, render_html

    _tripped_batch(rec, clock)
    _close_all(rec, users)
    qa.dispose(rec, users, "qa1", PW["qa1"], "B-1", "release")
    report = build_report(rec.path, "B-1", plots=False)
    assert report.disposition["state"] == "RELEASED" and report.deviations[0]["state"] == "CLOSED"
    html = render_html(report)
    assert "Deviations and disposition" in html and "RELEASED" in html and report.deviations[0]["id"] in html


def test_the_alarm_manager_files_a_released_batchs_alarm_events_at_cell_level(rec, clock, users):
    """It keeps the last batch id while the cell idles: after the release its events must neither be
    refused for ever (its queue would block every later alarm event) nor change the batch."""
    from aseptic_cell.alarms.manager import AlarmManager
    from aseptic_cell.config.loader import load_config

    _tripped_batch(rec, clock)
    _close_all(rec, users)
    mgr = AlarmManager(load_config(REPO / "config").alarms, clock, rec)
    mgr.set_batch("B-1")
    qa.dispose(rec, users, "qa1", PW["qa1"], "B-1", "release")
    mgr.raise_("CELL_INTERLOCK_TRIP", "supervisor", True, "after the release")
    mgr.raise_("CELL_RECORD_FAULT", "supervisor", True, "and the next one")
    written = rec.entries(kinds=["alarm"])
    assert len(written) >= 2 and all(e.batch_id == "" and e.payload["closed_batch"] == "B-1" for e in written)
    assert qa.disposition_status(rec, "B-1")["state"] == "RELEASED" and rec.verify().ok
