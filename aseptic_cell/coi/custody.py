"""The chain-of-custody log: every transfer and control point of a container, written into the
batch record (entries of kind ``custody``, hash-chained with everything else; append-only by the
store's triggers) [CFR1271 §1271.290] [EU-ATMP-2017] [CFR11].

Each event carries: event id, UTC time (the record entry's time stamp), cell, batch, COI,
container id(s), parent id(s), location from/to, equipment, actor (a user id, ``system`` or
``robot:<id>``), the raw scan payloads, the verification result, the e-signature reference and the
linked deviation. Event types are the custody table's (:class:`CustodyEventType`) plus three
end/quarantine events this cell needs (``QUARANTINE``, ``CONSUME``, ``DISPOSE``; engineering).

COI-01: a handling event (:data:`SCAN_REQUIRED`) is refused unless it carries a verification that
PROCEEDed and the scans it was based on. A strict log (the default) also requires each event's
table fields: locations of a move, the equipment, the e-signature of a release and the extra
fields of :data:`EXTRA_FIELDS`. A quarantined container's move to the quarantine position is a
``QUARANTINE`` event with ``location_from``/``location_to``. A container a step found where it
expected another and that no batch registered (COI-30) enters the log by a ``QUARANTINE`` event
with ``extra.found`` and the place it stands (``location_to``): its chain starts there.
:func:`completeness` checks, per container, an unbroken
sequence of locations from its registration to its end state.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..records.store import BatchRecord, Entry
from .model import ContainerStatus, Genealogy
from .verify import Action, ScanResult, Verdict

KIND = "custody"


class CustodyEventType(StrEnum):
    APH_RECEIPT = "APH_RECEIPT"
    RTP_DOCK = "RTP_DOCK"
    RTP_TRANSFER_IN = "RTP_TRANSFER_IN"
    CONTAINER_REGISTER = "CONTAINER_REGISTER"
    MOVE = "MOVE"
    OPEN_START = "OPEN_START"
    OPEN_END = "OPEN_END"
    CONNECT = "CONNECT"
    WELD = "WELD"
    SEAL = "SEAL"
    REAGENT_ADD = "REAGENT_ADD"
    SAMPLE = "SAMPLE"
    INCUBATOR_IN = "INCUBATOR_IN"
    INCUBATOR_OUT = "INCUBATOR_OUT"
    CENTRIFUGE_RUN = "CENTRIFUGE_RUN"
    LINE_CLEARANCE = "LINE_CLEARANCE"
    FILL = "FILL"
    LABEL_FINAL = "LABEL_FINAL"
    CRYO_START = "CRYO_START"
    CRYO_END = "CRYO_END"
    STORE = "STORE"
    QA_RELEASE = "QA_RELEASE"
    SHIP = "SHIP"
    RECEIPT_SITE = "RECEIPT_SITE"
    INFUSION_CONFIRM = "INFUSION_CONFIRM"
    DEVIATION = "DEVIATION"
    HOLD = "HOLD"
    RESUME = "RESUME"
    # engineering additions: the end states and the COI-30 quarantine
    QUARANTINE = "QUARANTINE"
    CONSUME = "CONSUME"
    DISPOSE = "DISPOSE"


E = CustodyEventType
REGISTRATION = frozenset({E.APH_RECEIPT, E.CONTAINER_REGISTER})
END_EVENTS: Mapping[CustodyEventType, ContainerStatus] = {
    E.CONSUME: ContainerStatus.CONSUMED, E.DISPOSE: ContainerStatus.DISPOSED, E.SHIP: ContainerStatus.SHIPPED}
SCAN_REQUIRED = frozenset({
    E.APH_RECEIPT, E.RTP_DOCK, E.RTP_TRANSFER_IN, E.CONTAINER_REGISTER, E.MOVE, E.OPEN_START, E.CONNECT, E.WELD,
    E.SEAL, E.SAMPLE, E.INCUBATOR_IN, E.INCUBATOR_OUT, E.CENTRIFUGE_RUN, E.FILL, E.LABEL_FINAL, E.CRYO_START,
    E.STORE, E.SHIP, E.DISPOSE})
"""COI-01: events that handle a container and must follow a verified scan of each one."""
CONTAINER_FREE = frozenset({E.LINE_CLEARANCE, E.QA_RELEASE, E.DEVIATION, E.HOLD, E.RESUME})
"""Events that may name no container."""
OTHER_COI_ALLOWED = frozenset({E.DEVIATION, E.HOLD, E.QUARANTINE})
"""Events that may name a container of another COI (a mismatch is recorded against both batches)."""

EXTRA_FIELDS: Mapping[CustodyEventType, tuple[str, ...]] = {
    E.APH_RECEIPT: ("shipper_id", "logger_file", "arrival_temp_c"),
    E.RTP_DOCK: ("rtp_cycle_counter",),
    E.RTP_TRANSFER_IN: ("rtp_cycle_counter",),
    E.CONTAINER_REGISTER: ("kit_lot", "kit_expiry"),
    E.OPEN_END: ("particle_counts",),
    E.CONNECT: ("quality",),
    E.WELD: ("wafer_lot", "quality"),
    E.SEAL: ("quality",),
    E.REAGENT_ADD: ("reagent_lot", "reagent_expiry", "volume_ml"),
    E.SAMPLE: ("test_ordered",),
    E.INCUBATOR_IN: ("door_open_s",),
    E.INCUBATOR_OUT: ("door_open_s",),
    E.CENTRIFUGE_RUN: ("program", "rcf_g", "time_s"),
    E.LINE_CLEARANCE: ("checklist", "verifier"),
    E.FILL: ("bag_count", "volumes_ml"),
    E.LABEL_FINAL: ("label_template_version",),
    E.CRYO_START: ("crf_program",),
    E.CRYO_END: ("crf_program", "curve_file"),
    E.SHIP: ("courier", "awb", "dry_shipper_id"),
    E.RECEIPT_SITE: ("site_user",),
    E.INFUSION_CONFIRM: ("site_user",),
    E.DEVIATION: ("code",),
    E.HOLD: ("code",),
    E.RESUME: ("code",),
}
"""The custody table's extra fields per event (``extra``), required when the log is strict."""

NEEDS_FROM = frozenset({E.MOVE, E.INCUBATOR_OUT, E.RTP_TRANSFER_IN})
NEEDS_TO = frozenset({E.MOVE, E.INCUBATOR_IN, E.RTP_TRANSFER_IN, E.STORE} | REGISTRATION)
NEEDS_EQUIPMENT = frozenset({E.RTP_DOCK, E.RTP_TRANSFER_IN, E.CONNECT, E.WELD, E.SEAL, E.INCUBATOR_IN,
                             E.INCUBATOR_OUT, E.CENTRIFUGE_RUN, E.CRYO_START, E.CRYO_END})
NEEDS_SIGNATURE = frozenset({E.QA_RELEASE})
TWO_ENDS = frozenset({E.CONNECT, E.WELD})


class CustodyError(ValueError):
    """A custody event that must not be written (names the rule)."""


@dataclass(frozen=True)
class CustodyEvent:
    event_id: str
    type: CustodyEventType
    utc_time: str
    cell_id: str
    batch_id: str
    coi_id: str
    container_ids: tuple[str, ...]
    parent_ids: tuple[str, ...]
    location_from: str | None
    location_to: str | None
    equipment_id: str
    actor: str
    scan_payloads: tuple[dict[str, Any], ...]
    verification_result: dict[str, Any] | None
    signature_ref: str
    deviation_ref: str
    extra: dict[str, Any] = field(default_factory=dict)
    seq: int = 0
    hash: str = ""

    def payload(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id, "event": self.type.value, "cell_id": self.cell_id, "coi_id": self.coi_id,
            "container_ids": list(self.container_ids), "parent_ids": list(self.parent_ids),
            "location_from": self.location_from, "location_to": self.location_to,
            "equipment_id": self.equipment_id, "scan_payloads": list(self.scan_payloads),
            "verification_result": self.verification_result, "signature_ref": self.signature_ref,
            "deviation_ref": self.deviation_ref, "extra": dict(self.extra),
        }

    @classmethod
    def from_entry(cls, entry: Entry) -> CustodyEvent:
        p = entry.payload
        return cls(
            str(p["event_id"]), CustodyEventType(p["event"]), entry.ts_iso, str(p["cell_id"]), entry.batch_id,
            str(p["coi_id"]), tuple(p.get("container_ids", ())), tuple(p.get("parent_ids", ())),
            p.get("location_from"), p.get("location_to"), str(p.get("equipment_id", "")), entry.actor,
            tuple(p.get("scan_payloads", ())), p.get("verification_result"), str(p.get("signature_ref", "")),
            str(p.get("deviation_ref", "")), dict(p.get("extra", {})), entry.seq, entry.hash)


def check_actor(actor: str) -> str:
    """A user id, ``system`` or ``robot:<id>`` (ALCOA+ attributable [MHRA-DI-2018])."""
    if not isinstance(actor, str) or not actor.strip() or actor != actor.strip():
        raise CustodyError(f"actor must be a user id, 'system' or 'robot:<id>', got {actor!r}")
    if actor.startswith("robot:") and not actor[len("robot:"):]:
        raise CustodyError("actor 'robot:' needs the robot's id ('robot:<id>')")
    return actor


def _verification(v: Verdict | Mapping[str, Any] | None) -> dict[str, Any] | None:
    if v is None:
        return None
    if isinstance(v, Verdict):
        return v.to_dict()
    return dict(v)


class CustodyLog:
    """Writes custody events into ``record`` (append-only) and, when given, keeps ``genealogy``'s
    locations and end states in step with what was written."""

    def __init__(self, record: BatchRecord, cell_id: str, genealogy: Genealogy | None = None, *,
                 strict: bool = True) -> None:
        if not cell_id:
            raise ValueError("a custody log needs the cell id")
        self.record = record
        self.cell_id = cell_id
        self.genealogy = genealogy
        self.strict = strict
        """Require each event's table fields (locations, equipment, signature, :data:`EXTRA_FIELDS`)."""

    def append(
        self,
        event: CustodyEventType | str,
        *,
        batch_id: str,
        coi_id: str,
        actor: str,
        container_ids: Sequence[str] = (),
        parent_ids: Sequence[str] = (),
        location_from: str | None = None,
        location_to: str | None = None,
        equipment_id: str = "",
        scans: Iterable[ScanResult | Mapping[str, Any]] = (),
        verification: Verdict | Mapping[str, Any] | None = None,
        signature_ref: str = "",
        deviation_ref: str = "",
        extra: Mapping[str, Any] | None = None,
        reason: str = "",
    ) -> CustodyEvent:
        """Validate and write one event; returns it as written (with seq, hash and time).

        Raises:
            CustodyError: unknown type; no batch/COI; bad actor; a handling event without
                containers or without a PROCEED verification and its scans (COI-01); a container of
                another COI or batch; a ``location_from`` that is not where the genealogy has the
                container (a broken chain).
            RecordWriteError: the store could not commit (nothing written).
        """
        try:
            etype = CustodyEventType(event)
        except ValueError:
            raise CustodyError(f"unknown custody event {event!r}") from None
        if not batch_id or not coi_id:
            raise CustodyError(f"{etype.value}: a custody event names its batch and COI")
        check_actor(actor)
        cids = tuple(container_ids)
        if not cids and etype not in CONTAINER_FREE:
            raise CustodyError(f"{etype.value}: names no container")
        if self.strict:
            _check_fields(etype, cids, location_from, location_to, equipment_id, signature_ref, extra or {})
        raw_scans = tuple(s.raw() if isinstance(s, ScanResult) else dict(s) for s in scans)
        ver = _verification(verification)
        if etype in SCAN_REQUIRED:
            if ver is None or ver.get("action") != Action.PROCEED.value:
                raise CustodyError(f"COI-01: {etype.value} of {', '.join(cids)} is not preceded by a verified scan "
                                   f"(verification: {ver.get('code') if ver else 'none'})")
            if not raw_scans:
                raise CustodyError(f"COI-01: {etype.value} of {', '.join(cids)} carries no scan payloads")
            verified = ver.get("container_id")
            if verified is not None and verified not in cids:
                raise CustodyError(f"COI-01: the verification is of {verified}, not of {', '.join(cids)}")
        g = self.genealogy
        if g is not None:
            for cid in cids:
                c = g.get(cid)
                if c is None:
                    if etype in REGISTRATION or _found(etype, extra):
                        continue
                    raise CustodyError(f"{etype.value}: container {cid} is not registered")
                if etype not in OTHER_COI_ALLOWED and (c.coi != coi_id or c.batch != batch_id):
                    raise CustodyError(f"{etype.value}: container {cid} is of batch {c.batch} / COI {c.coi}, "
                                       f"not {batch_id} / {coi_id}")
                if location_from is not None and c.location != location_from:
                    raise CustodyError(f"{etype.value}: container {cid} is at {c.location}, not {location_from}: "
                                       "the chain of locations would break")
                if c.ended and etype not in (E.HOLD, E.DEVIATION):
                    raise CustodyError(f"{etype.value}: container {cid} is {c.status.value}")
        ev = CustodyEvent(uuid.uuid4().hex, etype, "", self.cell_id, batch_id, coi_id, cids, tuple(parent_ids),
                          location_from, location_to, equipment_id, actor, raw_scans, ver, signature_ref,
                          deviation_ref, dict(extra or {}))
        entry = self.record.append(KIND, batch_id=batch_id, actor=actor, action=f"custody.{etype.value.lower()}",
                                   reason=reason, payload=ev.payload())
        written = CustodyEvent.from_entry(entry)
        if g is not None:
            for cid in cids:
                if g.get(cid) is None:
                    continue
                if location_to is not None:
                    g.set_location(cid, location_to)
                if etype in END_EVENTS:
                    g.set_status(cid, END_EVENTS[etype])
        return written

    # ------------------------------------------------------------------ COI-30
    def record_mismatch(self, verdict: Verdict, *, actor: str = "system") -> str:
        """Record a COI-30 response: the deviation (kind ``deviation``, the raw scans), a QUARANTINE
        event per container with the genealogy's containers put in QUARANTINE (a container found
        unregistered enters the genealogy in QUARANTINE by its event), then a HOLD event per held
        batch (IMPACTED when after an open/connect). Returns the deviation id.

        Raises:
            ValueError: the verdict carries no mismatch response.
        """
        resp = verdict.response
        if resp is None:
            raise ValueError(f"verdict {verdict.code.value} carries no COI-30 response")
        owner = str(resp.deviation["batch"])
        n = sum(1 for e in self.record.entries(batch_id=owner, kinds=["deviation"])
                if str(e.payload.get("deviation", "")).startswith(f"DEV-{owner}-COI-")) + 1
        dev_id = f"DEV-{owner}-COI-{n:03d}"
        self.record.append("deviation", batch_id=owner, actor=actor, action="deviation.raise",
                           reason=verdict.message,
                           payload={"deviation": dev_id, **resp.deviation, "verdict": verdict.to_dict()})
        found = set(resp.deviation.get("found_unregistered") or ())
        for cid in resp.quarantine_containers:
            c = self.genealogy.get(cid) if self.genealogy else None
            if c is None and cid in found:
                # found where the step expected another container, registered to no batch: its chain starts
                # with this quarantine where it stands (the finding batch's record), then the genealogy has it
                where = resp.quarantine_position or resp.deviation.get("location_expected")
                self.append(E.QUARANTINE, batch_id=owner, coi_id=str(resp.deviation["coi_expected"]), actor=actor,
                            container_ids=(cid,), location_to=where, deviation_ref=dev_id, verification=verdict,
                            scans=verdict.scans, extra={"code": verdict.code.value, "found": True,
                                                        "coi_read": resp.deviation.get("coi_read"),
                                                        "container_read": resp.deviation.get("container_read")})
                if self.genealogy is not None:
                    self.genealogy.quarantine_found(cid, batch=owner, location=where,
                                                    coi=resp.deviation.get("coi_read") or None)
                continue
            batch = c.batch if c else owner
            coi = c.coi if c else str(resp.deviation["coi_expected"])
            self.append(E.QUARANTINE, batch_id=batch, coi_id=coi, actor=actor, container_ids=(cid,),
                        deviation_ref=dev_id, verification=verdict, scans=verdict.scans,
                        extra={"code": verdict.code.value})
            if self.genealogy is not None and c is not None and not c.ended:
                self.genealogy.set_status(cid, ContainerStatus.QUARANTINE)
        coi_of = self._coi_of_batch
        for b in resp.hold_batches:
            self.append(E.HOLD, batch_id=b, coi_id=coi_of(b, str(resp.deviation["coi_expected"])), actor=actor,
                        container_ids=resp.quarantine_containers, deviation_ref=dev_id,
                        verification=verdict, scans=verdict.scans,
                        extra={"impacted": b in resp.impacted_batches, "code": verdict.code.value},
                        reason=verdict.message)
        return dev_id

    def _coi_of_batch(self, batch_id: str, default: str) -> str:
        if self.genealogy is None:
            return default
        try:
            return self.genealogy.batch(batch_id).coi
        except ValueError:
            return default

    # ------------------------------------------------------------------ reading
    def events(self, batch_id: str | None = None, container_id: str | None = None) -> list[CustodyEvent]:
        out = [CustodyEvent.from_entry(e) for e in self.record.entries(batch_id=batch_id, kinds=[KIND])]
        if container_id is not None:
            out = [e for e in out if container_id in e.container_ids]
        return out


def _found(etype: CustodyEventType, extra: Mapping[str, Any] | None) -> bool:
    """A QUARANTINE event of a container found unregistered (COI-30): it enters the log by its quarantine."""
    return etype is E.QUARANTINE and bool((extra or {}).get("found"))


def _check_fields(etype: CustodyEventType, cids: tuple[str, ...], location_from: str | None,
                  location_to: str | None, equipment_id: str, signature_ref: str, extra: Mapping[str, Any]) -> None:
    name = etype.value
    if etype in NEEDS_FROM and not location_from:
        raise CustodyError(f"{name}: needs location_from")
    if etype in NEEDS_TO and not location_to:
        raise CustodyError(f"{name}: needs location_to")
    if etype in NEEDS_EQUIPMENT and not equipment_id:
        raise CustodyError(f"{name}: needs the equipment id")
    if etype in NEEDS_SIGNATURE and not signature_ref:
        raise CustodyError(f"{name}: needs the e-signature reference")
    if etype in TWO_ENDS and len(cids) < 2:
        raise CustodyError(f"{name}: names both ends (two containers)")
    missing = [k for k in EXTRA_FIELDS.get(etype, ()) if extra.get(k) in (None, "")]
    if missing:
        raise CustodyError(f"{name}: missing {', '.join(missing)} (custody table extra fields)")


# ----------------------------------------------------------------------------- completeness
def completeness(events: Sequence[CustodyEvent], container_id: str, *, require_end: bool = False) -> list[str]:
    """Problems of one container's custody chain ([] = complete): registered once, first; every
    event that names a ``location_from`` starts where the previous one left it; a move names its
    ``location_from``; parents registered before it; nothing after its end state; with
    ``require_end``, an end state (CONSUME, DISPOSE, SHIP) reached."""
    problems: list[str] = []
    registered: set[str] = set()
    here: str | None = None
    started = ended = False
    for ev in sorted(events, key=lambda e: e.seq):
        registers = ev.type in REGISTRATION or _found(ev.type, ev.extra)
        if registers:
            registered.update(ev.container_ids)
        if container_id not in ev.container_ids:
            continue
        tag = f"seq {ev.seq} {ev.type.value}"
        if ended:
            problems.append(f"{container_id}: {tag} after its end state")
            continue
        if registers:
            if started:
                problems.append(f"{container_id}: {tag}: registered twice")
            missing = [p for p in ev.parent_ids if p not in registered]
            if missing:
                problems.append(f"{container_id}: {tag}: parent(s) {', '.join(missing)} not registered before it")
            if ev.location_to is None:
                problems.append(f"{container_id}: {tag}: registration names no location")
            started, here = True, ev.location_to
            continue
        if not started:
            problems.append(f"{container_id}: {tag} before its registration")
            started = True
        if ev.location_to is not None and ev.location_from is None:
            problems.append(f"{container_id}: {tag}: moved to {ev.location_to} without a location_from")
        elif ev.location_from is not None and here is not None and ev.location_from != here:
            problems.append(f"{container_id}: {tag}: from {ev.location_from} but it was at {here}")
        if ev.location_to is not None:
            here = ev.location_to
        if ev.type in END_EVENTS:
            ended = True
    if not started:
        problems.append(f"{container_id}: no custody event")
    elif require_end and not ended:
        problems.append(f"{container_id}: no end state (CONSUME, DISPOSE or SHIP) recorded; last at {here}")
    return problems


def check_custody(log: CustodyLog, batch_id: str | None = None, *, require_end: bool = False) -> dict[str, list[str]]:
    """:func:`completeness` of every container named in the log (of one batch, or all):
    container id → problems (only containers with problems are listed)."""
    events = log.events()
    scoped = [e for e in events if batch_id is None or e.batch_id == batch_id]
    ids = list(dict.fromkeys(cid for e in scoped if e.type is not E.HOLD for cid in e.container_ids))
    out: dict[str, list[str]] = {}
    for cid in ids:
        problems = completeness(events, cid, require_end=require_end)
        if problems:
            out[cid] = problems
    return out
