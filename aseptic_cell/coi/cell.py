"""One object per cell that verifies, records and keeps the genealogy in step: the API the
multi-batch executive calls before every physical step (COI-01).

Each call verifies the read(s), and then either writes the custody event and updates the
genealogy (PROCEED), records the COI-30 response (STOP: deviation, HOLD per batch, QUARANTINE;
the caller stops the actuator and holds the batches in :attr:`Outcome.verdict.response`), logs a
HOLD (HOLD) or does nothing (RETRY: read again, ``attempt + 1``). The record is written before
the genealogy changes, so a refused append (``RecordWriteError``) leaves the genealogy as it was.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..records.store import BatchRecord
from .config import CoiConfig
from .custody import CustodyEvent, CustodyEventType, CustodyLog
from .isbt128 import parse_coi_id, parse_din
from .model import Batch, ContainerKind, Genealogy, LocationKind, LocationRegister
from .verify import (
    Action,
    Expectation,
    ScanPolicy,
    ScanResult,
    Verdict,
    verify_connect,
    verify_label_readback,
    verify_receipt,
    verify_scan,
)

E = CustodyEventType


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    event: CustodyEvent | None = None
    deviation: str | None = None

    @property
    def ok(self) -> bool:
        return self.verdict.ok


class ChainOfIdentity:
    """Genealogy + COI-registered positions + custody log + scan policy of one cell."""

    def __init__(self, record: BatchRecord, cell_id: str, config: CoiConfig | None = None,
                 locations: Iterable[tuple[str, LocationKind]] = ()) -> None:
        self.config = config or CoiConfig()
        self.policy = ScanPolicy.from_config(self.config)
        self.genealogy = Genealogy()
        self.locations = LocationRegister(locations)
        self.log = CustodyLog(record, cell_id, self.genealogy)

    # ------------------------------------------------------------------ batches
    def admit_batch(self, batch_id: str, coi: str, dins: Iterable[str] = ()) -> Batch:
        """Register a batch with its COI (checked against the configured pattern) and the DIN(s)
        of its apheresis collections (each with a valid check character when the site requires it).

        Raises:
            IdentifierError: a COI or DIN that does not validate (names the field).
            GenealogyError: the batch id is taken.
        """
        coi = parse_coi_id(coi, re.compile(self.policy.coi_regex))
        bodies = [parse_din(d, require_check=self.policy.din_require_check).body for d in dins]
        return self.genealogy.register_batch(batch_id, coi, bodies)

    # ------------------------------------------------------------------ outcomes
    def _fail(self, v: Verdict, expected: Expectation, actor: str) -> Outcome:
        if v.action is Action.STOP:
            return Outcome(v, None, self.log.record_mismatch(v, actor=actor))
        if v.action is Action.HOLD:
            ev = self.log.append(E.HOLD, batch_id=expected.batch_id, coi_id=expected.coi, actor=actor,
                                 scans=v.scans, verification=v, reason=v.message,
                                 extra={"code": v.code.value, "container_read": v.container_id})
            return Outcome(v, ev)
        return Outcome(v)

    # ------------------------------------------------------------------ steps
    def receive(self, scan: ScanResult, expected: Expectation, *, actor: str, paperwork_coi: str,
                paperwork_din: str | None = None, seal_intact: bool, temperature_in_limits: bool,
                extra: Mapping[str, Any], sec: str | None = None, market: str | None = None) -> Outcome:
        """APH_RECEIPT at ``expected.location``: verify, then log and register the apheresis bag.
        ``market`` selects ``sec_required`` (``config/coi.yaml``); an unknown market requires it."""
        sec_required = market is not None and self.config.sec_required.get(market, True)
        v = verify_receipt(scan, expected, self.genealogy, paperwork_coi=paperwork_coi, paperwork_din=paperwork_din,
                           seal_intact=seal_intact, temperature_in_limits=temperature_in_limits, sec=sec,
                           sec_required=sec_required, locations=self.locations, policy=self.policy)
        if not v.ok:
            return self._fail(v, expected, actor)
        cid, din = v.container_id or "", str(v.details["din"])
        self.genealogy.new_container(cid, batch=expected.batch_id, kind=ContainerKind.APHERESIS_BAG, din=din,
                                     location=expected.location)
        ev = self.log.append(E.APH_RECEIPT, batch_id=expected.batch_id, coi_id=expected.coi, actor=actor,
                             container_ids=[cid], location_to=expected.location, scans=[scan], verification=v,
                             extra={**extra, "din": din, **({"sec": sec} if sec else {})})
        self.genealogy.register_container(cid, batch=expected.batch_id, kind=ContainerKind.APHERESIS_BAG, din=din,
                                          location=expected.location)
        return Outcome(v, ev)

    def register(self, scan: ScanResult, expected: Expectation, *, actor: str, kind: ContainerKind,
                 parents: Iterable[str], extra: Mapping[str, Any], sample_id: str | None = None) -> Outcome:
        """CONTAINER_REGISTER of ``expected.container_id`` at ``expected.location`` after the read-back
        of its printed label (LAB-08); its parents must be of the batch's COI."""
        v = verify_label_readback(scan, expected, self.genealogy, self.policy, self.locations)
        if not v.ok:
            return self._fail(v, expected, actor)
        cid, pids = expected.container_id or "", tuple(parents)
        self.genealogy.new_container(cid, batch=expected.batch_id, kind=kind, parents=pids,
                                     location=expected.location, sample_id=sample_id)
        ev = self.log.append(E.CONTAINER_REGISTER, batch_id=expected.batch_id, coi_id=expected.coi, actor=actor,
                             container_ids=[cid], parent_ids=pids, location_to=expected.location, scans=[scan],
                             verification=v, extra=extra)
        self.genealogy.register_container(cid, batch=expected.batch_id, kind=kind, parents=pids,
                                          location=expected.location, sample_id=sample_id)
        return Outcome(v, ev)

    def handle(self, event: CustodyEventType, scan: ScanResult, expected: Expectation, *, actor: str,
               equipment_id: str = "", extra: Mapping[str, Any] | None = None, signature_ref: str = "") -> Outcome:
        """Any one-container step (MOVE, INCUBATOR_IN/OUT, OPEN_START, SAMPLE, FILL, STORE, ...):
        verify the read against ``expected``, then log it from ``expected.location`` to
        ``expected.destination`` (none: the container stays)."""
        out = self.check(scan, expected, actor=actor)
        if not out.ok:
            return out
        return self.record(event, scan, out.verdict, expected, actor=actor, equipment_id=equipment_id, extra=extra,
                           signature_ref=signature_ref)

    def check(self, scan: ScanResult, expected: Expectation, *, actor: str) -> Outcome:
        """The verification of :meth:`handle` alone (its STOP / HOLD responses included): for a step
        whose custody event carries the unit's result (SEAL: the seal quality), logged by
        :meth:`record` after the unit has run."""
        v = verify_scan(scan, expected, self.genealogy, self.locations, self.policy)
        return Outcome(v) if v.ok else self._fail(v, expected, actor)

    def record(self, event: CustodyEventType, scan: ScanResult, verdict: Verdict, expected: Expectation, *,
               actor: str, equipment_id: str = "", extra: Mapping[str, Any] | None = None,
               signature_ref: str = "") -> Outcome:
        """Log a one-container step verified by :meth:`check` (``verdict`` must be its PROCEED)."""
        if not verdict.ok:
            raise ValueError(f"{event.value} not logged: its verification is {verdict.action.value}")
        ev = self.log.append(event, batch_id=expected.batch_id, coi_id=expected.coi, actor=actor,
                             container_ids=[verdict.container_id or ""], location_from=expected.location,
                             location_to=expected.destination, equipment_id=equipment_id, scans=[scan],
                             verification=verdict, extra=extra, signature_ref=signature_ref)
        return Outcome(verdict, ev)

    def connect(self, event: CustodyEventType, end_a: tuple[ScanResult, Expectation],
                end_b: tuple[ScanResult, Expectation], *, actor: str, equipment_id: str,
                extra: Mapping[str, Any]) -> Outcome:
        """CONNECT / WELD (COI-10): both ends verified and of one COI, then logged."""
        if event not in (E.CONNECT, E.WELD):
            raise ValueError(f"connect() logs CONNECT or WELD, not {event.value}")
        out = self.check_connect(end_a, end_b, actor=actor)
        if not out.ok:
            return out
        return self.record_connect(event, out.verdict, end_a, end_b, actor=actor, equipment_id=equipment_id,
                                   extra=extra)

    def check_connect(self, end_a: tuple[ScanResult, Expectation], end_b: tuple[ScanResult, Expectation], *,
                      actor: str) -> Outcome:
        """The verification of :meth:`connect` alone (before the welder moves); the WELD with the
        weld's quality is logged by :meth:`record_connect` after the weld."""
        v = verify_connect(end_a, end_b, self.genealogy, self.locations, self.policy)
        return Outcome(v) if v.ok else self._fail(v, end_a[1], actor)

    def record_connect(self, event: CustodyEventType, verdict: Verdict, end_a: tuple[ScanResult, Expectation],
                       end_b: tuple[ScanResult, Expectation], *, actor: str, equipment_id: str,
                       extra: Mapping[str, Any]) -> Outcome:
        if event not in (E.CONNECT, E.WELD):
            raise ValueError(f"connect() logs CONNECT or WELD, not {event.value}")
        if not verdict.ok:
            raise ValueError(f"{event.value} not logged: its verification is {verdict.action.value}")
        ids = list(verdict.details["ends"])
        ev = self.log.append(event, batch_id=end_a[1].batch_id, coi_id=end_a[1].coi, actor=actor, container_ids=ids,
                             equipment_id=equipment_id, scans=[end_a[0], end_b[0]], verification=verdict,
                             extra=extra)
        return Outcome(verdict, ev)
