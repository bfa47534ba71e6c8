"""Safety invariants of the supervised cell, checked on the in-process cell's readings.

Used by the hypothesis stateful test, the soak script and the scenario runner:

1. never both hatch doors open;
2. no RTP alpha door open without a docked, locked beta;
3. no robot motion while a VHP cycle is active or H2O2 is at or above the release limit;
4. no clean-side autoclave door opening after a failed (not released) cycle;
5. no product exposed (alpha door or clean-side door opening) before the isolator is
   DECONTAMINATED_RELEASED;
6. no auto-resume: a Held batch leaves Held only by an operator's restart/stop/abort;
7. no product exposure above the action limit without a hold: a batch still Running in an
   open-product phase (``alarms.yaml`` ``open_product_phase_types``) ``em_grace_s`` after the
   isolator's particle action excursion began (Annex 1 §9 [ANNEX1-2022]);
8. no bypass of a critical rule: no active bypass of a row that is critical or not marked
   ``bypassable``, none approved by its requester, none left active past its expiry
   (IEC 61511-1 §11.7.3 [IEC61511-1]). Checked where the supervisor has bypass management.

9-16. patient batches (issue 14): segregation and chain of identity, :class:`SegregationMonitor`
   (tests/unit/test_patients_stateful.py).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

from ..batch.states import PhaseState


class InvariantMonitor:
    def __init__(self, cell: Any, sup: Any, *, em_grace_s: float = 10.0) -> None:
        self.cell, self.sup = cell, sup
        self.em_grace_s = float(em_grace_s)
        self._excursion_since: float | None = None
        self.open_types = set(getattr(cell.cfg.alarms, "open_product_phase_types", None) or [])
        rules = getattr(cell.cfg.interlocks, "rules", [])
        self.never_bypassed = {r.id for r in rules
                               if r.severity == "critical" or not getattr(r, "bypassable", False)}
        self.cfg = cell.cfg
        self.release_ppm = float(self.cfg.interlocks.parameters.get("h2o2_release_ppm", 1.0))
        self.rtps = [r.id for r in self.cfg.layout.isolator.rtps]
        self.violations: list[str] = []
        self._prev: dict[str, Any] | None = None
        self._users = {u.id for u in self.cfg.users.users}
        sup.sm.add_listener(self._on_batch)

    def _on_batch(self, tr: Any) -> None:
        if tr.old is PhaseState.HELD and tr.actor not in self._users:
            self.violations.append(f"t={tr.t:.0f}: auto-resume: batch left Held by {tr.actor!r} ({tr.command})")
        if tr.new is PhaseState.RUNNING and tr.old is PhaseState.RESTARTING:
            pass

    def _snapshot(self) -> dict[str, Any]:
        c = self.cell
        iso, vhp, ac, arm = (c.sensors(n) for n in ("isolator", "vhp", "autoclave", "arm"))
        s = {
            "A_closed": iso.get("hatch.door_A") == "closed", "B_closed": iso.get("hatch.door_B") == "closed",
            "decon": iso.get("decon_status"), "vhp_active": bool(vhp.get("cycle_active")),
            "ppm": max(float(vhp.get("h2o2_ppm") or 0.0), float(vhp.get("h2o2_ppm_b") or 0.0)),
            "arm_moving": bool(arm.get("moving")), "unload_closed": bool(ac.get("unload_door_closed")),
            "unload_ok": bool(ac.get("unload_released")) or bool(ac.get("unload_override")),
            "excursion": iso.get("particles.action_excursion") is True,
        }
        for r in self.rtps:
            s[f"{r}.alpha_closed"] = bool(iso.get(f"rtp.{r}.alpha_closed"))
            s[f"{r}.beta_ok"] = bool(iso.get(f"rtp.{r}.beta_docked")) and bool(iso.get(f"rtp.{r}.beta_locked"))
        return s

    def check(self) -> list[str]:
        """Check the current state (call after every step); returns the new violations."""
        n0 = len(self.violations)
        s = self._snapshot()
        p = self._prev or s
        t = self.cell.now()
        v = self.violations
        if not s["A_closed"] and not s["B_closed"]:
            v.append(f"t={t:.0f}: both hatch doors open")
        for r in self.rtps:
            if not s[f"{r}.alpha_closed"] and not s[f"{r}.beta_ok"]:
                v.append(f"t={t:.0f}: {r} alpha door open without a docked, locked beta")
            if p[f"{r}.alpha_closed"] and not s[f"{r}.alpha_closed"] and p["decon"] != "DECONTAMINATED_RELEASED":
                v.append(f"t={t:.0f}: {r} alpha opened (product exposed) while isolator {p['decon']}")
        if s["arm_moving"] and (s["vhp_active"] or s["ppm"] >= self.release_ppm):
            v.append(f"t={t:.0f}: robot moving while VHP active={s['vhp_active']} H2O2={s['ppm']:.2f} ppm")
        if p["unload_closed"] and not s["unload_closed"]:
            if not p["unload_ok"]:
                v.append(f"t={t:.0f}: clean-side autoclave door opened without a PASS cycle")
            if p["decon"] != "DECONTAMINATED_RELEASED":
                v.append(f"t={t:.0f}: clean-side door opened (product exposed) while isolator {p['decon']}")
        self._check_em(s, t)
        self._check_bypasses(t)
        self._prev = s
        return v[n0:]

    def _open_product_phase(self) -> str | None:
        sup = self.sup
        phase = getattr(sup, "active_phase", None)
        if not phase or getattr(getattr(sup, "sm", None), "state", None) is not PhaseState.RUNNING:
            return None
        try:
            kind = sup.phase_type(phase)
        except Exception:
            return None
        return phase if kind in self.open_types else None

    def _check_em(self, s: dict[str, Any], t: float) -> None:
        if not s["excursion"]:
            self._excursion_since = None
            return
        if self._excursion_since is None:
            self._excursion_since = t
        phase = self._open_product_phase()
        if phase is not None and t - self._excursion_since > self.em_grace_s:
            self.violations.append(
                f"t={t:.0f}: product exposed in {phase} above the particle action limit for "
                f"{t - self._excursion_since:.0f} s without a hold")
            self._excursion_since = t  # report once per grace period

    def _check_bypasses(self, t: float) -> None:
        bp = getattr(getattr(self.sup, "operator", None), "bypasses", None)
        if bp is None:
            return
        for b in bp.items.values():
            if b.state != "ACTIVE":
                continue
            if b.rule in self.never_bypassed:
                self.violations.append(f"t={t:.0f}: bypass {b.id} of {b.rule}, a critical or non-bypassable rule")
            if b.approved_by == b.requested_by:
                self.violations.append(f"t={t:.0f}: bypass {b.id} approved by its requester {b.requested_by}")
            if t > b.expires_t + self.em_grace_s:
                self.violations.append(f"t={t:.0f}: bypass {b.id} still active {t - b.expires_t:.0f} s after expiry")


OPEN_CLASS_EVENTS = frozenset({"OPEN_START", "SAMPLE", "FILL", "CONTAINER_REGISTER", "CONNECT", "WELD"})
"""Custody events of a step that opens or connects a container (an open phase's first event)."""


class SegregationMonitor:
    """Segregation and chain-of-identity invariants of the patient batches (issue 14; the SEG-01..10
    and COI-01..30 rows of config/interlocks.yaml, docs/segregation_catalogue.md; ISBT 128 labels), checked on
    the supervisor's own state and on what each batch's record says, after every step:

    9. SEG-01: never two COIs open in grade A at once; a batch open in grade A is running and
       owns the open zone; the arbiter's and the patient cell's own run-time checks found nothing;
    10. SEG-03 / COI-10: no connection (weld, connect) of containers of two COIs;
    11. COI-01: no handling step on a container whose scan did not match: every custody event
        that needs a scan carries a PROCEED verification and its decoded labels are of the
        event's COI;
    12. COI-30: a mismatch (a deviation naming the batches to hold) holds every batch it names,
        none of them continues by an operator's restart, every container it quarantines is in
        quarantine; a mismatched container presented to a step and read there raised a
        deviation in the reading batch and the batch is not running;
    13. no auto-resume of a held patient batch (only a user leaves Held);
    14. every record entry of a patient batch carries its COI;
    15. SEG-06: when an excursion window closes, the batches recorded IMPACTED (a SEG-06
        deviation for that window) are exactly the batches open during it;
    16. Annex 1 §9 [ANNEX1-2022] for patient batches: none still open in grade A ``em_grace_s``
        after the isolator's particle action excursion began.
    """

    def __init__(self, sup: Any, *, em_grace_s: float = 10.0) -> None:
        self.sup = sup
        self.em_grace_s = float(em_grace_s)
        self.violations: list[str] = []
        self._users = {u.id for u in sup.cfg.users.users}
        self._listening: set[str] = set()
        self._read: dict[str, int] = {}
        """Batch -> record entries already checked."""
        self._cell_violations = 0
        self._t_prev = -math.inf
        self._open_seen: dict[str, float] = {}
        """Batch -> the last check time it was open in grade A (or recorded an open-class event)."""
        self._excursions: dict[int, tuple[float, set[str]]] = {}
        """Excursion index -> (the check time before it began, the batches seen open during it)."""
        self._excursions_done: set[int] = set()
        self._seg06: dict[tuple[str, float, float], set[str]] = {}
        """(source, window start, end) -> the batches with a SEG-06 deviation for it."""
        self._coi30: list[tuple[float, list[str], list[str], str]] = []
        self._expected: dict[str, tuple[str, set[tuple[str, str]], int]] = {}
        self._excursion_since: float | None = None
        self.seen: Counter[str] = Counter()
        """What the checks met (COI-30 stops, welds, scanned steps, excursion windows): coverage."""

    def expect_mismatch(self, container: str, batch_id: str, keys: Iterable[tuple[str, str]]) -> None:
        """A test presented another patient's label where ``container`` of ``batch_id`` is read
        (``keys``: the reader's (container, location) entries it set)."""
        self._expected[container] = (batch_id, set(keys), self._coi_devs(batch_id))

    def _coi_devs(self, batch_id: str) -> int:
        ex = self.sup.patients.get(batch_id)
        if ex is None or ex.record is None:
            return 0
        return sum(1 for e in ex.record.entries(kinds=["deviation"]) if "coi_expected" in e.payload)

    def _listen(self, ex: Any) -> None:
        def on(tr: Any) -> None:
            if tr.old is PhaseState.HELD and tr.actor not in self._users:
                self.violations.append(f"t={tr.t:.0f}: auto-resume: batch {ex.batch_id} left Held by "
                                       f"{tr.actor!r} ({tr.command})")
            if tr.old is PhaseState.HELD and ex.coi_stop and tr.new in (PhaseState.RESTARTING, PhaseState.RUNNING):
                self.violations.append(f"t={tr.t:.0f}: COI-30: batch {ex.batch_id} continued after a COI stop "
                                       f"by {tr.actor!r}")

        ex.sm.add_listener(on)
        self._listening.add(ex.batch_id)

    def check(self) -> list[str]:
        n0 = len(self.violations)
        sup = self.sup
        pc = getattr(sup, "patient_cell", None)
        if pc is None:
            return []
        t = float(sup.now())
        v = self.violations
        for b, ex in sup.patients.items():
            if b not in self._listening:
                self._listen(ex)
        # 9. SEG-01
        opened = [b for b in pc.open_now if b in sup.patients]
        cois = {sup.patients[b].coi for b in opened}
        if len(cois) > 1:
            v.append(f"t={t:.0f}: SEG-01: {len(cois)} COIs open in grade A at once: {sorted(opened)}")
        for b in opened:
            self._open_seen[b] = t
            st = sup.patients[b].sm.state
            if st is PhaseState.HELD or st.final:
                v.append(f"t={t:.0f}: SEG-01: batch {b} is {st.value} but still open in grade A")
            if pc.arbiter.zone_owner != b:
                v.append(f"t={t:.0f}: SEG-01: batch {b} open in grade A without owning the open zone "
                         f"(owner {pc.arbiter.zone_owner})")
        if len(pc.violations) > self._cell_violations:
            v.extend(f"patient cell: {x}" for x in pc.violations[self._cell_violations:])
            self._cell_violations = len(pc.violations)
        # 10, 11, 12, 14: what the records say
        for b, ex in sup.patients.items():
            rec = ex.record
            if rec is None:
                continue
            seen = self._read.get(b, 0)
            new = rec.since(seen) if hasattr(rec, "since") else list(rec.entries())[seen:]
            self._read[b] = seen + len(new)
            for e in new:
                self._entry(ex, e, pc, t)
        for _when, hold, quarantine, dev in self._coi30:
            for hb in hold:
                other = sup.patients.get(hb)
                if other is None:
                    continue
                st = other.sm.state
                # Idle (not started, or reset after its end) runs nothing; were it started it is caught here
                if not st.final and st not in (PhaseState.HELD, PhaseState.HOLDING, PhaseState.STOPPING,
                                               PhaseState.ABORTING, PhaseState.IDLE):
                    v.append(f"t={t:.0f}: COI-30: {dev} names batch {hb} to hold; it is {st.value}")
            g = pc.coi.genealogy
            for cid in quarantine:
                c = g.get(cid)
                if c is not None and c.status.value not in ("QUARANTINE", "DESTROYED", "REJECTED"):
                    v.append(f"t={t:.0f}: COI-30: {dev} quarantines {cid}; it is {c.status.value}")
        self._coi30 = [x for x in self._coi30 if any(
            hb in sup.patients and not sup.patients[hb].sm.state.final for hb in x[1])]
        for cid, (b, keys, ndev) in list(self._expected.items()):
            if all(k in pc.reader.presented for k in keys):
                continue
            del self._expected[cid]
            self.seen["mismatched label read"] += 1
            ex = sup.patients.get(b)
            if ex is None:
                continue
            if self._coi_devs(b) <= ndev:
                v.append(f"t={t:.0f}: COI-30: another patient's label read for {cid} of batch {b}: no deviation")
            if ex.sm.state is PhaseState.RUNNING:
                v.append(f"t={t:.0f}: COI-30: another patient's label read for {cid}: batch {b} still running")
        self._check_excursions(pc, t)
        self._check_em(pc, t)
        self._t_prev = t
        return v[n0:]

    def _entry(self, ex: Any, e: Any, pc: Any, t: float) -> None:
        v = self.violations
        p = e.payload
        if p.get("coi") != ex.coi:
            v.append(f"t={t:.0f}: entry {e.seq} ({e.kind} {e.action}) of batch {ex.batch_id} does not carry its "
                     f"COI {ex.coi} (has {p.get('coi')!r})")
        if e.kind == "custody":
            self._custody(ex, e, pc, t)
        elif e.kind == "deviation":
            if "hold_batches" in p:
                self.seen["COI-30 stop (deviation, holds, quarantine)"] += 1
                self._coi30.append((e.ts, [str(x) for x in p["hold_batches"]],
                                    [str(x) for x in p.get("quarantine", ())], str(p.get("deviation", e.seq))))
            if p.get("rule") == "SEG-06":
                self.seen["SEG-06 IMPACTED deviation"] += 1
                w = p.get("window") or [math.nan, math.nan]
                self._seg06.setdefault((str(p.get("source")), float(w[0]), float(w[1])), set()).add(ex.batch_id)

    def _custody(self, ex: Any, e: Any, pc: Any, t: float) -> None:
        from ..coi.custody import SCAN_REQUIRED, TWO_ENDS
        from ..coi.verify import LabelError, decode_label

        v = self.violations
        p = e.payload
        ev = str(p.get("event"))
        coi = str(p.get("coi_id"))
        cids = [str(c) for c in p.get("container_ids", ())]
        if ev in OPEN_CLASS_EVENTS:
            self._open_seen[ex.batch_id] = max(self._open_seen.get(ex.batch_id, -math.inf), e.ts)
        if ev in {x.value for x in TWO_ENDS}:
            self.seen["weld/connect checked"] += 1
            g = pc.coi.genealogy
            owners = {g.get(c).coi if g.get(c) is not None else f"<unregistered {c}>" for c in cids}
            if len(owners | {coi}) > 1:
                v.append(f"t={t:.0f}: SEG-03: {ev} of {cids} joins COIs {sorted(owners | {coi})}")
        if ev in {x.value for x in SCAN_REQUIRED}:
            self.seen["scanned step checked"] += 1
            ver = p.get("verification_result") or {}
            if ver.get("action") != "PROCEED":
                v.append(f"t={t:.0f}: COI-01: {ev} of {cids} in batch {ex.batch_id} without a matching scan "
                         f"({ver.get('code')})")
            for s in p.get("scan_payloads", ()):
                if not s.get("payload") or s.get("read_failed"):
                    continue
                try:
                    lab = decode_label(str(s["payload"]))
                except LabelError:
                    continue  # an unreadable label: COI-03 decides, the verification says so
                if lab.coi not in (None, coi) or coi != ex.coi:
                    v.append(f"t={t:.0f}: COI-01: {ev} of {cids} for COI {coi} after a scan that read "
                             f"{lab.coi}/{lab.container_id} (batch {ex.batch_id}, COI {ex.coi})")

    def _check_excursions(self, pc: Any, t: float) -> None:
        sup = self.sup
        for i, exc in enumerate(pc.excursions):
            if i in self._excursions_done:
                continue
            before, seen = self._excursions.setdefault(i, (self._t_prev, set()))
            if exc.end == math.inf:
                seen |= set(pc.open_now)
                continue
            self._excursions_done.add(i)
            self.seen["excursion window closed"] += 1
            # windows of one source that began and ended at the same instants (a second trip and
            # restart without time passing) are one window for the record: compare with their union
            key = (exc.source, float(exc.start), float(exc.end))
            recorded = self._seg06.get(key, set())
            expected: set[str] = set()
            for other in pc.excursions:
                if (other.source, float(other.start), float(other.end)) == key:
                    expected |= set(other.open_batches)
            wrong = recorded ^ expected
            if wrong:
                self.violations.append(f"t={t:.0f}: SEG-06: IMPACTED recorded for {sorted(recorded)}, open during "
                                       f"the {exc.source} excursion: {sorted(expected)}")
            missed = seen - set(exc.open_batches)
            if missed:
                self.violations.append(f"t={t:.0f}: SEG-06: {sorted(missed)} open during the {exc.source} "
                                       "excursion but not IMPACTED")
            for b in exc.open_batches:
                ex = sup.patients.get(b)
                if self._open_seen.get(b, -math.inf) < before:
                    self.violations.append(f"t={t:.0f}: SEG-06: {b} IMPACTED by the {exc.source} excursion "
                                           f"(t={exc.start:.0f}) but not open in it")
                if ex is not None and not ex.impacted:
                    self.violations.append(f"t={t:.0f}: SEG-06: {b} open during the excursion, not flagged IMPACTED")

    def _check_em(self, pc: Any, t: float) -> None:
        port = getattr(self.sup, "port", None)
        iso = port.sensors("isolator") if port is not None and hasattr(port, "sensors") else {}
        if iso.get("particles.action_excursion") is not True:
            self._excursion_since = None
            return
        if self._excursion_since is None:
            self._excursion_since = t
        running_open = [b for b in pc.open_now if b in self.sup.patients
                        and self.sup.patients[b].sm.state is PhaseState.RUNNING]
        if running_open and t - self._excursion_since > self.em_grace_s:
            self.violations.append(f"t={t:.0f}: {running_open} open in grade A above the particle action limit for "
                                   f"{t - self._excursion_since:.0f} s without a hold")
            self._excursion_since = t
