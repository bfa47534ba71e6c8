"""Scan verification before every physical handling step (COI-01..20) and the mismatch response
(COI-30), as pure functions over the genealogy and the location register.

Rules (engineering, after the tracking and labelling principles of [CFR1271 §1271.290]
[EU-ATMP-2017] and the ISBT 128 identifiers [ISBT-IG033] [ISBT-ST028]; parameters [M] in
``config/coi.yaml``):

* **COI-02** a read must decode, pass the symbology check, pass the DIN check where a DIN is on
  the label, and match the COI of the batch that owns the running phase, the container the
  recipe step expects and the expected location; with the two-identifier policy the COI looked
  up from the container id and the COI printed on the label must both be there and agree.
* **COI-03** no read (or a failed symbology check): re-read ``n_scan_retry`` times, then HOLD;
  never proceed on an assumed identity.
* **COI-10 / SEG-03** weld/connect: both ends verified and of one COI, else refused.
* **COI-20** a storage position takes only containers of the COI it is registered to.
* **COI-30** any COI-02/10/20 failure: the actuator stops before the container is opened or
  connected, the owner batch and the batch whose COI was read hold, the container goes to
  QUARANTINE, a deviation with the raw scan data is opened, and QA releases it with
  ``release_signatures`` e-signatures. A mismatch found after an open/connect makes both batches
  IMPACTED. There is no operator "continue": a :class:`Verdict` has no override.

Container labels printed in the cell carry ``COI:<coi>|CID:<container id>`` and, on the
apheresis bag, ``|DIN:<DIN bar-code data>`` (fields in any order; the cell's own 2D-code
content, not an ISBT 128 data structure).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .config import CoiConfig
from .isbt128 import DEFAULT_COI_REGEX, IdentifierError, parse_coi_id, parse_din, parse_sec
from .model import Container, ContainerKind, ContainerStatus, Genealogy, LocationRegister

LABEL_SEPARATOR = "|"
LABEL_FIELDS = ("COI", "CID", "DIN")


class Code(StrEnum):
    OK = "OK"
    NO_READ = "NO_READ"  # COI-03: nothing decoded
    SYMBOLOGY_FAILED = "SYMBOLOGY_FAILED"  # COI-02: decoded, symbol check failed; treated as no read
    LABEL_INVALID = "LABEL_INVALID"  # decoded, but not a container label of this cell
    IDENTIFIER_MISSING = "IDENTIFIER_MISSING"  # two-identifier policy: the label lacks its COI
    COI_INVALID = "COI_INVALID"  # the label's COI does not match the configured pattern
    DIN_CHECK_FAILED = "DIN_CHECK_FAILED"  # ISO 7064 check of the label's DIN failed
    CONTAINER_UNKNOWN = "CONTAINER_UNKNOWN"  # container id not registered
    COI_MISMATCH = "COI_MISMATCH"  # label or registry COI is not the owner batch's
    DIN_MISMATCH = "DIN_MISMATCH"  # the label's DIN is not the registered one
    CONTAINER_UNEXPECTED = "CONTAINER_UNEXPECTED"  # another container than the step expects
    CONTAINER_QUARANTINED = "CONTAINER_QUARANTINED"  # the container is in QUARANTINE
    CONTAINER_ENDED = "CONTAINER_ENDED"  # consumed, disposed or shipped
    LOCATION_MISMATCH = "LOCATION_MISMATCH"  # found elsewhere than registered / expected
    SLOT_OWNED_BY_OTHER_COI = "SLOT_OWNED_BY_OTHER_COI"  # COI-20
    SLOT_NOT_REGISTERED = "SLOT_NOT_REGISTERED"  # storage target not yet registered to this COI
    COI_CONNECT_REFUSED = "COI_CONNECT_REFUSED"  # COI-10 / SEG-03
    DIN_MISSING = "DIN_MISSING"  # receipt: the apheresis label carries no DIN
    PAPERWORK_MISMATCH = "PAPERWORK_MISMATCH"  # receipt: paperwork COI/DIN differ from the label
    CONTAINER_ALREADY_REGISTERED = "CONTAINER_ALREADY_REGISTERED"  # receipt: the id is taken
    SHIPMENT_CONDITION_FAILED = "SHIPMENT_CONDITION_FAILED"  # receipt: seal broken or temperature out of limits
    SEC_INVALID = "SEC_INVALID"  # receipt: the SEC does not parse
    SEC_MISSING = "SEC_MISSING"  # receipt: the market requires the SEC


class Action(StrEnum):
    PROCEED = "PROCEED"
    RETRY = "RETRY"  # re-orient and read again (COI-03)
    HOLD = "HOLD"  # hold the phase, operator action via glove port / camera review; no quarantine
    STOP = "STOP"  # COI-30: stop, hold, quarantine, deviation


_RULE = {
    Code.NO_READ: "COI-03", Code.SYMBOLOGY_FAILED: "COI-03", Code.SLOT_OWNED_BY_OTHER_COI: "COI-20",
    Code.SLOT_NOT_REGISTERED: "COI-20", Code.COI_CONNECT_REFUSED: "COI-10",
    Code.SHIPMENT_CONDITION_FAILED: "APH_RECEIPT", Code.SEC_MISSING: "APH_RECEIPT",
}


@dataclass(frozen=True)
class ScanPolicy:
    two_identifiers: bool = True
    n_scan_retry: int = 3
    coi_regex: str = DEFAULT_COI_REGEX
    din_require_check: bool = True
    release_signatures: int = 2

    @classmethod
    def from_config(cls, cfg: CoiConfig) -> ScanPolicy:
        """The policy ``config/coi.yaml`` sets."""
        return cls(cfg.coi_two_identifier_check, cfg.n_scan_retry, cfg.isbt_coi_regex, cfg.din_require_check,
                   cfg.mismatch_release_signatures)


@dataclass(frozen=True)
class ScanResult:
    """One read by a station's reader. ``attempt`` counts from 1 for the same step and container."""

    payload: str | None
    symbology_ok: bool = True
    read_failed: bool = False
    reader_id: str = ""
    attempt: int = 1
    frame_ref: str = ""  # camera frame kept with the read

    def raw(self) -> dict[str, Any]:
        return {"payload": self.payload, "symbology_ok": self.symbology_ok, "read_failed": self.read_failed,
                "reader_id": self.reader_id, "attempt": self.attempt, "frame_ref": self.frame_ref}


@dataclass(frozen=True)
class Expectation:
    """What the running step expects: the owner batch and its COI, the container, where it is,
    and where it goes (a storage position: COI-20). ``after_open``: the read is taken after the
    container was opened or connected (a mismatch then makes the batches IMPACTED)."""

    batch_id: str
    coi: str
    container_id: str | None = None
    location: str | None = None
    destination: str | None = None
    after_open: bool = False
    quarantine_ok: bool = False
    """The step handles a quarantined container on purpose (to the quarantine position, or its
    disposal after the QA decision): its QUARANTINE status does not stop the read."""


@dataclass(frozen=True)
class Label:
    coi: str | None
    container_id: str
    din: str | None


class LabelError(ValueError):
    pass


def encode_label(coi: str, container_id: str, din: str | None = None) -> str:
    """The 2D-code content of a container label printed in the cell."""
    parts = [f"COI:{coi}", f"CID:{container_id}"] + ([f"DIN:{din}"] if din else [])
    for p in parts:
        if p.count(LABEL_SEPARATOR):
            raise LabelError(f"label field {p!r} contains the separator {LABEL_SEPARATOR!r}")
    return LABEL_SEPARATOR.join(parts)


def decode_label(payload: str) -> Label:
    """Fields of a container label. Raises :class:`LabelError`: unknown, repeated or empty field;
    no container id."""
    values: dict[str, str] = {}
    for part in payload.split(LABEL_SEPARATOR):
        key, sep, value = part.partition(":")
        if not sep or key not in LABEL_FIELDS:
            raise LabelError(f"not a container label field: {part!r}")
        if key in values:
            raise LabelError(f"field {key} appears twice")
        if not value.strip():
            raise LabelError(f"field {key} is empty")
        values[key] = value.strip()
    if "CID" not in values:
        raise LabelError("no container id (CID) on the label")
    return Label(values.get("COI"), values["CID"], values.get("DIN"))


@dataclass(frozen=True)
class MismatchResponse:
    """COI-30 as data, for the executive to carry out (stop first, then the rest)."""

    stop_actuator: bool
    hold_batches: tuple[str, ...]
    quarantine_containers: tuple[str, ...]
    quarantine_position: str | None
    impacted_batches: tuple[str, ...]
    release_signatures: int
    deviation: dict[str, Any]

    @property
    def operator_may_continue(self) -> bool:
        """Never: only a QA decision with e-signatures releases a COI mismatch (COI-30)."""
        return False


@dataclass(frozen=True)
class Verdict:
    code: Code
    action: Action
    rule: str
    message: str
    container_id: str | None = None
    read_coi: str | None = None
    scans: tuple[dict[str, Any], ...] = ()
    response: MismatchResponse | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.action is Action.PROCEED

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code.value, "action": self.action.value, "rule": self.rule, "message": self.message,
                "container_id": self.container_id, "read_coi": self.read_coi, "scans": list(self.scans)}


def _batches_of(genealogy: Genealogy, coi: str | None) -> tuple[str, ...]:
    return genealogy.batches_of_coi(coi) if coi else ()


def _stop(
    code: Code,
    message: str,
    expected: Expectation,
    scans: tuple[ScanResult, ...],
    genealogy: Genealogy,
    policy: ScanPolicy,
    *,
    container: Container | None = None,
    read_coi: str | None = None,
    read_id: str | None = None,
    other_batches: tuple[str, ...] = (),
    extra_quarantine: tuple[str, ...] = (),
    details: Mapping[str, Any] | None = None,
) -> Verdict:
    rule = _RULE.get(code, "COI-02")
    hold = [expected.batch_id]
    # the batch whose COI was read: the read container's and every batch of a COI read on the label
    # (the executive holds those still running)
    for b in (*((container.batch,) if container else ()), *_batches_of(genealogy, read_coi), *other_batches):
        if b not in hold:
            hold.append(b)
    named = ((container.id,) if container is not None else ()) + extra_quarantine
    quarantine = tuple(cid for cid in dict.fromkeys(named)
                       if (c := genealogy.get(cid)) is not None and not c.ended)  # an end state is final
    # what stands there and no batch registered there (a label naming an unknown container, none that decodes,
    # or a registered container's that the genealogy has elsewhere) is quarantined too, under an id of its own
    # (the id read may be a real container's, still to come or elsewhere): the custody log registers it in
    # QUARANTINE (CustodyLog.record_mismatch); it is never left untracked. A registered container read where
    # the genealogy has it (another batch's bag at the receipt position) is that container: not found.
    found = None
    known = genealogy.get(read_id) if read_id else None
    if container is None and not quarantine and (known is None or known.location != expected.location):
        found = found_id(genealogy, expected.batch_id)
        quarantine = (found,)
    impacted = tuple(hold) if expected.after_open else ()
    raw = tuple(s.raw() for s in scans)
    deviation = {
        "rule": rule,
        "code": code.value,
        "description": message,
        "batch": expected.batch_id,
        "coi_expected": expected.coi,
        "coi_read": read_coi,
        "container_expected": expected.container_id,
        "container_read": container.id if container else read_id,
        "location_expected": expected.location,
        "destination": expected.destination,
        "scans": list(raw),
        "camera_frames": [s.frame_ref for s in scans if s.frame_ref],
        "hold_batches": list(hold),
        "quarantine": list(quarantine),
        "impacted": list(impacted),
        "after_open": expected.after_open,
        "release_signatures": policy.release_signatures,
    }
    if found is not None:
        deviation["found_unregistered"] = [found]
    if container is None:
        deviation["unidentified_container_at"] = expected.location
    resp = MismatchResponse(True, tuple(hold), quarantine, expected.location if found or not quarantine else None,
                            impacted, policy.release_signatures, deviation)
    return Verdict(code, Action.STOP, rule, message, container.id if container else read_id, read_coi, raw, resp,
                   dict(details or {}))


def found_id(genealogy: Genealogy, batch_id: str) -> str:
    """The id a container found unregistered by ``batch_id``'s step is quarantined under:
    ``FOUND-<batch>-<n>`` (its label's content goes into the deviation and the custody event)."""
    n = 1 + sum(1 for c in genealogy.containers(batch_id) if c.kind is ContainerKind.UNREGISTERED)
    return f"FOUND-{batch_id}-{n:03d}"


def _no_read(code: Code, why: str, scan: ScanResult, policy: ScanPolicy) -> Verdict:
    retries_left = policy.n_scan_retry - (scan.attempt - 1)
    if retries_left > 0:
        return Verdict(code, Action.RETRY, "COI-03", f"{why}: re-orient and read again "
                       f"({retries_left} re-read(s) left)", scans=(scan.raw(),))
    return Verdict(code, Action.HOLD, "COI-03", f"{why} after {scan.attempt} attempt(s): the phase holds for "
                   "operator action (glove port / camera review); no identity is assumed", scans=(scan.raw(),))


def _place_check(
    position: str,
    coi: str,
    cid: str,
    expected: Expectation,
    scans: tuple[ScanResult, ...],
    genealogy: Genealogy,
    locations: LocationRegister,
    policy: ScanPolicy,
    container: Container | None = None,
) -> Verdict | None:
    """COI-20 for a container of ``coi`` about to be at ``position``: None when it may be."""
    dest = locations.get(position)
    if dest is None:
        return _stop(Code.LOCATION_MISMATCH, f"position {position} is not a known position", expected, scans,
                     genealogy, policy, container=container, read_coi=coi, read_id=cid)
    if dest.storage and dest.owner_coi is not None and dest.owner_coi != coi:
        return _stop(Code.SLOT_OWNED_BY_OTHER_COI, f"{dest.id} is registered to COI {dest.owner_coi} (batch "
                     f"{dest.owner_batch}); container {cid} is of COI {coi}", expected, scans, genealogy, policy,
                     container=container, read_coi=coi, read_id=cid,
                     other_batches=(dest.owner_batch,) if dest.owner_batch else ())
    if dest.storage and dest.owner_coi is None:
        return Verdict(Code.SLOT_NOT_REGISTERED, Action.HOLD, "COI-20", f"{dest.id} is not registered to COI "
                       f"{coi}: register it to the batch before placing {cid}", cid, coi,
                       tuple(s.raw() for s in scans))
    return None


def verify_scan(
    scan: ScanResult,
    expected: Expectation,
    genealogy: Genealogy,
    locations: LocationRegister,
    policy: ScanPolicy | None = None,
) -> Verdict:
    """Check one read against the running step (COI-02/03/20). Pure: nothing is changed."""
    policy = policy or ScanPolicy()
    scans = (scan,)
    if scan.read_failed or not scan.payload:
        return _no_read(Code.NO_READ, "no read", scan, policy)
    if not scan.symbology_ok:
        return _no_read(Code.SYMBOLOGY_FAILED, "the symbol check failed", scan, policy)
    try:
        label = decode_label(scan.payload)
    except LabelError as exc:
        return _stop(Code.LABEL_INVALID, f"not a container label: {exc}", expected, scans, genealogy, policy)
    container = genealogy.get(label.container_id)
    if label.din is not None:
        try:
            din = parse_din(label.din, require_check=policy.din_require_check)
        except IdentifierError as exc:
            return _stop(Code.DIN_CHECK_FAILED, f"DIN on the label of {label.container_id}: {exc}", expected, scans,
                         genealogy, policy, container=container, read_coi=label.coi, read_id=label.container_id)
    else:
        din = None
    if label.coi is not None:
        try:
            parse_coi_id(label.coi, re.compile(policy.coi_regex))
        except IdentifierError as exc:
            return _stop(Code.COI_INVALID, f"COI on the label of {label.container_id}: {exc}", expected, scans,
                         genealogy, policy, container=container, read_id=label.container_id)
        if label.coi != expected.coi:
            return _stop(Code.COI_MISMATCH, f"label of {label.container_id} carries COI {label.coi}; the running "
                         f"phase belongs to batch {expected.batch_id} of COI {expected.coi}", expected, scans,
                         genealogy, policy, container=container, read_coi=label.coi, read_id=label.container_id)
    if container is not None and container.coi != expected.coi:
        return _stop(Code.COI_MISMATCH, f"container {container.id} is registered to COI {container.coi} (batch "
                     f"{container.batch}); the running phase belongs to batch {expected.batch_id} of COI "
                     f"{expected.coi}", expected, scans, genealogy, policy, container=container,
                     read_coi=container.coi)
    if container is None:
        return _stop(Code.CONTAINER_UNKNOWN, f"container {label.container_id} is not registered", expected, scans,
                     genealogy, policy, read_coi=label.coi, read_id=label.container_id)
    if policy.two_identifiers and label.coi is None:
        return _stop(Code.IDENTIFIER_MISSING, f"label of {container.id} carries no COI: two independent "
                     "identifiers are required", expected, scans, genealogy, policy, container=container)
    if din is not None and container.din is not None and din.body != container.din:
        return _stop(Code.DIN_MISMATCH, f"label of {container.id} carries DIN {din.body}; registered {container.din}",
                     expected, scans, genealogy, policy, container=container, read_coi=container.coi)
    if container.status is ContainerStatus.QUARANTINE and not expected.quarantine_ok:
        return _stop(Code.CONTAINER_QUARANTINED, f"container {container.id} is in QUARANTINE", expected, scans,
                     genealogy, policy, container=container, read_coi=container.coi)
    if container.ended:
        return _stop(Code.CONTAINER_ENDED, f"container {container.id} is {container.status.value}", expected,
                     scans, genealogy, policy, container=container, read_coi=container.coi)
    if expected.container_id is not None and container.id != expected.container_id:
        return _stop(Code.CONTAINER_UNEXPECTED, f"read container {container.id}; the step expects "
                     f"{expected.container_id}", expected, scans, genealogy, policy, container=container,
                     read_coi=container.coi)
    if expected.location is not None and container.location != expected.location:
        return _stop(Code.LOCATION_MISMATCH, f"container {container.id} read at {expected.location} but registered "
                     f"at {container.location}", expected, scans, genealogy, policy, container=container,
                     read_coi=container.coi)
    if expected.destination is not None:
        refused = _place_check(expected.destination, container.coi, container.id, expected, scans, genealogy,
                               locations, policy, container)
        if refused is not None:
            return refused
    return Verdict(Code.OK, Action.PROCEED, "COI-02", f"{container.id} of COI {container.coi} verified",
                   container.id, container.coi, (scan.raw(),))


def verify_connect(
    end_a: tuple[ScanResult, Expectation],
    end_b: tuple[ScanResult, Expectation],
    genealogy: Genealogy,
    locations: LocationRegister,
    policy: ScanPolicy | None = None,
) -> Verdict:
    """COI-10 / SEG-03: both ends of a weld or connection verified, and of one COI, before the
    actuator moves. The first end that does not verify decides (a no-read asks for a re-read)."""
    policy = policy or ScanPolicy()
    verdicts = [verify_scan(s, e, genealogy, locations, policy) for s, e in (end_a, end_b)]
    for v in verdicts:
        if v.action in (Action.RETRY, Action.HOLD):
            return v
    found = [genealogy.get(v.container_id) if v.container_id else None for v in verdicts]
    a, b = found
    scans = (end_a[0], end_b[0])
    if a is not None and b is not None and a.coi != b.coi:
        return _stop(Code.COI_CONNECT_REFUSED, f"refused: {a.id} (COI {a.coi}) and {b.id} (COI {b.coi}) would "
                     "connect two COIs", end_a[1], scans, genealogy, policy, container=a, read_coi=b.coi,
                     other_batches=(b.batch,), extra_quarantine=(b.id,))
    for v in verdicts:
        if not v.ok:
            return v
    assert a is not None and b is not None
    return Verdict(Code.OK, Action.PROCEED, "COI-10", f"{a.id} and {b.id} are both of COI {a.coi}", a.id, a.coi,
                   tuple(s.raw() for s in scans), details={"ends": [a.id, b.id]})


def verify_receipt(
    scan: ScanResult,
    expected: Expectation,
    genealogy: Genealogy,
    *,
    paperwork_coi: str,
    paperwork_din: str | None = None,
    seal_intact: bool,
    temperature_in_limits: bool,
    sec: str | None = None,
    sec_required: bool = False,
    locations: LocationRegister | None = None,
    policy: ScanPolicy | None = None,
) -> Verdict:
    """APH_RECEIPT: the apheresis bag's label read before it is registered (so it is not yet in the
    genealogy). Where the market requires the SEC (``sec_required``, ``config/coi.yaml``) it must be
    given; a SEC given must parse and its donation number must be the DIN [EU-SEC-2015].
    The label must carry a DIN with a valid check and the COI; label COI = the batch's
    COI = the paperwork's; the DIN is one of the batch's and the paperwork's; the container id is
    new; the shipper seal is intact and the temperature logger within limits. ``expected.location``
    is the receipt position (with ``locations``: a storage position must be registered to the
    COI, COI-20). PROCEED means: register the bag, then log the receipt."""
    policy = policy or ScanPolicy()
    scans = (scan,)
    if scan.read_failed or not scan.payload:
        return _no_read(Code.NO_READ, "no read", scan, policy)
    if not scan.symbology_ok:
        return _no_read(Code.SYMBOLOGY_FAILED, "the symbol check failed", scan, policy)
    try:
        label = decode_label(scan.payload)
    except LabelError as exc:
        return _stop(Code.LABEL_INVALID, f"not a container label: {exc}", expected, scans, genealogy, policy)
    cid = label.container_id

    def stop(code: Code, why: str, read_coi: str | None = label.coi) -> Verdict:
        return _stop(code, why, expected, scans, genealogy, policy, read_coi=read_coi, read_id=cid)

    if label.din is None:
        return stop(Code.DIN_MISSING, f"apheresis label of {cid} carries no DIN")
    try:
        din = parse_din(label.din, require_check=True)
    except IdentifierError as exc:
        return stop(Code.DIN_CHECK_FAILED, f"DIN on the label of {cid}: {exc}")
    if label.coi is None:
        return stop(Code.IDENTIFIER_MISSING, f"apheresis label of {cid} carries no COI")
    try:
        parse_coi_id(label.coi, re.compile(policy.coi_regex))
    except IdentifierError as exc:
        return stop(Code.COI_INVALID, f"COI on the label of {cid}: {exc}")
    if label.coi != expected.coi:
        return stop(Code.COI_MISMATCH, f"label of {cid} carries COI {label.coi}; batch {expected.batch_id} is of "
                    f"COI {expected.coi}")
    if paperwork_coi != label.coi:
        return stop(Code.PAPERWORK_MISMATCH, f"paperwork COI {paperwork_coi} differs from the label's {label.coi}")
    if paperwork_din is not None:
        try:
            paper = parse_din(paperwork_din, require_check=False).body
        except IdentifierError as exc:
            return stop(Code.PAPERWORK_MISMATCH, f"paperwork DIN: {exc}")
        if paper != din.body:
            return stop(Code.PAPERWORK_MISMATCH, f"paperwork DIN {paper} differs from the label's {din.body}")
    batch = genealogy.get_batch(expected.batch_id)
    if batch is None or batch.coi != expected.coi:
        return stop(Code.COI_MISMATCH, f"batch {expected.batch_id} is not registered to COI {expected.coi}")
    if batch.dins and din.body not in batch.dins:
        return stop(Code.DIN_MISMATCH, f"DIN {din.body} is not a DIN of batch {batch.id} ({', '.join(batch.dins)})")
    if genealogy.get(cid) is not None:
        return stop(Code.CONTAINER_ALREADY_REGISTERED, f"container id {cid} is already registered")
    if locations is not None and expected.location is not None:
        refused = _place_check(expected.location, label.coi, cid, expected, scans, genealogy, locations, policy)
        if refused is not None:
            return refused
    if sec is not None:
        try:
            parsed = parse_sec(sec)
        except IdentifierError as exc:
            return stop(Code.SEC_INVALID, f"SEC of {cid}: {exc}")
        if parsed.donation_number != din.body:
            return stop(Code.DIN_MISMATCH, f"SEC donation number {parsed.donation_number} is not the DIN {din.body}")
    elif sec_required:
        return Verdict(Code.SEC_MISSING, Action.HOLD, "APH_RECEIPT", f"receipt of {cid}: the market requires the "
                       "SEC and none was read", cid, label.coi, (scan.raw(),), details={"din": din.body})
    if not (seal_intact and temperature_in_limits):
        why = ", ".join(w for w, bad in (("shipper seal broken", not seal_intact),
                                          ("temperature logger out of limits", not temperature_in_limits)) if bad)
        return Verdict(Code.SHIPMENT_CONDITION_FAILED, Action.HOLD, "APH_RECEIPT", f"receipt of {cid}: {why}: the "
                       "batch holds for a QA decision on the starting material", cid, label.coi, (scan.raw(),),
                       details={"din": din.body})
    return Verdict(Code.OK, Action.PROCEED, "APH_RECEIPT", f"{cid} (DIN {din.body}) of COI {label.coi} verified",
                   cid, label.coi, (scan.raw(),), details={"din": din.body})


def verify_label_readback(
    scan: ScanResult,
    expected: Expectation,
    genealogy: Genealogy,
    policy: ScanPolicy | None = None,
    locations: LocationRegister | None = None,
) -> Verdict:
    """LAB-08 / CONTAINER_REGISTER: the label printed for a new container read back before the
    container is released from the print station (engineering, after the labelling controls of
    [CFR1271 §1271.370]). ``expected.container_id`` is the id about to be registered; the label must
    carry it and the batch's COI, and the id must be new; with ``locations``, a storage position it
    is created in must be registered to the COI (COI-20)."""
    policy = policy or ScanPolicy()
    if not expected.container_id:
        raise ValueError("a label read-back names the container id it expects")
    scans = (scan,)
    if scan.read_failed or not scan.payload:
        return _no_read(Code.NO_READ, "no read", scan, policy)
    if not scan.symbology_ok:
        return _no_read(Code.SYMBOLOGY_FAILED, "the symbol check failed", scan, policy)
    try:
        label = decode_label(scan.payload)
    except LabelError as exc:
        return _stop(Code.LABEL_INVALID, f"not a container label: {exc}", expected, scans, genealogy, policy)
    cid = label.container_id
    if label.coi is None:
        return _stop(Code.IDENTIFIER_MISSING, f"printed label of {cid} carries no COI", expected, scans, genealogy,
                     policy, read_id=cid)
    if label.coi != expected.coi:
        return _stop(Code.COI_MISMATCH, f"printed label of {cid} carries COI {label.coi}; batch {expected.batch_id} "
                     f"is of COI {expected.coi}", expected, scans, genealogy, policy, read_coi=label.coi, read_id=cid)
    if cid != expected.container_id:
        return _stop(Code.CONTAINER_UNEXPECTED, f"printed label carries {cid}; expected {expected.container_id}",
                     expected, scans, genealogy, policy, read_coi=label.coi, read_id=cid)
    if genealogy.get(cid) is not None:
        return _stop(Code.CONTAINER_ALREADY_REGISTERED, f"container id {cid} is already registered", expected, scans,
                     genealogy, policy, read_coi=label.coi, read_id=cid)
    if locations is not None and expected.location is not None:
        refused = _place_check(expected.location, label.coi, cid, expected, scans, genealogy, locations, policy)
        if refused is not None:
            return refused
    return Verdict(Code.OK, Action.PROCEED, "COI-02", f"label of new container {cid} (COI {label.coi}) read back",
                   cid, label.coi, (scan.raw(),))
