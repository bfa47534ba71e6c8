"""ChainOfIdentity, the per-cell API: two patients through receipt, label read-back, weld and
incubation, with the mismatched bag at the RTP and a weld of two COIs; the record verifies and the
custody of every container is complete."""

from __future__ import annotations

from pathlib import Path

import pytest

from aseptic_cell.coi import (
    Action,
    ChainOfIdentity,
    Code,
    ContainerKind,
    ContainerStatus,
    CustodyEventType,
    Expectation,
    GenealogyError,
    IdentifierError,
    LocationKind,
    Outcome,
    ScanResult,
    check_custody,
    encode_label,
    load_coi_config,
)
from aseptic_cell.records import BatchRecord, RecordError

E = CustodyEventType
CONFIG = Path(__file__).resolve().parents[2] / "config"
COI_A, COI_B = "COI-AAAAAA", "COI-BBBBBB"
DIN_A, DIN_B = "=G12341765432170", "A999917123456 9"
ROBOT = "robot:ur5e-1"
RECEIPT = {"shipper_id": "SH-1", "logger_file": "logger/SH-1.csv", "arrival_temp_c": 4.0}
LOCATIONS = [("rtp1", LocationKind.WORK_POSITION), ("beta.A", LocationKind.RTP_BETA),
             ("welder", LocationKind.WORK_POSITION), ("inc.slot1", LocationKind.INCUBATOR_SLOT),
             ("inc.slot2", LocationKind.INCUBATOR_SLOT)]


class FakeClock:
    def __init__(self) -> None:
        self.t = 1_790_000_000.0

    def now(self) -> float:
        self.t += 0.5
        return self.t


@pytest.fixture
def coi(tmp_path: Path):
    rec = BatchRecord(tmp_path / "cell.db", FakeClock())
    c = ChainOfIdentity(rec, "CELL-01", load_coi_config(CONFIG), LOCATIONS)
    c.admit_batch("B-A", COI_A, [DIN_A])
    c.admit_batch("B-B", COI_B, [DIN_B])
    yield c
    rec.close()


def scan(payload: str | None, attempt: int = 1) -> ScanResult:
    return ScanResult(payload, read_failed=payload is None, reader_id="reader", attempt=attempt)


def aph_label(coi: str, cid: str, din: str) -> str:
    return encode_label(coi, cid, din)


def receive(c: ChainOfIdentity, batch: str, coi: str, cid: str, din: str, **kw: object) -> Outcome:
    args = {"paperwork_coi": coi, "seal_intact": True, "temperature_in_limits": True, "extra": RECEIPT}
    args.update(kw)
    return c.receive(scan(aph_label(coi, cid, din)), Expectation(batch, coi, None, "rtp1"), actor="op.alice",
                     **args)


def test_admission_validates_coi_and_din(coi: ChainOfIdentity) -> None:
    with pytest.raises(IdentifierError) as e:
        coi.admit_batch("B-C", "coi lower", [])
    assert e.value.field == "coi_id"
    with pytest.raises(IdentifierError) as e:
        coi.admit_batch("B-C", "COI-CCCCCC", ["=G12341765432171"])
    assert e.value.field == "din.check"
    assert coi.genealogy.get_batch("B-C") is None
    assert coi.genealogy.batch("B-A").dins == ("G123417654321",)


def test_two_patients_through_the_cell_with_a_mismatch_and_a_two_coi_weld(coi: ChainOfIdentity) -> None:
    assert receive(coi, "B-A", COI_A, "APH-A", DIN_A).ok
    assert receive(coi, "B-B", COI_B, "APH-B", DIN_B).ok
    assert coi.genealogy.container("APH-A").din == "G123417654321"

    # batch A's phase is handed patient B's bag at the RTP: stop, hold both, quarantine B's bag
    bad = coi.handle(E.MOVE, scan(encode_label(COI_B, "APH-B")),
                     Expectation("B-A", COI_A, "APH-A", "rtp1", "welder"), actor=ROBOT)
    assert (bad.verdict.code, bad.verdict.action, bad.event) == (Code.COI_MISMATCH, Action.STOP, None)
    assert bad.deviation == "DEV-B-A-COI-001"
    assert bad.verdict.response is not None and bad.verdict.response.hold_batches == ("B-A", "B-B")
    assert coi.genealogy.container("APH-B").status is ContainerStatus.QUARANTINE
    assert coi.genealogy.container("APH-B").location == "rtp1"  # nothing moved

    # A's own bag moves to the welder; a child bag is registered after its label read-back
    ok = coi.handle(E.MOVE, scan(encode_label(COI_A, "APH-A")), Expectation("B-A", COI_A, "APH-A", "rtp1", "welder"),
                    actor=ROBOT)
    assert ok.ok and ok.event is not None and coi.genealogy.container("APH-A").location == "welder"
    wrong_print = coi.register(scan(encode_label(COI_B, "BAG-A")), Expectation("B-A", COI_A, "BAG-A", "welder"),
                               actor=ROBOT, kind=ContainerKind.CULTURE_BAG, parents=["APH-A"],
                               extra={"kit_lot": "K1", "kit_expiry": "2027-01-31"})
    assert wrong_print.verdict.code is Code.COI_MISMATCH and coi.genealogy.get("BAG-A") is None
    reg = coi.register(scan(encode_label(COI_A, "BAG-A")), Expectation("B-A", COI_A, "BAG-A", "welder"),
                       actor=ROBOT, kind=ContainerKind.CULTURE_BAG, parents=["APH-A"],
                       extra={"kit_lot": "K1", "kit_expiry": "2027-01-31"})
    assert reg.ok and coi.genealogy.apheresis_dins("BAG-A") == ("G123417654321",)

    # weld A's bag to B's: refused before the welder moves
    weld_extra = {"wafer_lot": "W1", "quality": "PASS"}
    end_a = (scan(encode_label(COI_A, "BAG-A")), Expectation("B-A", COI_A, "BAG-A", "welder"))
    two = coi.connect(E.WELD, end_a, (scan(encode_label(COI_B, "APH-B")), Expectation("B-B", COI_B, "APH-B", "rtp1")),
                      actor=ROBOT, equipment_id="welder", extra=weld_extra)
    assert two.verdict.code is Code.COI_CONNECT_REFUSED and not two.ok
    assert two.event is None and two.deviation
    # after QA releases BAG-A (quarantined by the refused weld) a weld within A proceeds
    coi.genealogy.set_status("BAG-A", ContainerStatus.ACTIVE)
    good = coi.connect(E.WELD, end_a, (scan(encode_label(COI_A, "APH-A")), Expectation("B-A", COI_A, "APH-A",
                                                                                        "welder")),
                       actor=ROBOT, equipment_id="welder", extra=weld_extra)
    assert good.ok and good.event is not None and good.event.container_ids == ("BAG-A", "APH-A")

    # into A's slot only
    coi.locations.assign("inc.slot1", COI_A, "B-A")
    coi.locations.assign("inc.slot2", COI_B, "B-B")
    wrong_slot = coi.handle(E.INCUBATOR_IN, scan(encode_label(COI_A, "BAG-A")),
                            Expectation("B-A", COI_A, "BAG-A", "welder", "inc.slot2"), actor=ROBOT,
                            equipment_id="incubator", extra={"door_open_s": 8})
    assert wrong_slot.verdict.code is Code.SLOT_OWNED_BY_OTHER_COI
    coi.genealogy.set_status("BAG-A", ContainerStatus.ACTIVE)  # QA release of the second deviation
    inc = coi.handle(E.INCUBATOR_IN, scan(encode_label(COI_A, "BAG-A")),
                     Expectation("B-A", COI_A, "BAG-A", "welder", "inc.slot1"), actor=ROBOT, equipment_id="incubator",
                     extra={"door_open_s": 8})
    assert inc.ok and coi.genealogy.container("BAG-A").location == "inc.slot1"

    rec = coi.log.record
    assert rec.verify().ok
    assert check_custody(coi.log) == {}
    devs = [e.payload["deviation"] for e in rec.entries(kinds=["deviation"])]
    assert devs[0] == "DEV-B-A-COI-001" and len(devs) == len(set(devs)) == 4


def test_no_read_retries_then_logs_a_hold(coi: ChainOfIdentity) -> None:
    receive(coi, "B-A", COI_A, "APH-A", DIN_A)
    exp = Expectation("B-A", COI_A, "APH-A", "rtp1", "welder")
    for attempt in (1, 2, 3):
        o = coi.handle(E.MOVE, scan(None, attempt), exp, actor=ROBOT)
        assert o.verdict.action is Action.RETRY and o.event is None
    o = coi.handle(E.MOVE, scan(None, 4), exp, actor=ROBOT)
    assert o.verdict.action is Action.HOLD and o.event is not None and o.event.type is E.HOLD
    assert o.event.extra["code"] == "NO_READ" and coi.genealogy.container("APH-A").location == "rtp1"


def test_receipt_outcomes(coi: ChainOfIdentity) -> None:
    swapped = receive(coi, "B-A", COI_A, "APH-B", DIN_B)  # B's DIN on a label saying A
    assert swapped.verdict.code is Code.DIN_MISMATCH and swapped.deviation and coi.genealogy.get("APH-B") is None
    warm = receive(coi, "B-A", COI_A, "APH-A", DIN_A, temperature_in_limits=False)
    assert warm.verdict.action is Action.HOLD and warm.event is not None and coi.genealogy.get("APH-A") is None


def test_a_record_that_cannot_be_written_leaves_the_genealogy_unchanged(coi: ChainOfIdentity) -> None:
    coi.log.record.close()
    with pytest.raises(RecordError):
        receive(coi, "B-A", COI_A, "APH-A", DIN_A)
    assert coi.genealogy.get("APH-A") is None


def test_a_consumed_container_read_again_opens_a_deviation(coi: ChainOfIdentity) -> None:
    receive(coi, "B-A", COI_A, "APH-A", DIN_A)
    coi.genealogy.set_status("APH-A", ContainerStatus.CONSUMED)
    o = coi.handle(E.MOVE, scan(encode_label(COI_A, "APH-A")), Expectation("B-A", COI_A, "APH-A", "rtp1", "welder"),
                   actor=ROBOT)
    assert o.verdict.code is Code.CONTAINER_ENDED and o.deviation
    r = o.verdict.response
    assert r is not None and r.quarantine_containers == () and r.quarantine_position == "rtp1"
    assert coi.genealogy.container("APH-A").status is ContainerStatus.CONSUMED


def test_receipt_sec_per_market(coi: ChainOfIdentity) -> None:
    o = receive(coi, "B-A", COI_A, "APH-A", DIN_A, market="JP")  # a market without a setting requires it
    assert o.verdict.code is Code.SEC_MISSING and coi.genealogy.get("APH-A") is None
    o = receive(coi, "B-A", COI_A, "APH-A", DIN_A, market="EU")  # shipped config: not required
    assert o.ok and o.event is not None and "sec" not in o.event.extra


def test_receipt_and_new_containers_only_into_a_beta_or_slot_of_their_coi(coi: ChainOfIdentity) -> None:
    def into_beta(batch: str, c: str, cid: str, din: str) -> Outcome:
        return coi.receive(scan(aph_label(c, cid, din)), Expectation(batch, c, None, "beta.A"), actor="op.alice",
                           paperwork_coi=c, seal_intact=True, temperature_in_limits=True, extra=RECEIPT)

    o = into_beta("B-A", COI_A, "APH-A", DIN_A)
    assert (o.verdict.code, o.verdict.action) == (Code.SLOT_NOT_REGISTERED, Action.HOLD)
    coi.locations.assign("beta.A", COI_A, "B-A")
    assert into_beta("B-A", COI_A, "APH-A", DIN_A).ok
    o = into_beta("B-B", COI_B, "APH-B", DIN_B)
    assert o.verdict.code is Code.SLOT_OWNED_BY_OTHER_COI and o.verdict.response is not None
    assert o.verdict.response.hold_batches == ("B-B", "B-A") and coi.genealogy.get("APH-B") is None
    coi.locations.assign("inc.slot1", COI_B, "B-B")
    assert receive(coi, "B-B", COI_B, "APH-B", DIN_B).ok
    o = coi.register(scan(encode_label(COI_A, "BAG-A")), Expectation("B-A", COI_A, "BAG-A", "inc.slot1"),
                     actor=ROBOT, kind=ContainerKind.CULTURE_BAG, parents=["APH-A"],
                     extra={"kit_lot": "K1", "kit_expiry": "2027-01-31"})
    assert o.verdict.code is Code.SLOT_OWNED_BY_OTHER_COI and coi.genealogy.get("BAG-A") is None


def test_a_bag_no_batch_registered_is_quarantined_under_its_own_id_and_the_real_bag_still_comes_in(
        coi: ChainOfIdentity) -> None:
    """COI-30 for a container nobody registered: B-A's receipt reads B's bag (not yet received): the
    bag standing there enters the genealogy in QUARANTINE as FOUND-B-A-001 by a QUARANTINE custody
    event (its chain starts there), is never released to ACTIVE nor used as a parent, and the id its
    label carries stays free for the real receipt. A label that does not decode is quarantined too."""
    o = receive(coi, "B-A", COI_A, "APH-B", DIN_B)
    assert o.verdict.code is Code.DIN_MISMATCH and o.deviation and coi.genealogy.get("APH-B") is None
    found = coi.genealogy.container("FOUND-B-A-001")
    assert (found.status, found.kind, found.location, found.batch) == (
        ContainerStatus.QUARANTINE, ContainerKind.UNREGISTERED, "rtp1", "B-A")
    (q,) = [e for e in coi.log.events("B-A") if e.type is E.QUARANTINE]
    assert q.container_ids == ("FOUND-B-A-001",) and q.location_to == "rtp1" and q.deviation_ref == o.deviation
    assert q.extra["found"] is True and q.extra["container_read"] == "APH-B"
    with pytest.raises(GenealogyError, match="found unregistered"):
        coi.genealogy.set_status("FOUND-B-A-001", ContainerStatus.ACTIVE)  # no QA release to an identity
    with pytest.raises(GenealogyError, match="QUARANTINE"):
        coi.genealogy.register_container("X-1", batch="B-A", kind=ContainerKind.CULTURE_BAG,
                                          parents=["FOUND-B-A-001"])
    assert receive(coi, "B-B", COI_B, "APH-B", DIN_B).ok  # the real bag, its id untouched
    garbage = coi.receive(scan("not a label"), Expectation("B-A", COI_A, None, "rtp1"), actor="op.alice",
                          paperwork_coi=COI_A, seal_intact=True, temperature_in_limits=True, extra=RECEIPT)
    assert garbage.verdict.code is Code.LABEL_INVALID
    assert coi.genealogy.container("FOUND-B-A-002").status is ContainerStatus.QUARANTINE
    assert check_custody(coi.log) == {}
