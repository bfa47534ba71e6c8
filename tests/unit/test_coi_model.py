"""COI → batch → container genealogy (every container traces to its apheresis DIN; never two COIs
in one container) and storage positions registered to one COI at a time (COI-20)."""

from __future__ import annotations

import pytest

from aseptic_cell.coi.model import (
    ContainerKind,
    ContainerStatus,
    Genealogy,
    GenealogyError,
    LocationError,
    LocationKind,
    LocationRegister,
)

DIN_A, DIN_A2, DIN_B = "G123417654321", "G123417654322", "A999917123456"


def _two_patients() -> Genealogy:
    g = Genealogy()
    g.register_batch("B-A", "COI-AAAAAA", [DIN_A, DIN_A2])
    g.register_batch("B-B", "COI-BBBBBB", [DIN_B])
    g.register_container("APH-A", batch="B-A", kind=ContainerKind.APHERESIS_BAG, din=DIN_A, location="rtp1")
    g.register_container("APH-B", batch="B-B", kind=ContainerKind.APHERESIS_BAG, din=DIN_B, location="rtp1")
    return g


def test_every_container_traces_to_its_apheresis_din() -> None:
    g = _two_patients()
    g.register_container("APH-A2", batch="B-A", kind=ContainerKind.APHERESIS_BAG, din=DIN_A2)
    g.register_container("SEL-A", batch="B-A", kind=ContainerKind.CULTURE_BAG, parents=["APH-A"])
    g.register_container("EXP-A", batch="B-A", kind=ContainerKind.CULTURE_BAG, parents=["SEL-A", "APH-A2"])
    g.register_container("S-A1", batch="B-A", kind=ContainerKind.SAMPLE_TUBE, parents=["EXP-A"], sample_id="QC-17")
    g.register_container("FIN-A1", batch="B-A", kind=ContainerKind.FINAL_BAG, parents=["EXP-A"])
    fin = g.container("FIN-A1")
    assert (fin.coi, fin.batch, fin.status) == ("COI-AAAAAA", "B-A", ContainerStatus.ACTIVE)
    assert [c.id for c in g.trace("FIN-A1")] == ["FIN-A1", "EXP-A", "SEL-A", "APH-A2", "APH-A"]
    assert g.apheresis_dins("FIN-A1") == (DIN_A, DIN_A2)
    assert g.apheresis_dins("S-A1") == (DIN_A, DIN_A2) and g.container("S-A1").sample_id == "QC-17"
    assert g.apheresis_dins("SEL-A") == (DIN_A,)
    assert [c.id for c in g.descendants("APH-A")] == ["SEL-A", "EXP-A", "S-A1", "FIN-A1"]  # forward tracking
    assert g.apheresis_dins("APH-B") == (DIN_B,)
    assert [c.id for c in g.containers("B-B")] == ["APH-B"]


def test_two_cois_are_never_combined_in_one_container() -> None:
    g = _two_patients()
    with pytest.raises(GenealogyError, match="another COI"):
        g.register_container("MIX", batch="B-A", kind=ContainerKind.CULTURE_BAG, parents=["APH-A", "APH-B"])
    with pytest.raises(GenealogyError, match="another COI"):
        g.register_container("X", batch="B-A", kind=ContainerKind.CULTURE_BAG, parents=["APH-B"])
    assert g.get("MIX") is None and g.get("X") is None  # nothing half-registered
    assert g.children("APH-A") == ()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"container_id": "APH-A", "batch": "B-A", "kind": ContainerKind.CULTURE_BAG, "parents": ["APH-A"]},
         "already registered"),
        ({"container_id": "N", "batch": "B-Z", "kind": ContainerKind.CULTURE_BAG, "parents": ["APH-A"]},
         "unknown batch"),
        ({"container_id": "N", "batch": "B-A", "kind": ContainerKind.APHERESIS_BAG}, "must carry its DIN"),
        ({"container_id": "N", "batch": "B-A", "kind": ContainerKind.APHERESIS_BAG, "din": DIN_B},
         "not a DIN of batch"),
        ({"container_id": "N", "batch": "B-A", "kind": ContainerKind.APHERESIS_BAG, "din": DIN_A2,
          "parents": ["APH-A"]}, "no parent"),
        ({"container_id": "N", "batch": "B-A", "kind": ContainerKind.CULTURE_BAG}, "must name its parent"),
        ({"container_id": "N", "batch": "B-A", "kind": ContainerKind.CULTURE_BAG, "parents": ["GHOST"]},
         "not registered"),
        ({"container_id": "N", "batch": "B-A", "kind": ContainerKind.CULTURE_BAG, "parents": ["APH-A"],
          "din": DIN_A}, "only the apheresis bag"),
        ({"container_id": "", "batch": "B-A", "kind": ContainerKind.CULTURE_BAG, "parents": ["APH-A"]}, "needs an id"),
    ],
)
def test_registration_that_would_break_the_genealogy_is_refused(kwargs: dict, match: str) -> None:
    g = _two_patients()
    cid = kwargs.pop("container_id")
    with pytest.raises(GenealogyError, match=match):
        g.register_container(cid, **kwargs)


def test_batch_registration_rules() -> None:
    g = _two_patients()
    with pytest.raises(GenealogyError):
        g.register_batch("B-A", "COI-CCCCCC")
    with pytest.raises(GenealogyError):
        g.register_batch("", "COI-CCCCCC")
    g.register_batch("B-A-2", "COI-AAAAAA")  # a second run for the same patient
    assert g.batches_of_coi("COI-AAAAAA") == ("B-A", "B-A-2")


def test_quarantine_and_end_states() -> None:
    g = _two_patients()
    g.set_status("APH-A", ContainerStatus.QUARANTINE)
    with pytest.raises(GenealogyError, match="QUARANTINE"):
        g.set_status("APH-A", ContainerStatus.OPEN)  # no way round a QA decision
    with pytest.raises(GenealogyError, match="QUARANTINE"):
        g.register_container("C", batch="B-A", kind=ContainerKind.CULTURE_BAG, parents=["APH-A"])
    g.set_status("APH-A", ContainerStatus.ACTIVE)  # released (the caller recorded the QA decision)
    g.set_status("APH-A", ContainerStatus.CONSUMED)
    assert g.container("APH-A").ended
    for s in ContainerStatus:
        with pytest.raises(GenealogyError, match="end state"):
            g.set_status("APH-A", s)
    with pytest.raises(GenealogyError, match="CONSUMED"):
        g.register_container("C", batch="B-A", kind=ContainerKind.CULTURE_BAG, parents=["APH-A"])


def _locations() -> LocationRegister:
    return LocationRegister([("inc.slot1", LocationKind.INCUBATOR_SLOT), ("inc.slot2", LocationKind.INCUBATOR_SLOT),
                             ("rack.1", LocationKind.RACK), ("rtp1", LocationKind.RTP_BETA),
                             ("welder", LocationKind.WORK_POSITION)])


def test_a_storage_position_is_registered_to_one_coi_at_a_time() -> None:
    g, loc = _two_patients(), _locations()
    loc.assign("inc.slot1", "COI-AAAAAA", "B-A")
    loc.assign("inc.slot1", "COI-AAAAAA", "B-A")  # idempotent
    with pytest.raises(LocationError, match="registered to COI COI-AAAAAA"):
        loc.assign("inc.slot1", "COI-BBBBBB", "B-B")
    assert loc.owner("inc.slot1") == "COI-AAAAAA"
    assert loc.may_hold("inc.slot1", "COI-AAAAAA") and not loc.may_hold("inc.slot1", "COI-BBBBBB")
    assert not loc.may_hold("inc.slot2", "COI-AAAAAA")  # storage not yet registered to anyone
    assert loc.may_hold("welder", "COI-BBBBBB")  # a station is not registered to a COI
    with pytest.raises(LocationError, match="not a storage position"):
        loc.assign("welder", "COI-AAAAAA", "B-A")
    # a slot with a live container of A cannot be handed to B
    g.register_container("EXP-A", batch="B-A", kind=ContainerKind.CULTURE_BAG, parents=["APH-A"],
                         location="inc.slot1")
    with pytest.raises(LocationError, match="still holds EXP-A"):
        loc.release("inc.slot1", g)
    g.set_status("EXP-A", ContainerStatus.CONSUMED)
    loc.release("inc.slot1", g)
    loc.assign("inc.slot1", "COI-BBBBBB", "B-B")
    assert [x.id for x in loc.owned_by("COI-BBBBBB")] == ["inc.slot1"]
    with pytest.raises(LocationError):
        loc.add("rack.1", LocationKind.RACK)
    with pytest.raises(LocationError):
        loc.owner("nowhere")
