"""Chain-of-custody log in the real batch record (temp SQLite file): events carry the minimum
content, are hash-chained and append-only, a handling event needs a verified scan (COI-01), the
chain of locations of every container is complete, and the COI-30 response is recorded."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from aseptic_cell.coi.custody import (
    KIND,
    CustodyError,
    CustodyEventType,
    CustodyLog,
    check_custody,
    completeness,
)
from aseptic_cell.coi.model import ContainerKind, ContainerStatus, Genealogy, LocationKind, LocationRegister
from aseptic_cell.coi.verify import Code, Expectation, ScanResult, encode_label, verify_scan
from aseptic_cell.records import BatchRecord, verify_file

E = CustodyEventType
COI_A, COI_B = "COI-AAAAAA", "COI-BBBBBB"
DIN_A, DIN_B = "G123417654321", "A999917123456"
ROBOT = "robot:ur5e-1"
RECEIPT_EXTRA = {"shipper_id": "SH-1", "logger_file": "logger/SH-1.csv", "arrival_temp_c": 4.1}


class FakeClock:
    def __init__(self) -> None:
        self.t = 1_790_000_000.0

    def now(self) -> float:
        self.t += 1.0
        return self.t


@pytest.fixture
def cell(tmp_path: Path):
    g = Genealogy()
    g.register_batch("B-A", COI_A, [DIN_A])
    g.register_batch("B-B", COI_B, [DIN_B])
    loc = LocationRegister([("receipt", LocationKind.OUTSIDE), ("rtp1", LocationKind.RTP_BETA),
                            ("welder", LocationKind.WORK_POSITION), ("inc.slot1", LocationKind.INCUBATOR_SLOT),
                            ("inc.slot2", LocationKind.INCUBATOR_SLOT), ("waste", LocationKind.WASTE)])
    loc.assign("inc.slot1", COI_A, "B-A")
    loc.assign("inc.slot2", COI_B, "B-B")
    rec = BatchRecord(tmp_path / "record.db", FakeClock())
    yield g, loc, CustodyLog(rec, "CELL-01", g), rec
    rec.close()


def _read(g: Genealogy, cid: str) -> ScanResult:
    c = g.container(cid)
    return ScanResult(encode_label(c.coi, cid), reader_id="reader.x")


def _verified(g: Genealogy, loc: LocationRegister, cid: str, dest: str | None = None):
    c = g.container(cid)
    scan = _read(g, cid)
    v = verify_scan(scan, Expectation(c.batch, c.coi, cid, c.location, dest), g, loc)
    assert v.ok, v.message
    return {"scans": [scan], "verification": v}


def _run_batch_a(g: Genealogy, loc: LocationRegister, log: CustodyLog) -> None:
    g.register_container("APH-A", batch="B-A", kind=ContainerKind.APHERESIS_BAG, din=DIN_A, location="receipt")
    log.append(E.APH_RECEIPT, batch_id="B-A", coi_id=COI_A, actor="op.alice", container_ids=["APH-A"],
               location_to="receipt", **_verified(g, loc, "APH-A"), extra=RECEIPT_EXTRA)
    log.append(E.RTP_TRANSFER_IN, batch_id="B-A", coi_id=COI_A, actor=ROBOT, container_ids=["APH-A"],
               location_from="receipt", location_to="rtp1", equipment_id="rtp1", **_verified(g, loc, "APH-A"),
               extra={"rtp_cycle_counter": 1187})
    log.append(E.MOVE, batch_id="B-A", coi_id=COI_A, actor=ROBOT, container_ids=["APH-A"],
               location_from="rtp1", location_to="welder", **_verified(g, loc, "APH-A"))
    g.register_container("BAG-A", batch="B-A", kind=ContainerKind.CULTURE_BAG, parents=["APH-A"], location="welder")
    log.append(E.CONTAINER_REGISTER, batch_id="B-A", coi_id=COI_A, actor=ROBOT, container_ids=["BAG-A"],
               parent_ids=["APH-A"], location_to="welder", **_verified(g, loc, "BAG-A"),
               extra={"kit_lot": "K-22", "kit_expiry": "2027-06-30"})
    log.append(E.WELD, batch_id="B-A", coi_id=COI_A, actor=ROBOT, container_ids=["APH-A", "BAG-A"],
               equipment_id="welder", scans=[_read(g, "APH-A"), _read(g, "BAG-A")],
               verification={"code": "OK", "action": "PROCEED", "rule": "COI-10"},
               extra={"wafer_lot": "W-9", "quality": "PASS"})
    log.append(E.CONSUME, batch_id="B-A", coi_id=COI_A, actor=ROBOT, container_ids=["APH-A"])
    log.append(E.INCUBATOR_IN, batch_id="B-A", coi_id=COI_A, actor=ROBOT, container_ids=["BAG-A"],
               location_from="welder", location_to="inc.slot1", equipment_id="incubator",
               **_verified(g, loc, "BAG-A", "inc.slot1"), extra={"door_open_s": 12.0})


def test_a_batch_custody_chain_is_complete_and_part_of_the_hash_chained_record(cell) -> None:
    g, loc, log, rec = cell
    rec.append("note", batch_id="B-A", actor="op.alice", reason="start")
    _run_batch_a(g, loc, log)
    assert g.container("BAG-A").location == "inc.slot1"  # the genealogy follows what was written
    assert g.container("APH-A").status is ContainerStatus.CONSUMED
    events = log.events("B-A")
    assert [e.type for e in events] == [E.APH_RECEIPT, E.RTP_TRANSFER_IN, E.MOVE, E.CONTAINER_REGISTER, E.WELD,
                                        E.CONSUME, E.INCUBATOR_IN]
    first = events[0]
    assert first.event_id and first.utc_time.endswith("+00:00") and first.cell_id == "CELL-01"
    assert (first.batch_id, first.coi_id, first.actor) == ("B-A", COI_A, "op.alice")
    assert first.scan_payloads[0]["payload"] == encode_label(COI_A, "APH-A")
    assert first.verification_result is not None and first.verification_result["code"] == "OK"
    assert first.extra == RECEIPT_EXTRA
    assert events[3].parent_ids == ("APH-A",) and events[1].equipment_id == "rtp1"
    assert all(e.coi_id == COI_A for e in events)
    assert completeness(events, "APH-A", require_end=True) == []
    assert completeness(events, "BAG-A") == []
    assert check_custody(log, "B-A") == {}
    # custody entries are record entries: same chain, kind custody, every one carries its COI
    entries = rec.entries(kinds=[KIND])
    assert len(entries) == 7 and all(e.payload["coi_id"] == COI_A for e in entries)
    assert entries[0].action == "custody.aph_receipt"
    assert rec.verify().ok and rec.verify().count == 8
    assert verify_file(rec.path).ok
    # round trip: what is read back is what was written
    assert log.events(container_id="BAG-A")[-1].location_to == "inc.slot1"


def test_the_custody_log_is_append_only(cell) -> None:
    g, loc, log, rec = cell
    _run_batch_a(g, loc, log)
    conn = sqlite3.connect(rec.path)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE entries SET payload = '{}' WHERE kind = 'custody'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM entries WHERE kind = 'custody'")
        # someone drops the triggers and rewrites a location: the chain names the entry
        conn.execute("DROP TRIGGER entries_no_update")
        seq = rec.entries(kinds=[KIND])[2].seq
        conn.execute("UPDATE entries SET payload = replace(payload, 'welder', 'inc.slot2') WHERE seq = ?", (seq,))
        conn.commit()
    finally:
        conn.close()
    report = verify_file(rec.path)
    assert not report.ok and report.first_bad_seq == seq
    assert not hasattr(log, "update") and not hasattr(log, "delete")


def test_handling_without_a_verified_scan_is_refused_coi_01(cell) -> None:
    g, loc, log, rec = cell
    g.register_container("APH-A", batch="B-A", kind=ContainerKind.APHERESIS_BAG, din=DIN_A, location="rtp1")
    g.register_container("APH-B", batch="B-B", kind=ContainerKind.APHERESIS_BAG, din=DIN_B, location="rtp1")
    base = {"batch_id": "B-A", "coi_id": COI_A, "actor": ROBOT, "container_ids": ["APH-A"],
            "location_from": "rtp1", "location_to": "welder"}
    with pytest.raises(CustodyError, match="COI-01"):
        log.append(E.MOVE, **base)
    with pytest.raises(CustodyError, match="no scan payloads"):
        log.append(E.MOVE, **base, verification=_verified(g, loc, "APH-A")["verification"])
    bad = verify_scan(_read(g, "APH-B"), Expectation("B-A", COI_A, "APH-A", "rtp1"), g, loc)
    assert bad.code is Code.COI_MISMATCH
    with pytest.raises(CustodyError, match="COI-01.*COI_MISMATCH"):
        log.append(E.MOVE, **base, verification=bad, scans=[_read(g, "APH-B")])
    g.register_container("APH-A2", batch="B-A", kind=ContainerKind.APHERESIS_BAG, din=DIN_A, location="rtp1")
    with pytest.raises(CustodyError, match="verification is of APH-A2"):  # another container's good read
        log.append(E.MOVE, **base, **_verified(g, loc, "APH-A2"))
    with pytest.raises(CustodyError, match="names no container"):
        log.append(E.MOVE, **{**base, "container_ids": []}, **_verified(g, loc, "APH-A"))
    assert len(rec) == 0 and g.container("APH-A").location == "rtp1"  # nothing written, nothing moved


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"location_from": "welder"}, "chain of locations would break"),
        ({"batch_id": "B-B", "coi_id": COI_B}, "not B-B"),
        ({"coi_id": COI_B}, "not B-A / COI-BBBBBB"),
        ({"container_ids": ["GHOST"]}, "GHOST"),
        ({"actor": "robot:"}, "robot's id"),
        ({"actor": ""}, "actor"),
        ({"batch_id": ""}, "names its batch"),
    ],
)
def test_events_that_would_corrupt_the_log_are_refused(cell, change: dict, match: str) -> None:
    g, loc, log, rec = cell
    g.register_container("APH-A", batch="B-A", kind=ContainerKind.APHERESIS_BAG, din=DIN_A, location="rtp1")
    kw = {"batch_id": "B-A", "coi_id": COI_A, "actor": ROBOT, "container_ids": ["APH-A"],
          "location_from": "rtp1", "location_to": "welder", **_verified(g, loc, "APH-A")}
    kw.update(change)
    with pytest.raises(CustodyError, match=match):
        log.append(E.MOVE, **kw)
    with pytest.raises(CustodyError, match="unknown custody event"):
        log.append("TELEPORT", batch_id="B-A", coi_id=COI_A, actor=ROBOT, container_ids=["APH-A"])
    assert len(rec) == 0


def test_completeness_finds_every_kind_of_break(tmp_path: Path) -> None:
    """A log written without a genealogy (another writer, a partial import) is checked from the
    record alone."""
    with BatchRecord(tmp_path / "r.db", FakeClock()) as rec:
        log = CustodyLog(rec, "CELL-01", strict=False)
        ok = {"verification": {"code": "OK", "action": "PROCEED"}, "scans": [{"payload": "x"}]}
        a = {"batch_id": "B-A", "coi_id": COI_A, "actor": ROBOT}
        log.append(E.MOVE, **a, container_ids=["C0"], location_from="x", location_to="y", **ok)  # never registered
        log.append(E.CONTAINER_REGISTER, **a, container_ids=["C1"], location_to="welder", **ok)
        log.append(E.MOVE, **a, container_ids=["C1"], location_from="welder", location_to="inc.slot1", **ok)
        log.append(E.MOVE, **a, container_ids=["C1"], location_from="welder", location_to="rtp1", **ok)  # gap
        log.append(E.MOVE, **a, container_ids=["C1"], location_to="waste", **ok)  # move without from
        log.append(E.CONTAINER_REGISTER, **a, container_ids=["C2"], parent_ids=["C9"], **ok)  # unknown parent, no loc
        log.append(E.DISPOSE, **a, container_ids=["C2"], **ok)
        log.append(E.MOVE, **a, container_ids=["C2"], location_from="a", location_to="b", **ok)  # after end
        log.append(E.CONTAINER_REGISTER, **a, container_ids=["C1"], location_to="welder", **ok)  # twice
        events = log.events()
        c0 = completeness(events, "C0")
        c1 = completeness(events, "C1", require_end=True)
        c2 = completeness(events, "C2")
        assert len(c0) == 1 and "before its registration" in c0[0]
        assert any("from welder but it was at inc.slot1" in p for p in c1)
        assert any("without a location_from" in p for p in c1)
        assert any("registered twice" in p for p in c1)
        assert any("no end state" in p for p in c1)
        assert any("C9 not registered before it" in p for p in c2)
        assert any("names no location" in p for p in c2)
        assert any("after its end state" in p for p in c2)
        assert completeness(events, "C7") == ["C7: no custody event"]
        assert set(check_custody(log)) == {"C0", "C1", "C2"}


def test_mismatch_response_is_recorded_and_holds_both_batches(cell) -> None:
    """B's bag is presented to A's phase after A's bag was opened: COI-30 in the record."""
    g, loc, log, rec = cell
    g.register_container("APH-A", batch="B-A", kind=ContainerKind.APHERESIS_BAG, din=DIN_A, location="rtp1")
    g.register_container("APH-B", batch="B-B", kind=ContainerKind.APHERESIS_BAG, din=DIN_B, location="rtp1")
    for cid, b, coi in (("APH-A", "B-A", COI_A), ("APH-B", "B-B", COI_B)):
        log.append(E.APH_RECEIPT, batch_id=b, coi_id=coi, actor="op.alice", container_ids=[cid], location_to="rtp1",
                   **_verified(g, loc, cid), extra=RECEIPT_EXTRA)
    v = verify_scan(_read(g, "APH-B"), Expectation("B-A", COI_A, "APH-A", "rtp1", after_open=True), g, loc)
    assert v.code is Code.COI_MISMATCH
    dev = log.record_mismatch(v)
    assert dev == "DEV-B-A-COI-001"
    d = rec.entries(kinds=["deviation"])
    assert len(d) == 1 and d[0].batch_id == "B-A" and d[0].action == "deviation.raise"
    assert d[0].payload["deviation"] == dev and d[0].payload["code"] == "COI_MISMATCH"
    assert d[0].payload["scans"][0]["payload"] == encode_label(COI_B, "APH-B")
    assert d[0].payload["impacted"] == ["B-A", "B-B"]
    holds = [e for e in log.events() if e.type is E.HOLD]
    assert {(e.batch_id, e.coi_id) for e in holds} == {("B-A", COI_A), ("B-B", COI_B)}
    assert all(e.deviation_ref == dev and e.extra["impacted"] for e in holds)
    q = [e for e in log.events() if e.type is E.QUARANTINE]
    assert [(e.batch_id, e.container_ids) for e in q] == [("B-B", ("APH-B",))]
    assert g.container("APH-B").status is ContainerStatus.QUARANTINE
    # the quarantined bag cannot be used by anyone until QA releases it
    again = verify_scan(_read(g, "APH-B"), Expectation("B-B", COI_B, "APH-B", "rtp1"), g, loc)
    assert again.code is Code.CONTAINER_QUARANTINED and not again.ok
    assert log.record_mismatch(v) == "DEV-B-A-COI-002"
    assert rec.verify().ok
    with pytest.raises(ValueError, match="no COI-30 response"):
        log.record_mismatch(verify_scan(_read(g, "APH-A"), Expectation("B-A", COI_A, "APH-A", "rtp1"), g, loc))


def test_custody_survives_reopening_the_record(cell) -> None:
    g, loc, log, rec = cell
    _run_batch_a(g, loc, log)
    path = rec.path
    rec.close()
    with BatchRecord(path, FakeClock()) as again:
        log2 = CustodyLog(again, "CELL-01")
        assert [e.type for e in log2.events()][-1] is E.INCUBATOR_IN
        assert check_custody(log2) == {}
    with pytest.raises(ValueError):
        CustodyLog(rec, "")


@pytest.mark.parametrize(
    ("event", "kw", "match"),
    [
        (E.MOVE, {"location_from": None}, "needs location_from"),
        (E.MOVE, {"location_to": None}, "needs location_to"),
        (E.WELD, {"equipment_id": "welder", "extra": {"wafer_lot": "W", "quality": "PASS"}}, "both ends"),
        (E.WELD, {"container_ids": ["APH-A", "BAG-A"], "equipment_id": "welder", "extra": {"quality": "PASS"}},
         "missing wafer_lot"),
        (E.WELD, {"container_ids": ["APH-A", "BAG-A"], "extra": {"wafer_lot": "W", "quality": "PASS"}},
         "equipment id"),
        (E.APH_RECEIPT, {"location_from": None, "extra": {"shipper_id": "SH-1"}}, "missing logger_file, arrival_temp"),
        (E.QA_RELEASE, {"location_from": None, "location_to": None}, "e-signature"),
    ],
)
def test_a_strict_log_requires_the_tables_fields(cell, event: CustodyEventType, kw: dict, match: str) -> None:
    g, loc, log, rec = cell
    g.register_container("APH-A", batch="B-A", kind=ContainerKind.APHERESIS_BAG, din=DIN_A, location="rtp1")
    g.register_container("BAG-A", batch="B-A", kind=ContainerKind.CULTURE_BAG, parents=["APH-A"], location="rtp1")
    args = {"batch_id": "B-A", "coi_id": COI_A, "actor": ROBOT, "container_ids": ["APH-A"],
            "location_from": "rtp1", "location_to": "welder", **_verified(g, loc, "APH-A")}
    args.update(kw)
    with pytest.raises(CustodyError, match=match):
        log.append(event, **args)
    assert len(rec) == 0


def test_a_quarantined_container_moves_only_to_quarantine_or_disposal(cell) -> None:
    g, loc, log, rec = cell
    loc.add("quarantine.1", LocationKind.QUARANTINE)
    g.register_container("APH-B", batch="B-B", kind=ContainerKind.APHERESIS_BAG, din=DIN_B, location="rtp1")
    log.append(E.APH_RECEIPT, batch_id="B-B", coi_id=COI_B, actor="op.alice", container_ids=["APH-B"],
               location_to="rtp1", **_verified(g, loc, "APH-B"), extra=RECEIPT_EXTRA)
    g.set_status("APH-B", ContainerStatus.QUARANTINE)
    normal = verify_scan(_read(g, "APH-B"), Expectation("B-B", COI_B, "APH-B", "rtp1", "welder"), g, loc)
    assert normal.code is Code.CONTAINER_QUARANTINED
    log.append(E.QUARANTINE, batch_id="B-B", coi_id=COI_B, actor=ROBOT, container_ids=["APH-B"],
               location_from="rtp1", location_to="quarantine.1")
    scan = _read(g, "APH-B")
    v = verify_scan(scan, Expectation("B-B", COI_B, "APH-B", "quarantine.1", quarantine_ok=True), g, loc)
    assert v.ok
    log.append(E.DISPOSE, batch_id="B-B", coi_id=COI_B, actor=ROBOT, container_ids=["APH-B"],
               location_from="quarantine.1", location_to="waste", verification=v, scans=[scan],
               signature_ref="sig:qa.carol:disposal")
    assert g.container("APH-B").status is ContainerStatus.DISPOSED
    assert completeness(log.events(), "APH-B", require_end=True) == []
