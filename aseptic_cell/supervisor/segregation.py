"""Segregation rules of the multi-patient cell built here (issue 14): SEG-07 spill -> CONTAIN,
SEG-08 glove integrity per batch, SEG-10 equipment use log and DIRTY modules.

The other segregation rules live where the thing they govern lives (SEG-01/04/05 in the
arbiter, SEG-03 and COI-nn in the chain of identity, SEG-06 in
:class:`~aseptic_cell.supervisor.patients.PatientCell`); ``config/interlocks.yaml`` (``enforced``)
lists every one with its scope, its reaction and its scenario. Site values [M] are
``segregation_parameters`` there.

* **SEG-07** :meth:`Segregation.spill`: the cell enters CONTAIN. Every patient batch whose active
  phase is open or needs the arm holds (robot motion stops with it); incubation and closed
  processing without the arm run on. The arm, the work surface and the open zone are blocked in the
  arbiter. The spilled batch and every batch with an open container at that instant are IMPACTED,
  each with a deviation in its own record; the alarm names the rule. Exit
  (:meth:`Segregation.exit_contain`) needs, in this order, the cleanup record
  (:meth:`Segregation.cleanup`; a spill not confined to the wipeable surface also a full VHP cycle
  when ``spill_vhp_when_not_confined``), a line clearance (:meth:`Segregation.line_clearance`),
  particle recovery (the purge wait ``t_purge + t_stable`` since the line clearance, and no
  particle action excursion) and a QA e-signature. Until then an operator restart of any batch is
  refused; after it, nothing resumes by itself (each batch restarts with its own signed restart).
* **SEG-08** a batch's record closes (``close_record``, ``release``) only when every glove port
  passed a test after the batch's last open phase, or QA approved a SEG-08 deviation of that
  batch. The start-of-batch test: at the batch's first open phase the glove tests in force are
  recorded in its record; with ``glove_test_before_first_open`` a test older than
  ``glove_test_max_age_h`` (or none) holds the batch there. A glove test that FAILs makes every
  batch with an open phase since that port's last passed test IMPACTED (deviation in its record).
* **SEG-10** every allocation of equipment modules (the arbiter's resources a phase is granted)
  is logged in the batch's record with its COI, start and end; a module listed in
  ``product_contact`` becomes DIRTY(batch) after its use and CLEAN by the line clearance (or a
  VHP cycle) or by a recorded cleaning (:meth:`Segregation.clean`), as configured. A grant of a
  module DIRTY from another batch is taken back before the phase starts and that batch holds
  (deviation, alarm); its restart is refused until the cleaning is recorded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..results import CommandResult
from ..scheduling.arbiter import LINE_CLEARANCE, VHP_PHASE, RequestState
from ..scheduling.resources import OPEN_ZONE
from .signing import subject_hash

if TYPE_CHECKING:
    from .core import Supervisor
    from .executive import BatchExecutive
    from .patients import PatientCell

CONTAIN_BLOCKS = ("ARM", "WS", OPEN_ZONE)
"""Resources blocked while the cell is in CONTAIN (SEG-07.1)."""
ALARM = "CELL_INTERLOCK_TRIP"
GLOVE_ALARM = "ISO1_GLOVE_TEST_DUE"


@dataclass
class Containment:
    """One CONTAIN episode (SEG-07)."""

    batch: str
    material: str
    confined: bool
    at: float
    by: str
    impacted: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    cleanup_at: float = math.nan
    vhp_cycle: str = ""
    line_clearance_at: float = math.nan
    exited_at: float = math.nan


@dataclass
class ModuleState:
    """The cleaning state of one equipment module (SEG-10)."""

    state: str = "CLEAN"  # CLEAN | IN_USE | DIRTY
    batch: str = ""
    coi: str = ""
    since: float = 0.0


class Segregation:
    """SEG-07, SEG-08, SEG-10 for one :class:`PatientCell` (see the module docstring)."""

    def __init__(self, cell: PatientCell) -> None:
        self.cell = cell
        self.params = cell.sup.cfg.interlocks.segregation_parameters
        self.contain: Containment | None = None
        self.episodes: list[Containment] = []
        self.modules: dict[str, ModuleState] = {}
        self.use_log: list[dict[str, Any]] = []
        """Every module use and cleaning transition (SEG-10), also written to the batch's record."""
        self._uses: dict[int, tuple[str, str, list[str], float]] = {}
        """Running request id -> (batch, phase, modules, start)."""
        self.last_open_end: dict[str, float] = {}
        self._start_glove_recorded: set[str] = set()
        self._was_open: set[str] = set()
        self.open_spans: dict[str, list[list[float]]] = {}
        """Batch -> [start, end] of each of its open phases (end = inf while open): SEG-08 scope."""
        self._glove_seen: dict[str, tuple[Any, Any]] = {}
        self._last_pass: dict[str, float] = {}
        self.blocked: dict[str, str] = {}
        self.blocked_modules: dict[str, list[str]] = {}
        """Batch -> why SEG-10 holds it (its restart waits for the module's recorded cleaning)."""

    # ------------------------------------------------------------------ helpers
    @property
    def sup(self) -> Supervisor:
        return self.cell.sup

    def _refuse(self, user: str, command: str, code: str, reason: str) -> CommandResult:
        """A refused segregation command: listed with the cell's refusals and written to the cell's
        record (a refusal entry, as the batch commands' refusals)."""
        entry = {"t": self.sup.now(), "user": user, "command": command, "code": code, "reason": reason,
                 "source": "segregation"}
        journal = self.sup.main.journal
        journal.refusals.append(entry)
        journal.audit("refusal", user if isinstance(user, str) and user.strip() else "unknown",
                      f"segregation.{command}", reason, entry)
        return CommandResult.refuse(code, reason)

    def _deviation(self, ex: BatchExecutive, rule: str, code: str, text: str, **payload: Any) -> None:
        ex.journal.audit("deviation", "system", "deviation.raise", text, {"rule": rule, "code": code, **payload})

    def _authorize(self, user: str, permission: str, password: str = "", meaning: str = "",
                   action: str = "", subject: str = "", reason: str = "") -> CommandResult | None:
        signing = self.sup.signing
        rule, denied = signing.authorize(user, permission)
        if denied is not None:
            return denied
        _sig, bad = signing.sign_if_required(user, rule, password=password, meaning=meaning,
                                             action=action or permission, subject=subject, batch_id="",
                                             reason=reason)
        return bad

    # ------------------------------------------------------------------ SEG-07
    def spill(self, batch: str, material: str = "patient", *, confined: bool = True, user: str = "op1",
              reason: str = "") -> CommandResult:
        """A spill of ``batch``'s material (``patient`` or ``vector``) reported: CONTAIN."""
        sup, cell = self.sup, self.cell
        ex = sup.patients.get(batch)
        if ex is None:
            return self._refuse(user, "spill", "INVALID", f"unknown patient batch {batch!r}")
        if material not in ("patient", "vector"):
            return self._refuse(user, "spill", "INVALID", f"material must be 'patient' or 'vector', got {material!r}")
        now = sup.now()
        if self.contain is None:
            self.contain = Containment(batch, material, confined, now, user)
            self.episodes.append(self.contain)
        c = self.contain
        where = "confined to the work surface" if confined else "not confined"
        why = f"SEG-07 spill of {batch}'s {material} material ({where}): cell in CONTAIN"
        for res in CONTAIN_BLOCKS:
            if res in cell.resources:
                cell.arbiter.block(res, why[:200], source="SEG-07")
        sup.process_alarms.raise_(ALARM, f"SEG-07: {why}")
        impacted = [batch] + sorted(b for b in cell.open_now if b != batch)
        for b in impacted:
            other = sup.patients.get(b)
            if other is None or b in c.impacted:
                continue
            other.impacted = True
            c.impacted.append(b)
            self._deviation(other, "SEG-07", "IMPACTED",
                            f"SEG-07: {'spilled batch' if b == batch else 'open container in the zone at the spill'}"
                            f" ({batch}, {material}): IMPACTED, QA hold", spill_batch=batch, material=material,
                            confined=confined, at=now, reported_by=user, reason=reason)
        for other in list(sup.patients.values()):
            if not other.active or other.sm.state.value in ("Held", "Holding"):
                continue
            ph = self._phase(other)
            if ph is not None and not ph.open and not ph.arm_required:
                other.journal.audit("trip", "system", "segregation.contain", why,
                                    {"rule": "SEG-07", "scope": "cell", "phase": ph.id,
                                     "effect": "closed phase without the arm runs on"})
                continue
            cell.hold(other, why, source="SEG-07")
            c.held.append(other.batch_id)
        return CommandResult(True, "OK", f"CONTAIN: held {c.held}, IMPACTED {c.impacted}")

    def _phase(self, ex: BatchExecutive) -> Any:
        pid = (ex.active_phase or "").rsplit("/", 1)[-1]
        return next((p for p in ex.process.phases if p.id == pid), None)

    def cleanup(self, user: str, method: str, *, vhp_cycle: str = "", reason: str = "") -> CommandResult:
        """SEG-07.4: the validated spill procedure done (absorb, sporicidal/virucidal wipe; ``vhp_cycle``:
        the id of the full VHP cycle run for a spill not confined to the wipeable surface)."""
        c = self.contain
        if c is None:
            return self._refuse(user, "spill_cleanup", "STATE", "the cell is not in CONTAIN")
        denied = self._authorize(user, "deviation.raise")
        if denied is not None:
            return self._refuse(user, "spill_cleanup", denied.code, denied.reason)
        if not method.strip():
            return self._refuse(user, "spill_cleanup", "INVALID",
                                "the cleanup record needs the method (agent, contact time)")
        if not c.confined and self.params.spill_vhp_when_not_confined and not vhp_cycle:
            return self._refuse(user, "spill_cleanup", "SEG",
                                "SEG-07.4: the spill was not confined to the wipeable surface: the cleanup record "
                                "needs the full VHP cycle that followed it (vhp_cycle)")
        c.cleanup_at, c.vhp_cycle = self.sup.now(), vhp_cycle
        self._cell_note("segregation.spill_cleanup", f"SEG-07 cleanup: {method}",
                        {"method": method, "vhp_cycle": vhp_cycle, "by": user, "reason": reason})
        return CommandResult(True, "OK", "cleanup recorded")

    def line_clearance(self, user: str, *, reason: str = "") -> CommandResult:
        """SEG-07.5 / SEG-04: the line clearance after the cleanup (checklist recorded)."""
        c = self.contain
        if c is None:
            return self._refuse(user, "contain_line_clearance", "STATE", "the cell is not in CONTAIN")
        if math.isnan(c.cleanup_at):
            return self._refuse(user, "contain_line_clearance", "SEG",
                                "SEG-07.5: line clearance only after the cleanup record")
        denied = self._authorize(user, "deviation.raise")
        if denied is not None:
            return self._refuse(user, "contain_line_clearance", denied.code, denied.reason)
        c.line_clearance_at = self.sup.now()
        for m, st in self.modules.items():
            if st.state == "DIRTY":
                self._clean(m, "line clearance after the spill", user)
        self._cell_note("segregation.line_clearance", "SEG-07 line clearance (SEG-04 checklist)",
                        {"checklist": ["containers closed and parked (COI-20)", "no labels or documents left",
                                       "single-use items in waste", "LC_WIPE done"], "verifier": user})
        return CommandResult(True, "OK", "line clearance recorded; particle recovery follows (SEG-05)")

    def exit_blockers(self) -> list[str]:
        """Why CONTAIN cannot be left now (empty: it can, with QA's signature)."""
        c = self.contain
        if c is None:
            return ["the cell is not in CONTAIN"]
        out = []
        if math.isnan(c.cleanup_at):
            out.append("no cleanup record (SEG-07.4)")
        if math.isnan(c.line_clearance_at):
            out.append("no line clearance after the cleanup (SEG-04)")
        else:
            ready = c.line_clearance_at + self.cell.arbiter.t_purge
            if self.sup.now() < ready:
                out.append(f"particle recovery: purge wait until t={ready:.0f} s (SEG-05)")
        if self.sup.signal("isolator.particles.action_excursion") is True:
            out.append("particle recovery: action-level excursion still present (SEG-05)")
        return out

    def exit_contain(self, user: str, password: str = "", meaning: str = "", reason: str = "") -> CommandResult:
        """Leave CONTAIN: cleanup, line clearance and particle recovery done, QA's e-signature
        (permission ``deviation.close``). Nothing restarts by itself."""
        c = self.contain
        if c is None:
            return self._refuse(user, "exit_contain", "STATE", "the cell is not in CONTAIN")
        blockers = self.exit_blockers()
        if blockers:
            return self._refuse(user, "exit_contain", "SEG", "SEG-07.5: CONTAIN not left: " + "; ".join(blockers))
        denied = self._authorize(user, "deviation.close", password, meaning, action="deviation.close",
                                 subject=subject_hash({"action": "segregation.exit_contain", "spill_batch": c.batch,
                                                       "at": c.at, "cleanup_at": c.cleanup_at,
                                                       "line_clearance_at": c.line_clearance_at}),
                                 reason=reason)
        if denied is not None:
            return self._refuse(user, "exit_contain", denied.code, denied.reason)
        c.exited_at = self.sup.now()
        for res in CONTAIN_BLOCKS:
            self.cell.arbiter.unblock(res, source="SEG-07")
        self._cell_note("segregation.exit_contain", "SEG-07: CONTAIN left (QA)", {"by": user, "reason": reason})
        self.contain = None
        return CommandResult(True, "OK", "CONTAIN left; each held batch restarts with its own signed restart")

    def _cell_note(self, action: str, text: str, payload: dict[str, Any]) -> None:
        """A containment entry in the record of every batch the episode touched (or every active one)."""
        c = self.contain
        names = set(c.held) | set(c.impacted) if c is not None else set()
        for ex in self.sup.patients.values():
            if ex.batch_id in names or ex.active:
                ex.journal.audit("note", payload.get("by", "system"), action, text, {"rule": "SEG-07", **payload})

    # ------------------------------------------------------------------ SEG-08
    def glove_tests(self) -> dict[str, tuple[Any, Any]]:
        """Port -> (last result, age h) as the isolator reports them."""
        ports = [p.id for p in self.sup.cfg.layout.isolator.glove_ports]
        return {p: (self.sup.signal(f"isolator.glove.{p}.last_test"), self.sup.signal(f"isolator.glove.{p}.test_age_h"))
                for p in ports}

    def _stale(self, tests: dict[str, tuple[Any, Any]], max_age_h: float) -> list[str]:
        return [f"{p}: {r or 'none'}" + (f" {a:.1f} h old" if isinstance(a, (int, float)) else "")
                for p, (r, a) in tests.items()
                if r != "PASS" or not isinstance(a, (int, float)) or a > max_age_h]

    def end_glove_test_done(self, ex: BatchExecutive) -> bool:
        """Every port passed a test after the batch's last open phase ended."""
        now = self.sup.now()
        since_h = (now - self.last_open_end.get(ex.batch_id, -math.inf)) / 3600.0
        return not self._stale(self.glove_tests(), since_h)

    def _glove_failures(self, now: float) -> None:
        """SEG-08: a glove test that FAILs makes every batch with an open phase since that port's
        last passed test IMPACTED (QA hold), each with a deviation in its own record."""
        tests = self.glove_tests()
        for port, (result, age) in tests.items():
            before = self._glove_seen.get(port)
            self._glove_seen[port] = (result, age)
            if result == "PASS" and isinstance(age, (int, float)):
                self._last_pass[port] = now - age * 3600.0
            if result != "FAIL" or before is None or (before[0] == "FAIL" and isinstance(age, (int, float))
                                                      and isinstance(before[1], (int, float))
                                                      and age >= before[1]):
                continue  # not a new failed test
            since = self._last_pass.get(port, -math.inf)
            for b, spans in self.open_spans.items():
                ex = self.sup.patients.get(b)
                if ex is None or not any(end >= since for _start, end in spans):
                    continue
                ex.impacted = True
                self._deviation(ex, "SEG-08", "IMPACTED",
                                f"SEG-08: glove test of {port} FAILED; {b} had an open phase since its last passed "
                                "test: IMPACTED, QA hold", port=port, last_pass=since)

    def _seg08_deviation_approved(self, ex: BatchExecutive) -> bool:
        return any(d.rule == "SEG-08" and d.batch_id == ex.batch_id and d.state == "APPROVED"
                   for d in self.sup.operator.deviations.items.values())

    # ------------------------------------------------------------------ SEG-10
    def _clean(self, module: str, how: str, user: str) -> None:
        st = self.modules.get(module)
        if st is None or st.state != "DIRTY":
            return
        entry = {"t": self.sup.now(), "module": module, "event": "clean", "from": f"DIRTY({st.batch})",
                 "to": "CLEAN", "how": how, "by": user}
        self.use_log.append(entry)
        ex = self.sup.patients.get(st.batch)
        if ex is not None:
            ex.journal.audit("note", user, "equipment.clean", f"SEG-10: {module} DIRTY({st.batch}) -> CLEAN ({how})",
                             {"rule": "SEG-10", **entry})
        self.modules[module] = ModuleState("CLEAN", since=self.sup.now())

    def clean(self, module: str, user: str, *, method: str = "", reason: str = "") -> CommandResult:
        """SEG-10: the recorded cleaning of a product-contact module."""
        st = self.modules.get(module)
        if st is None or st.state != "DIRTY":
            return self._refuse(user, "clean", "STATE", f"module {module!r} is not DIRTY "
                                f"(state {st.state if st else 'never used'})")
        denied = self._authorize(user, "deviation.raise")
        if denied is not None:
            return self._refuse(user, "clean", denied.code, denied.reason)
        if not method.strip():
            return self._refuse(user, "clean", "INVALID", "the cleaning record needs the method (agent, contact time)")
        self._clean(module, method, user)
        return CommandResult(True, "OK", f"{module} CLEAN")

    def _use(self, ex: Any, event: str, modules: list[str], phase: str, now: float) -> None:
        entry = {"t": now, "event": event, "batch": ex.batch_id, "coi": ex.coi, "phase": phase, "modules": modules,
                 "cleaning": {m: self.modules[m].state for m in modules if m in self.modules}}
        self.use_log.append(entry)
        ex.journal.audit("note", "system", f"equipment.{event}", f"SEG-10: {', '.join(modules)} {event} by {phase}",
                         {"rule": "SEG-10", **entry})

    # ------------------------------------------------------------------ each tick (after arbitration)
    def tick(self, now: float, decision: Any) -> None:
        sup, cell = self.sup, self.cell
        arb = cell.arbiter
        contact = self.params.product_contact
        # uses that ended: DIRTY(batch) for product-contact modules; a line clearance cleans
        for rid, (batch, phase, modules, _t0) in list(self._uses.items()):
            r = arb.requests.get(rid)
            if r is not None and r.state is RequestState.RUNNING:
                continue
            del self._uses[rid]
            if phase == LINE_CLEARANCE:
                for m, how in contact.items():
                    if how == "line_clearance":
                        self._clean(m, "line clearance (LC_WIPE, SEG-04)", "system")
                continue
            if phase == VHP_PHASE:
                for m in list(self.modules):
                    self._clean(m, "VHP bio-decontamination", "system")
                continue
            ex = sup.patients.get(batch)
            for m in modules:
                if m in contact:
                    self.modules[m] = ModuleState("DIRTY", batch, ex.coi if ex else "", now)
            if ex is not None:
                self._use(ex, "use_end", modules, phase, now)
        # SEG-08: the end of each open phase (the last one counts for the end-of-batch test)
        for b in self._was_open - set(cell.open_now):
            self.last_open_end[b] = now
            if self.open_spans.get(b):
                self.open_spans[b][-1][1] = now
        for b in set(cell.open_now) - self._was_open:
            self.open_spans.setdefault(b, []).append([now, math.inf])
        self._was_open = set(cell.open_now)
        self._glove_failures(now)
        for g in decision.grants:
            r = g.request
            if r.phase in (LINE_CLEARANCE, VHP_PHASE):
                self._uses[r.id] = (r.batch, r.phase, sorted(r.needs), now)
                continue
            ex = sup.patients.get(r.batch)
            if ex is None:
                continue
            modules = sorted(r.needs)
            dirty = [f"{m} DIRTY({self.modules[m].batch})" for m in modules
                     if m in self.modules and self.modules[m].state == "DIRTY" and self.modules[m].batch != r.batch]
            if dirty:  # SEG-10: taken back before the phase starts; the batch holds
                arb.release(r.id, now)
                why = f"SEG-10: {r.phase} was allocated {', '.join(dirty)}: a product-contact module used by " \
                      "another batch needs its cleaning recorded first"
                self._deviation(ex, "SEG-10", "MODULE_DIRTY", why, modules=dirty, phase=r.phase)
                sup.process_alarms.raise_(ALARM, f"{r.batch}: {why}")
                self.blocked[ex.batch_id] = why
                self.blocked_modules[ex.batch_id] = [m for m in modules if m in self.modules
                                                     and self.modules[m].state == "DIRTY"
                                                     and self.modules[m].batch != r.batch]
                cell.hold(ex, why, source="SEG-10")
                continue
            if r.open and ex.batch_id not in self._start_glove_recorded:
                tests = self.glove_tests()
                stale = self._stale(tests, self.params.glove_test_max_age_h)
                if stale and self.params.glove_test_before_first_open:
                    arb.release(r.id, now)
                    why = f"SEG-08: glove test before {ex.batch_id}'s first open phase is not current: {stale}"
                    self._deviation(ex, "SEG-08", "GLOVE_TEST_STALE", why, ports=stale)
                    sup.process_alarms.raise_(GLOVE_ALARM, why)
                    cell.hold(ex, why, source="SEG-08")
                    continue
                self._start_glove_recorded.add(ex.batch_id)
                ex.journal.audit("note", "system", "segregation.start_glove_test",
                                 f"SEG-08: glove tests in force at the first open phase ({r.phase})",
                                 {"rule": "SEG-08", "tests": {p: [res, age] for p, (res, age) in tests.items()},
                                  "stale": stale})
            for m in modules:
                if m in contact:
                    self.modules[m] = ModuleState("IN_USE", r.batch, ex.coi, now)
            self._uses[r.id] = (r.batch, r.phase, modules, now)
            self._use(ex, "use_start", modules, r.phase, now)

    # ------------------------------------------------------------------ refusals (operator commands)
    def refusal(self, ex: BatchExecutive, command: str) -> str:
        """Why the segregation rules refuse ``command`` on patient batch ``ex`` now ("" = they do not)."""
        if command in ("restart", "resume"):
            if self.contain is not None:
                return (f"SEG-07: the cell is in CONTAIN since t={self.contain.at:.0f} s (spill of "
                        f"{self.contain.batch}); exit needs: {'; '.join(self.exit_blockers()) or 'QA e-signature'}")
            block = self.blocked.get(ex.batch_id, "")
            if block:
                dirty = [m for m in self.blocked_modules.get(ex.batch_id, [])
                         if self.modules[m].state != "CLEAN" and self.modules[m].batch != ex.batch_id]
                if dirty:  # DIRTY, or IN_USE by that batch again: its cleaning is still to be recorded
                    return f"{block} (not cleaned since: {[f'{m} {self.modules[m].state}' for m in dirty]})"
                del self.blocked[ex.batch_id]
                self.blocked_modules.pop(ex.batch_id, None)
        if command in ("close_record", "release", "qa_release"):
            if self.end_glove_test_done(ex):
                # IL-06 reads the batch's own end-of-batch glove test (the campaign recipe sets it from
                # its glove-test phase; a patient batch's is this one): set and published for the
                # command that follows, in this batch's focus (the next refresh republishes the focus's)
                ex._end_glove_done = True
                self.sup.signals.update("batch.end_glove_test_done", True, self.sup.now(), "supervisor")
            elif not self._seg08_deviation_approved(ex):
                return (f"SEG-08: no passed glove test of every port after {ex.batch_id}'s last open phase "
                        "(end-of-batch glove test), and no approved SEG-08 deviation")
        return ""

    def status(self) -> dict[str, Any]:
        c = self.contain
        return {"contain": None if c is None else {"batch": c.batch, "material": c.material, "confined": c.confined,
                                                    "at": c.at, "held": c.held, "impacted": c.impacted,
                                                    "blockers": self.exit_blockers()},
                "modules": {m: f"{st.state}({st.batch})" if st.batch else st.state for m, st in self.modules.items()},
                "uses": len(self.use_log)}


__all__ = ["CONTAIN_BLOCKS", "Containment", "ModuleState", "Segregation"]
