"""Scan verification (COI-02/03/10/20) and the COI-30 mismatch response, each rule with a read
that tries to break it."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aseptic_cell.coi.isbt128 import check_flags
from aseptic_cell.coi.model import ContainerKind, ContainerStatus, Genealogy, LocationKind, LocationRegister
from aseptic_cell.coi.verify import (
    Action,
    Code,
    Expectation,
    LabelError,
    ScanPolicy,
    ScanResult,
    Verdict,
    decode_label,
    encode_label,
    verify_connect,
    verify_receipt,
    verify_scan,
)

COI_A, COI_B = "COI-AAAAAA", "COI-BBBBBB"
DIN_A, DIN_B = "G123417654321", "A999917123456"


def _cell() -> tuple[Genealogy, LocationRegister]:
    g = Genealogy()
    g.register_batch("B-A", COI_A, [DIN_A])
    g.register_batch("B-B", COI_B, [DIN_B])
    g.register_container("APH-A", batch="B-A", kind=ContainerKind.APHERESIS_BAG, din=DIN_A, location="rtp1")
    g.register_container("APH-B", batch="B-B", kind=ContainerKind.APHERESIS_BAG, din=DIN_B, location="rtp1")
    g.register_container("BAG-A", batch="B-A", kind=ContainerKind.CULTURE_BAG, parents=["APH-A"], location="welder")
    g.register_container("BAG-A2", batch="B-A", kind=ContainerKind.TRANSFER_BAG, parents=["APH-A"],
                         location="welder")
    g.register_container("BAG-B", batch="B-B", kind=ContainerKind.CULTURE_BAG, parents=["APH-B"], location="welder")
    loc = LocationRegister([("rtp1", LocationKind.RTP_BETA), ("welder", LocationKind.WORK_POSITION),
                            ("inc.slot1", LocationKind.INCUBATOR_SLOT), ("inc.slot2", LocationKind.INCUBATOR_SLOT),
                            ("inc.slot3", LocationKind.INCUBATOR_SLOT)])
    loc.assign("inc.slot1", COI_A, "B-A")
    loc.assign("inc.slot2", COI_B, "B-B")
    return g, loc


_OWN = "own"


def _label(cid: str, g: Genealogy, coi: str | None = _OWN, din: str | None = _OWN) -> str:
    """The label as printed (own COI and DIN), or with a field replaced / left out (None)."""
    c = g.container(cid)
    coi = c.coi if coi == _OWN else coi
    if din == _OWN:
        din = "=" + c.din + check_flags(c.din) if c.din else None
    parts = ([f"COI:{coi}"] if coi else []) + [f"CID:{cid}"] + ([f"DIN:{din}"] if din else [])
    return "|".join(parts)


def _scan(payload: str | None, *, read_failed: bool = False, symbology_ok: bool = True, attempt: int = 1) -> ScanResult:
    return ScanResult(payload, symbology_ok=symbology_ok, read_failed=read_failed, reader_id="reader.rtp1",
                      attempt=attempt, frame_ref="cam/rtp1/000123.png")


EXP_APH_A = Expectation("B-A", COI_A, "APH-A", "rtp1")


def test_the_right_container_at_the_right_place_proceeds() -> None:
    g, loc = _cell()
    v = verify_scan(_scan(_label("APH-A", g)), EXP_APH_A, g, loc)
    assert (v.code, v.action, v.ok, v.container_id, v.read_coi) == (Code.OK, Action.PROCEED, True, "APH-A", COI_A)
    assert v.response is None
    v = verify_scan(_scan(_label("BAG-A", g)), Expectation("B-A", COI_A, "BAG-A", "welder", "inc.slot1"), g, loc)
    assert v.ok


def test_label_round_trip_and_rejects() -> None:
    assert decode_label(encode_label(COI_A, "X1", "=G12341765432170")).din == "=G12341765432170"
    assert decode_label("CID:X1|COI:" + COI_A).coi == COI_A  # any order
    for bad in ("hello", "CID:X1|CID:X2", "COI:" + COI_A, "CID:", "CID:X1|LOT:5"):
        with pytest.raises(LabelError):
            decode_label(bad)
    with pytest.raises(LabelError):
        encode_label("A|B", "X1")


def test_no_read_retries_n_times_then_holds_never_assumes() -> None:
    g, loc = _cell()
    policy = ScanPolicy(n_scan_retry=3)
    actions = [verify_scan(_scan(None, read_failed=True, attempt=n), EXP_APH_A, g, loc, policy).action
               for n in (1, 2, 3, 4)]
    assert actions == [Action.RETRY, Action.RETRY, Action.RETRY, Action.HOLD]
    last = verify_scan(_scan("", attempt=4), EXP_APH_A, g, loc, policy)
    assert (last.code, last.action, last.rule, last.response) == (Code.NO_READ, Action.HOLD, "COI-03", None)
    # a payload read with a failed symbology check is not trusted either, even if it looks right
    v = verify_scan(_scan(_label("APH-A", g), symbology_ok=False, attempt=1), EXP_APH_A, g, loc, policy)
    assert (v.code, v.action) == (Code.SYMBOLOGY_FAILED, Action.RETRY)
    v = verify_scan(_scan(_label("APH-A", g), read_failed=True, attempt=1), EXP_APH_A, g, loc,
                    ScanPolicy(n_scan_retry=0))
    assert v.action is Action.HOLD


def test_mismatched_bag_at_the_rtp_stops_holds_both_quarantines_and_opens_a_deviation() -> None:
    """Patient B's apheresis bag arrives where batch A expects its own (the RTP scenario)."""
    g, loc = _cell()
    payload = _label("APH-B", g)
    v = verify_scan(_scan(payload), EXP_APH_A, g, loc)
    assert (v.code, v.action, v.rule) == (Code.COI_MISMATCH, Action.STOP, "COI-02")
    r = v.response
    assert r is not None and r.stop_actuator
    assert r.hold_batches == ("B-A", "B-B")  # the owner and the batch whose COI was read
    assert r.quarantine_containers == ("APH-B",)
    assert r.impacted_batches == ()  # found before anything was opened
    assert not r.operator_may_continue and r.release_signatures == 2
    assert r.deviation["scans"][0]["payload"] == payload  # raw scan data
    assert r.deviation["camera_frames"] == ["cam/rtp1/000123.png"]
    assert (r.deviation["coi_expected"], r.deviation["coi_read"]) == (COI_A, COI_B)
    assert not any("override" in f.name or "continue" in f.name for f in dataclasses.fields(Verdict))
    # the verification is pure: nothing was quarantined by it
    assert g.container("APH-B").status is ContainerStatus.ACTIVE


def test_mismatch_found_after_open_makes_both_batches_impacted() -> None:
    g, loc = _cell()
    v = verify_scan(_scan(_label("BAG-B", g)), Expectation("B-A", COI_A, "BAG-A", "welder", after_open=True), g, loc)
    assert v.code is Code.COI_MISMATCH and v.response is not None
    assert v.response.impacted_batches == ("B-A", "B-B")


def test_relabelled_container_is_caught_by_the_registry_identifier() -> None:
    """Label says COI A, the container id is B's: the two identifiers disagree."""
    g, loc = _cell()
    v = verify_scan(_scan(encode_label(COI_A, "BAG-B")), Expectation("B-A", COI_A, None, "welder"), g, loc)
    assert v.code is Code.COI_MISMATCH and v.read_coi == COI_B
    assert v.response is not None and v.response.hold_batches == ("B-A", "B-B")


def test_two_identifier_policy() -> None:
    g, loc = _cell()
    no_coi = _label("BAG-A", g, coi=None)
    assert "COI:" not in no_coi
    exp = Expectation("B-A", COI_A, "BAG-A", "welder")
    v = verify_scan(_scan(no_coi), exp, g, loc, ScanPolicy(two_identifiers=True))
    assert (v.code, v.action) == (Code.IDENTIFIER_MISSING, Action.STOP)
    assert verify_scan(_scan(no_coi), exp, g, loc, ScanPolicy(two_identifiers=False)).ok
    # without the policy the lookup alone still catches another patient's container
    v = verify_scan(_scan(_label("BAG-B", g, coi=None)), exp, g, loc, ScanPolicy(two_identifiers=False))
    assert v.code is Code.COI_MISMATCH


def test_same_patient_but_another_container_is_unexpected() -> None:
    g, loc = _cell()
    v = verify_scan(_scan(_label("BAG-A2", g)), Expectation("B-A", COI_A, "BAG-A", "welder"), g, loc)
    assert (v.code, v.action) == (Code.CONTAINER_UNEXPECTED, Action.STOP)
    assert v.response is not None and v.response.hold_batches == ("B-A",)
    assert v.response.quarantine_containers == ("BAG-A2",)


def test_unknown_and_garbage_reads_stop() -> None:
    g, loc = _cell()
    v = verify_scan(_scan(encode_label(COI_A, "GHOST")), EXP_APH_A, g, loc)
    assert v.code is Code.CONTAINER_UNKNOWN and v.response is not None
    # what stands there is quarantined under an id of its own (GHOST may be a real container still to come)
    assert v.response.quarantine_containers == ("FOUND-B-A-001",) and v.response.quarantine_position == "rtp1"
    assert v.response.deviation["unidentified_container_at"] == "rtp1"
    assert v.response.deviation["found_unregistered"] == ["FOUND-B-A-001"]
    assert v.response.deviation["container_read"] == "GHOST" and g.get("GHOST") is None  # verify changes nothing
    v = verify_scan(_scan("]d2 0104012345678901"), EXP_APH_A, g, loc)
    assert (v.code, v.action) == (Code.LABEL_INVALID, Action.STOP)
    assert v.response is not None and v.response.quarantine_containers == ("FOUND-B-A-001",)
    v = verify_scan(_scan(encode_label("coi-lower", "APH-A")), EXP_APH_A, g, loc)
    assert v.code is Code.COI_INVALID


def test_din_check_and_din_match() -> None:
    g, loc = _cell()
    bad_flags = "=" + DIN_A + "71"  # check is 70
    v = verify_scan(_scan(_label("APH-A", g, din=bad_flags)), EXP_APH_A, g, loc)
    assert (v.code, v.action) == (Code.DIN_CHECK_FAILED, Action.STOP)
    assert "din.check" in v.message
    other = "=G123417654329" + check_flags("G123417654329")  # valid DIN, another donation
    v = verify_scan(_scan(_label("APH-A", g, din=other)), EXP_APH_A, g, loc)
    assert v.code is Code.DIN_MISMATCH
    no_check = "=" + DIN_A + "00"
    assert verify_scan(_scan(_label("APH-A", g, din=no_check)), EXP_APH_A, g, loc).code is Code.DIN_CHECK_FAILED
    assert verify_scan(_scan(_label("APH-A", g, din=no_check)), EXP_APH_A, g, loc,
                       ScanPolicy(din_require_check=False)).ok


def test_container_found_elsewhere_than_registered() -> None:
    g, loc = _cell()
    v = verify_scan(_scan(_label("BAG-A", g)), Expectation("B-A", COI_A, "BAG-A", "rtp1"), g, loc)
    assert (v.code, v.action) == (Code.LOCATION_MISMATCH, Action.STOP)


def test_slot_registered_to_another_coi_is_refused() -> None:
    g, loc = _cell()
    v = verify_scan(_scan(_label("BAG-A", g)), Expectation("B-A", COI_A, "BAG-A", "welder", "inc.slot2"), g, loc)
    assert (v.code, v.rule, v.action) == (Code.SLOT_OWNED_BY_OTHER_COI, "COI-20", Action.STOP)
    assert v.response is not None and v.response.hold_batches == ("B-A", "B-B")
    v = verify_scan(_scan(_label("BAG-A", g)), Expectation("B-A", COI_A, "BAG-A", "welder", "inc.slot3"), g, loc)
    assert (v.code, v.action, v.response) == (Code.SLOT_NOT_REGISTERED, Action.HOLD, None)
    v = verify_scan(_scan(_label("BAG-A", g)), Expectation("B-A", COI_A, "BAG-A", "welder", "inc.nowhere"), g, loc)
    assert v.code is Code.LOCATION_MISMATCH


def test_quarantined_or_ended_container_is_not_used() -> None:
    g, loc = _cell()
    g.set_status("BAG-A", ContainerStatus.QUARANTINE)
    g.set_status("BAG-A2", ContainerStatus.DISPOSED)
    exp = Expectation("B-A", COI_A, None, "welder")
    assert verify_scan(_scan(_label("BAG-A", g)), exp, g, loc).code is Code.CONTAINER_QUARANTINED
    assert verify_scan(_scan(_label("BAG-A2", g)), exp, g, loc).code is Code.CONTAINER_ENDED


def test_weld_of_two_cois_is_refused_and_of_one_coi_allowed() -> None:
    g, loc = _cell()
    end_a = (_scan(_label("BAG-A", g)), Expectation("B-A", COI_A, "BAG-A", "welder"))
    ok = verify_connect(end_a, (_scan(_label("BAG-A2", g)), Expectation("B-A", COI_A, "BAG-A2", "welder")), g, loc)
    assert ok.ok and ok.rule == "COI-10" and ok.details["ends"] == ["BAG-A", "BAG-A2"]
    # the recipe (wrongly) asks for B's bag on the other end: still never two COIs
    v = verify_connect(end_a, (_scan(_label("BAG-B", g)), Expectation("B-B", COI_B, "BAG-B", "welder")), g, loc)
    assert (v.code, v.action, v.rule) == (Code.COI_CONNECT_REFUSED, Action.STOP, "COI-10")
    assert v.response is not None and v.response.stop_actuator
    assert set(v.response.hold_batches) == {"B-A", "B-B"}
    assert set(v.response.quarantine_containers) == {"BAG-A", "BAG-B"}
    assert len(v.response.deviation["scans"]) == 2
    # B's bag presented where A's second bag is expected
    v = verify_connect(end_a, (_scan(_label("BAG-B", g)), Expectation("B-A", COI_A, "BAG-A2", "welder")), g, loc)
    assert v.code is Code.COI_CONNECT_REFUSED
    # one end unread: re-read, never connect
    v = verify_connect(end_a, (_scan(None, read_failed=True), Expectation("B-A", COI_A, "BAG-A2", "welder")), g, loc)
    assert (v.code, v.action) == (Code.NO_READ, Action.RETRY)


CONTAINERS = ["APH-A", "APH-B", "BAG-A", "BAG-A2", "BAG-B"]


@settings(max_examples=100, deadline=None)
@given(read=st.sampled_from(CONTAINERS), expected=st.sampled_from(CONTAINERS),
       where=st.sampled_from(["rtp1", "welder"]), label_coi=st.sampled_from(["own", "A", "B", None]),
       two=st.booleans())
def test_only_a_full_match_proceeds(read: str, expected: str, where: str, label_coi: str | None, two: bool) -> None:
    """Any read of any container against any expectation: PROCEED exactly when container, COI
    (label and registry) and location all match; every other outcome stops before the actuator."""
    g, loc = _cell()
    exp_c = g.container(expected)
    coi = {"own": g.container(read).coi, "A": COI_A, "B": COI_B, None: None}[label_coi]
    v = verify_scan(_scan(_label(read, g, coi=coi)), Expectation(exp_c.batch, exp_c.coi, expected, where), g, loc,
                    ScanPolicy(two_identifiers=two))
    c = g.container(read)
    match = (read == expected and c.location == where and (coi == c.coi or (coi is None and not two)))
    assert v.ok == match, v.message
    if not match:
        assert v.action is Action.STOP and v.response is not None and v.response.stop_actuator
        assert v.response.hold_batches[0] == exp_c.batch
        if c.coi != exp_c.coi or (coi is not None and coi != exp_c.coi):
            assert set(v.response.hold_batches) == {"B-A", "B-B"}


# ----------------------------------------------------------------------------- APH_RECEIPT
def _receipt_cell() -> Genealogy:
    g = Genealogy()
    g.register_batch("B-A", COI_A, [DIN_A])
    g.register_batch("B-B", COI_B, [DIN_B])
    return g


def _aph_label(coi: str | None = COI_A, din: str | None = "=" + DIN_A + "70", cid: str = "APH-A") -> str:
    return "|".join(([f"COI:{coi}"] if coi else []) + [f"CID:{cid}"] + ([f"DIN:{din}"] if din else []))


EXP_RECEIPT = Expectation("B-A", COI_A, None, "receipt")


def _receipt(payload: str | None, g: Genealogy, **kw: object) -> Verdict:
    args = {"paperwork_coi": COI_A, "paperwork_din": DIN_A + "A", "seal_intact": True, "temperature_in_limits": True}
    args.update(kw)
    return verify_receipt(_scan(payload), EXP_RECEIPT, g, **args)


def test_receipt_of_the_right_bag_proceeds() -> None:
    g = _receipt_cell()
    v = _receipt(_aph_label(), g)
    assert (v.code, v.action, v.container_id, v.read_coi, v.details["din"]) == (
        Code.OK, Action.PROCEED, "APH-A", COI_A, DIN_A)
    assert _receipt(_aph_label(), g, paperwork_din=None).ok


@pytest.mark.parametrize(
    ("payload", "kw", "code"),
    [
        (_aph_label(din=None), {}, Code.DIN_MISSING),
        (_aph_label(din="=" + DIN_A + "71"), {}, Code.DIN_CHECK_FAILED),
        (_aph_label(din="=" + DIN_A + "00"), {}, Code.DIN_CHECK_FAILED),  # no check carried
        (_aph_label(coi=None), {}, Code.IDENTIFIER_MISSING),
        (_aph_label(coi="bad coi"), {}, Code.COI_INVALID),
        (_aph_label(coi=COI_B), {"paperwork_coi": COI_B}, Code.COI_MISMATCH),  # B's bag for A's batch
        (_aph_label(), {"paperwork_coi": COI_B}, Code.PAPERWORK_MISMATCH),
        (_aph_label(), {"paperwork_din": DIN_B + "9"}, Code.PAPERWORK_MISMATCH),
        (_aph_label(din="=" + DIN_B + "69"), {"paperwork_din": DIN_B}, Code.DIN_MISMATCH),  # not this batch's DIN
        ("garbage", {}, Code.LABEL_INVALID),
    ],
)
def test_receipt_mismatches_stop_with_the_coi_30_response(payload: str, kw: dict, code: Code) -> None:
    g = _receipt_cell()
    v = _receipt(payload, g, **kw)
    assert (v.code, v.action) == (code, Action.STOP), v.message
    assert v.response is not None and v.response.hold_batches[0] == "B-A"
    assert v.response.deviation["scans"][0]["payload"] == payload
    if code is Code.COI_MISMATCH:
        assert v.response.hold_batches == ("B-A", "B-B")
        assert v.response.deviation["container_read"] == "APH-A"


def test_receipt_of_a_known_id_or_a_compromised_shipment() -> None:
    g = _receipt_cell()
    g.register_container("APH-A", batch="B-A", kind=ContainerKind.APHERESIS_BAG, din=DIN_A)
    assert _receipt(_aph_label(), g).code is Code.CONTAINER_ALREADY_REGISTERED
    g2 = _receipt_cell()
    v = _receipt(_aph_label(), g2, seal_intact=False)
    assert (v.code, v.action, v.response) == (Code.SHIPMENT_CONDITION_FAILED, Action.HOLD, None)
    assert "seal" in v.message
    v = _receipt(_aph_label(), g2, temperature_in_limits=False)
    assert v.action is Action.HOLD and "temperature" in v.message
    assert _receipt(None, g2).code is Code.NO_READ


def test_receipt_sec_where_the_market_requires_it() -> None:
    g = _receipt_cell()
    sec = "GB000123" + DIN_A + "A0000001" + "001" + "00000000"
    assert _receipt(_aph_label(), g, sec=sec, sec_required=True).ok
    v = _receipt(_aph_label(), g, sec_required=True)
    assert (v.code, v.action) == (Code.SEC_MISSING, Action.HOLD)
    assert _receipt(_aph_label(), g, sec="SEC:" + sec[:-1]).code is Code.SEC_INVALID
    other = "GB000123" + DIN_B + "A0000001" + "001" + "00000000"
    assert _receipt(_aph_label(), g, sec=other).code is Code.DIN_MISMATCH
