"""Random sequences over four patients in one cell: receipts (some with another patient's label or
DIN), label read-backs, moves into COI-registered slots, welds, with misreads and the wrong
container presented. Whatever happens: nothing of two COIs is ever connected, combined, stored
together or moved on a mismatched read; every STOP opened exactly one deviation; the record
verifies and every container's custody chain is complete."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from aseptic_cell.coi import (
    Action,
    ChainOfIdentity,
    ContainerKind,
    ContainerStatus,
    CustodyEventType,
    Expectation,
    GenealogyError,
    LocationKind,
    Outcome,
    ScanResult,
    check_custody,
    encode_label,
    make_din,
)
from aseptic_cell.records import BatchRecord

E = CustodyEventType
N = 4
COIS = [f"COI-{i}{i}{i}{i}{i}{i}" for i in range(N)]
BATCHES = [f"B-{i}" for i in range(N)]
DINS = [make_din("G1234", "26", f"{i:06d}") for i in range(N)]
SLOTS = [f"inc.slot{i}" for i in range(N)]
RECEIPT = {"shipper_id": "SH", "logger_file": "l.csv", "arrival_temp_c": 4.0}
_SHM = "/dev/shm" if os.path.isdir("/dev/shm") else None  # the same SQLite file store, without disk fsync latency


class Clock:
    def __init__(self) -> None:
        self.t = 1_790_000_000.0

    def now(self) -> float:
        self.t += 1.0
        return self.t


class CoiMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(dir=_SHM, prefix="coi-stateful-"))
        self.rec = BatchRecord(self.dir / "cell.db", Clock())
        locs = [("rtp1", LocationKind.WORK_POSITION), ("welder", LocationKind.WORK_POSITION)] + [
            (s, LocationKind.INCUBATOR_SLOT) for s in SLOTS]
        self.coi = ChainOfIdentity(self.rec, "CELL-01", None, locs)
        for i in range(N):
            self.coi.admit_batch(BATCHES[i], COIS[i], [DINS[i].barcode_data])
            self.coi.locations.assign(SLOTS[i], COIS[i], BATCHES[i])
        self.stops = 0
        self.n = 0

    def teardown(self) -> None:
        try:
            assert self.rec.verify().ok
            assert check_custody(self.coi.log) == {}
            assert len(self.rec.entries(kinds=["deviation"])) == self.stops
        finally:
            self.rec.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------------ helpers
    def _live(self) -> list[str]:
        return [c.id for c in self.coi.genealogy.containers() if not c.ended]

    def _note(self, o: Outcome) -> None:
        if o.verdict.action is Action.STOP:
            self.stops += 1
            assert o.deviation and o.event is None
        if o.event is not None and o.event.type is not E.HOLD:
            g = self.coi.genealogy
            assert o.verdict.ok
            assert {g.container(cid).coi for cid in o.event.container_ids} == {o.event.coi_id}, o.event

    def _read(self, data: st.DataObject, target: str) -> ScanResult:
        kind = data.draw(st.sampled_from(["right", "right", "right", "other", "no_read"]))
        if kind == "no_read":
            return ScanResult(None, read_failed=True, attempt=data.draw(st.integers(1, 5)))
        cid = target if kind == "right" else data.draw(st.sampled_from(self._live()))
        c = self.coi.genealogy.container(cid)
        return ScanResult(encode_label(c.coi, cid))

    # ------------------------------------------------------------------ rules
    @rule(p=st.integers(0, N - 1), label_of=st.integers(0, N - 1))
    def receive(self, p: int, label_of: int) -> None:
        self.n += 1
        cid = f"APH-{p}-{self.n}"
        o = self.coi.receive(ScanResult(encode_label(COIS[label_of], cid, DINS[label_of].barcode_data)),
                             Expectation(BATCHES[p], COIS[p], None, "rtp1"), actor="op.a", paperwork_coi=COIS[p],
                             seal_intact=True, temperature_in_limits=True, extra=RECEIPT)
        self._note(o)
        assert o.ok == (label_of == p)

    @precondition(lambda self: bool(self._live()))
    @rule(data=st.data())
    def register_child(self, data: st.DataObject) -> None:
        parent = self.coi.genealogy.container(data.draw(st.sampled_from(self._live())))
        if parent.status is not ContainerStatus.ACTIVE or parent.location is None:
            return
        self.n += 1
        cid = f"BAG-{self.n}"
        printed = data.draw(st.sampled_from([parent.coi, parent.coi, COIS[0]]))
        o = self.coi.register(ScanResult(encode_label(printed, cid)),
                              Expectation(parent.batch, parent.coi, cid, parent.location), actor="robot:r1",
                              kind=ContainerKind.CULTURE_BAG, parents=[parent.id],
                              extra={"kit_lot": "K", "kit_expiry": "2027-01-01"})
        self._note(o)
        assert o.ok == (printed == parent.coi)

    @precondition(lambda self: bool(self._live()))
    @rule(data=st.data(), dest=st.sampled_from(["welder", *SLOTS]))
    def move(self, data: st.DataObject, dest: str) -> None:
        target = self.coi.genealogy.container(data.draw(st.sampled_from(self._live())))
        if target.location == dest:
            return
        read = self._read(data, target.id)
        event = E.INCUBATOR_IN if dest.startswith("inc.") else E.MOVE
        o = self.coi.handle(event, read, Expectation(target.batch, target.coi, target.id, target.location, dest),
                            actor="robot:r1", equipment_id="incubator", extra={"door_open_s": 5})
        self._note(o)
        if o.ok:
            moved = self.coi.genealogy.container(target.id)
            assert moved.location == dest and read.payload == encode_label(target.coi, target.id)

    @precondition(lambda self: len(self._live()) >= 2)
    @rule(data=st.data())
    def weld(self, data: st.DataObject) -> None:
        a, b = (self.coi.genealogy.container(x) for x in data.draw(
            st.lists(st.sampled_from(self._live()), min_size=2, max_size=2, unique=True)))
        ends = [(self._read(data, c.id), Expectation(a.batch, a.coi, c.id, c.location)) for c in (a, b)]
        o = self.coi.connect(E.WELD, ends[0], ends[1], actor="robot:r1", equipment_id="welder",
                             extra={"wafer_lot": "W", "quality": "PASS"})
        self._note(o)
        if o.ok:
            assert a.coi == b.coi

    @precondition(lambda self: any(c.status is ContainerStatus.QUARANTINE for c in self.coi.genealogy.containers()))
    @rule(data=st.data())
    def qa_release(self, data: st.DataObject) -> None:
        q = [c for c in self.coi.genealogy.containers() if c.status is ContainerStatus.QUARANTINE]
        c = data.draw(st.sampled_from(q))
        if c.kind is ContainerKind.UNREGISTERED:  # found unregistered (COI-30): no identity to release it to
            with pytest.raises(GenealogyError, match="found unregistered"):
                self.coi.genealogy.set_status(c.id, ContainerStatus.ACTIVE)
            return
        self.coi.genealogy.set_status(c.id, ContainerStatus.ACTIVE)

    # ------------------------------------------------------------------ invariants
    @invariant()
    def never_two_cois(self) -> None:
        g = self.coi.genealogy
        for c in g.containers():
            assert all(g.container(p).coi == c.coi for p in c.parents)
            loc = self.coi.locations.get(c.location) if c.location else None
            if c.kind is ContainerKind.UNREGISTERED:  # quarantined where it was read, refused entry (COI-30)
                assert c.status in (ContainerStatus.QUARANTINE, ContainerStatus.DISPOSED) and not c.parents
                assert not g.children(c.id)
                continue
            if loc is not None and loc.storage and not c.ended:
                assert loc.owner_coi == c.coi, f"{c.id} of {c.coi} in {loc.id} of {loc.owner_coi}"


TestCoiStateful = CoiMachine.TestCase
TestCoiStateful.settings = settings(max_examples=15, stateful_step_count=20, deadline=None,
                                    suppress_health_check=[HealthCheck.too_slow])
