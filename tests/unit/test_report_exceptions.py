"""Review by exception (issue 15 item 2): from a real record, only the departures from the recipe,
each linked to its entry; the reviewer's "reviewed" e-signature through the record store."""

from __future__ import annotations

import py_trees
import pytest

from aseptic_cell.auth import UserDirectory
from aseptic_cell.config import default_config_dir, load_config
from aseptic_cell.records import BatchRecord, content_hash, verify_file
from aseptic_cell.report import ReviewRefused, load_batch, review_by_exception, sign_reviewed
from aseptic_cell.supervisor.runner import InProcessRun


class FakeClock:
    def __init__(self, t: float = 1_780_000_000.0) -> None:
        self.t = t

    def now(self) -> float:
        self.t += 1.0
        return self.t


@pytest.fixture(autouse=True)
def _clean_blackboard():
    yield
    py_trees.blackboard.Blackboard.clear()


@pytest.fixture(scope="module")
def cfg():
    return load_config(default_config_dir())


class SimTime:
    """The record's clock: the in-process cell's sim clock once the run exists."""

    clock = None

    def now(self) -> float:
        return self.clock.now() if self.clock is not None else 0.0


def _run(cfg, path) -> tuple[InProcessRun, BatchRecord]:
    t = SimTime()
    rec = BatchRecord(path, t)
    run = InProcessRun(cfg, tick_s=5.0, record=rec)
    t.clock = run.cell.sim.clock
    return run, rec


@pytest.fixture(scope="module")
def trip_record(cfg, tmp_path_factory):
    """An in-process batch with one refused operator command and a trip (VHP unit lost)."""
    path = tmp_path_factory.mktemp("trip") / "trip.db"
    run, rec = _run(cfg, path)
    sup = run.sup
    assert sup.run_batch("CART-TRANSDUCTION", "B-TRIP", "op1").accepted
    run.advance(60)
    out, _ = sup.operate("isolator", "open_alpha", {"rtp": "RTP1"}, "op1")
    assert not out.accepted and "IL-02" in out.reason
    run.advance(20)
    run.cell.inject_fault("VHP1", "comm_loss")
    run.tick_once()
    assert sup.sm.state.value == "Held"
    run.advance(30)
    rec.close()
    py_trees.blackboard.Blackboard.clear()
    return path


def test_a_batch_with_a_trip_and_a_refusal_lists_exactly_those_departures(trip_record):
    src = load_batch(trip_record)
    review = review_by_exception(src)
    by_seq = {e.seq: e for e in src.entries}
    got = {(d.category, d.seq) for d in review.departures}
    refusals = {e.seq for e in src.entries if e.kind == "refusal"}
    trips = {e.seq for e in src.entries if e.kind == "trip"}
    holds = {e.seq for e in src.entries
             if e.kind == "phase_transition" and e.payload.get("level") == "batch" and e.payload.get("to") == "Holding"}
    comm = {e.seq for e in src.entries if e.kind == "alarm" and e.action == "VHP1.comm_lost"}
    devs = {e.seq for e in src.entries if e.kind == "deviation"}  # the hold's, raised by the journal (issue 15)
    assert refusals and trips and len(holds) == 1 and len(comm) == 1 and len(devs) == 1
    expected = ({("refusal", s) for s in refusals} | {("trip", s) for s in trips} | {("hold", s) for s in holds}
                | {("alarm", s) for s in comm} | {("deviation", s) for s in devs})
    assert got == expected
    operator_refusal = [d for d in review.departures if d.category == "refusal" and d.actor == "op1"]
    assert len(operator_refusal) == 1 and "IL-02" in operator_refusal[0].summary
    for d in review.departures:  # each links to the entry that shows it
        assert by_seq[d.seq].hash == d.entry_hash and d.link == f"seq {d.seq} / sha256:{d.entry_hash}"
    # commands, phases, cycle steps and the low-priority alarms of this cell are not departures
    assert not {e.kind for e in src.entries if e.seq in {d.seq for d in review.departures}} & {"command", "environment"}
    # lowering the alarm threshold lists the raised low-priority alarms too (configurable)
    low = review_by_exception(src, min_priority="low")
    raised = {e.seq for e in src.entries if e.kind == "alarm" and e.payload.get("event") == "raised"}
    assert {d.seq for d in low.departures if d.category == "alarm"} == raised | comm
    assert review.chain_ok and review.people["op1"]["by_kind"]["refusal"] == 1


def test_a_clean_batch_has_no_departure_beyond_the_configured_alarms(cfg, tmp_path):
    run, rec = _run(cfg, tmp_path / "clean.db")
    assert run.sup.run_batch("CART-TRANSDUCTION", "B-CLEAN", "op1").accepted
    run.advance(500)  # glove test, into the leak test (a low-priority alarm): no fault, no refusal
    assert run.sup.sm.state.value == "Running"
    rec.close()
    assert review_by_exception(tmp_path / "clean.db").departures == []
    low = review_by_exception(tmp_path / "clean.db", min_priority="low")
    assert low.departures and {d.category for d in low.departures} == {"alarm"}
    assert all("(low)" in d.summary for d in low.departures)


def test_each_kind_of_departure_is_recognised_and_a_person_s_changes_listed(tmp_path):
    clock = FakeClock()
    with BatchRecord(tmp_path / "r.db", clock) as rec:
        start = rec.append("command", batch_id="B1", actor="op1", role="operator", action="batch.start",
                           payload={"recipe_id": "R", "recipe_version": 1})
        rec.append("command", batch_id="B1", actor="op1", role="operator", action="ISO1.close_door", reason="ok")
        rec.append("command", batch_id="B1", actor="sup1", role="supervisor", action="bypass.request",
                   reason="sensor swap", payload={"rule": "IL-12"})
        rec.append("intervention", batch_id="B1", actor="sup1", role="supervisor", action="arm.recover", reason="jam")
        rec.append("deviation", batch_id="B1", actor="qa1", role="qa", action="deviation.raise", reason="late sample")
        rec.correct(start.seq, actor="sup1", role="supervisor", reason="typo", changes={"recipe_version": (1, 2)})
        rec.record_cycle_result("autoclave", {"result": "FAIL", "run_id": "AC1-0009", "reason": "F0 below target",
                                              "reasons": ["F0 10.2 < 12"]}, batch_id="B1")
        rec.append("environment", batch_id="B1", actor="system", action="PH-X.em_summary",
                   payload={"phase": "PH-X", "alert_excursions": 0, "action_excursions": 2, "monitoring_valid": True})
        rec.append("environment", batch_id="B1", actor="system", action="PH-Y.em_summary",
                   payload={"phase": "PH-Y", "alert_excursions": 0, "action_excursions": 0, "monitoring_valid": True})
        rec.append("alarm", batch_id="B1", actor="system", action="alarm.raised",
                   payload={"alarm_id": "X_HIGH", "event": "raised", "priority": "high", "message": "too hot"})
        rec.append("alarm", batch_id="B1", actor="system", action="alarm.raised",
                   payload={"alarm_id": "X_LOW", "event": "raised", "priority": "low", "message": "a bit warm"})
        rec.append("trip", batch_id="B1", actor="system", action="supervisor.lost", reason="supervisor restarted")
        rec.append("command", batch_id="B1", actor="op1", role="operator", action="ISO1.open_door",
                   payload={"late": {"original_t": 1.0, "error": "disk full"}})
        rec.append("custody", batch_id="B1", actor="op1", role="operator", action="custody.scan",
                   reason="label scanned", payload={"container_ids": ["BAG-1"], "coi_id": "COI-1",
                                                    "verification_result": {"code": "OK", "action": "PROCEED"}})
        rec.append("custody", batch_id="B1", actor="op1", role="operator", action="custody.scan",
                   reason="label of another patient",
                   payload={"container_ids": ["BAG-9"], "coi_id": "COI-1",
                            "verification_result": {"code": "COI_MISMATCH", "action": "STOP"}})
        rec.append("auth", batch_id="", actor="system", action="auth.failed", payload={"user_id": "sup1"})
        rec.append("phase_transition", batch_id="B1", actor="sup1", role="supervisor", action="batch.abort",
                   reason="contaminated", payload={"level": "batch", "from": "Held", "to": "Aborting"})
    review = review_by_exception(tmp_path / "r.db")
    cats = [d.category for d in review.departures]
    assert cats == ["bypass", "intervention", "deviation", "correction", "out_of_band", "out_of_band", "alarm",
                    "interruption", "record_fault", "custody", "access", "abort"]
    assert "F0 10.2 < 12" in review.departures[4].summary and "2 action-level" in review.departures[5].summary
    assert review.counts()["out_of_band"] == 2
    changed = {(c.actor, c.action) for c in review.changes}
    assert {("sup1", "bypass.request"), ("sup1", "record.correct"), ("qa1", "deviation.raise"),
            ("sup1", "arm.recover")} <= changed
    assert ("op1", "ISO1.close_door") not in changed  # a routine command is no change
    assert review.people["sup1"]["role"] == "supervisor"


def test_reviewer_signs_reviewed_with_meaning_review_and_roles_are_checked(trip_record, tmp_path):
    import shutil

    path = tmp_path / "r.db"
    shutil.copy(trip_record, path)
    clock = FakeClock()
    with BatchRecord(path, clock) as rec:
        users = UserDirectory.from_file(default_config_dir() / "users.yaml", clock, record=rec)
        with pytest.raises(ReviewRefused, match="role 'operator' may not perform 'record.review'"):
            sign_reviewed(rec, users, "op1", "op1-demo-2026")
        entry = sign_reviewed(rec, users, "qa1", "qa1-demo-2026", comment="trip investigated")
    assert entry.kind == "signature" and entry.action == "record.review" and entry.batch_id == "B-TRIP"
    p = entry.payload
    assert p["meaning"] == "review" and p["full_name"] == "Quinn Quality (demo)"
    assert p["signed_at_iso"].endswith("+00:00")
    assert content_hash(p["subject"]) == p["record_hash"]  # the signed content is stored and re-verifiable
    after = review_by_exception(path)
    # every departure, linked by seq and hash
    assert p["subject"]["departures"] == [[d.seq, d.entry_hash, d.category] for d in after.departures]
    assert after.reviews and after.reviews[0]["covers_stored_subject"] and after.reviews[0]["user_id"] == "qa1"
    assert verify_file(path).ok


def test_cellctl_record_review_signs_with_the_password_from_the_environment(trip_record, tmp_path, monkeypatch,
                                                                           capsys):
    import shutil

    from aseptic_cell.cli import main as cellctl

    path = tmp_path / "r.db"
    shutil.copy(trip_record, path)
    monkeypatch.setenv("ASEPTIC_CELL_SECURITY_DIR", str(tmp_path / "security"))  # the cell's lock-out store
    monkeypatch.setenv("REVIEW_PW", "wrong-password")
    assert cellctl(["record", "review", str(path), "--user", "sup1", "--password-env", "REVIEW_PW"]) == 1
    assert "invalid user id or password" in capsys.readouterr().err
    monkeypatch.setenv("REVIEW_PW", "sup1-demo-2026")
    assert cellctl(["record", "review", str(path), "--user", "sup1", "--password-env", "REVIEW_PW",
                    "--comment", "reviewed, trip explained"]) == 0
    out = capsys.readouterr().out
    assert "[refusal]" in out and "[trip]" in out and "meaning: REVIEW" in out
    with BatchRecord(path, FakeClock()) as rec:
        failed = [e for e in rec.entries(kinds=["auth"]) if e.action == "auth.failed"]
        sig = rec.entries(kinds=["signature"])[-1]
    assert failed and failed[0].payload["user_id"] == "sup1"  # the refused attempt is in the record
    assert sig.reason == "reviewed, trip explained" and sig.payload["meaning"] == "review"
