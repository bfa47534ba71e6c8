"""Patient batches on the shared cell (issue 14 items 4-6): admission, the arbiter, the chain of
identity, and the scope of holds.

:class:`PatientCell` is the cell-level part the supervisor adds for multi-patient processes:

* **admission** (RunBatch of a recipe whose phase is a ``process``): the single-batch campaign
  recipe is exclusive (it refuses to run beside patient batches and they refuse while it runs);
  the COI and the apheresis DIN are validated (:mod:`aseptic_cell.coi.isbt128`, a bad one is
  refused naming the field); :class:`~aseptic_cell.scheduling.AdmissionControl` must say the run
  fits (an incubator slot, the projected load); the slot is registered to the batch's COI
  (COI-20); the batch gets its own record and executive.
* **allocation**: each phase requests its resources from the
  :class:`~aseptic_cell.scheduling.arbiter.Arbiter` before it starts and releases them after;
  the supervisor arbitrates once per tick; the owner's line clearance (SEG-04) runs here, with
  its record, and the purge wait (SEG-05) follows it in the arbiter.
* **chain of identity**: every physical step that moves, opens, connects, samples or fills a
  container reads it first with the scanner device (:meth:`PatientCell.read`: ``place`` the
  container at the station's reader, ``scan``, ``remove``, through the one command path; what
  physically stands there comes from :class:`StationLabels`, the scanner's label source) and goes
  through :class:`~aseptic_cell.coi.ChainOfIdentity`; a STOP verdict follows COI-30: the step's
  actuator is not commanded, every batch the verdict names is held, the container quarantined, a
  deviation recorded; no operator continue.
* **process equipment**: the batch's incubator slot is bound to it on the incubator
  (``assign_slot`` at admission, ``release_slot`` at the end); the phases command the welder,
  sealer, centrifuge, counter and incubator (:mod:`aseptic_cell.behaviors.process`); a patient
  batch needs the cell's process equipment (``layout.process_equipment.enabled``).
* **hold scope** (spec §4.4): a cell-wide trip holds every batch's active phase, a batch in
  incubation runs on (INT-01); a batch-local fault holds that batch only (INT-03); nothing
  resumes by itself, each batch restarts with its own signed restart.
* **segregation**: SEG-01 (one open COI: the open zone is exclusive), SEG-03 (never two COIs
  connected: :meth:`ChainOfIdentity.connect`), SEG-04/05 (line clearance, purge wait),
  SEG-06 (excursion scope: the batches whose open phase overlapped the excursion are IMPACTED),
  SEG-09 (VHP with product inside only where ``scheduling.yaml`` says the incubator is sealed and
  validated).
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..batch.states import PhaseState as S
from ..batch.states import PhaseStateMachine
from ..coi import (
    ChainOfIdentity,
    ContainerKind,
    CustodyEventType,
    Expectation,
    IdentifierError,
    LocationKind,
    ScanResult,
    decode_label,
    encode_label,
)
from ..coi.isbt128 import parse_coi_id, parse_din
from ..coi.model import GenealogyError
from ..coi.verify import LabelError
from ..results import CommandResult
from ..scheduling.admission import AdmissionControl
from ..scheduling.arbiter import LINE_CLEARANCE, Arbiter, RequestState
from ..scheduling.resources import OPEN_ZONE, ResourceSet
from .executive import BatchExecutive, CoiStampedRecord
from .journal import BatchJournal

if TYPE_CHECKING:
    from .core import Supervisor

E = CustodyEventType
QUARANTINE = "QUARANTINE"
WORK_POSITIONS = ("RTP", "WS", "WLD", "SLR", "CC", "CFG", "SEP", "CRF", "THAW")
"""The stations a container visits (work positions of the location register)."""


UNIT_ON_HOLD = {"welder": "stop", "sealer": "stop", "centrifuge": "stop", "counter": "run_on"}
"""What a batch-local hold, stop or abort does to the unit operation its active phase is running
(trip scope, docs/segregation_catalogue.md: batch-local rows and INT-03; decided per unit):

* ``welder`` / ``sealer`` — ``stop``: the cycle is stopped (``safe_state``: the heads open, result
  FAIL); a weld or seal interrupted is never trusted, the phase re-runs it after the signed restart
  (§4.4 "Weld/seal failure: HOLD batch; retry or deviation").
* ``centrifuge`` — ``stop``: the rotor is brought to rest (``safe_state``: result FAIL); the bag
  stays closed in its bucket; the spin is re-run after the signed restart (§4.4 "Centrifuge
  imbalance/fault: batch-local, HOLD batch").
* ``counter`` — ``run_on``: the count is analytical on a sample already drawn into the counter's
  closed cartridge; stopping it protects nothing and would waste the sample: it finishes to its own
  safe end; the held phase does not take its result, the restart counts again.
* the incubator — not listed: an incubation runs on through any hold (INT-01, INT-03: a batch-local
  fault never stops other batches, and a slot's conditions are kept for the held batch too).

Other batches' units are not touched (INT-03)."""

UNIT_LATCH_WAIT_S = 10.0
"""Wall seconds a held batch's unit stop waits for its latch to show before it stops waiting
(engineering bound over ROS: a few status periods)."""

READER_STATION = {"RTP": "rtp", "WS": "workstation", "CC": "counter", "WLD": "welder", "SLR": "sealer",
                  "CFG": "centrifuge", "SEP": "workstation", "THAW": "workstation", "CRF": "rtp"}
"""Work position -> the scanner station whose reader reads a container there (an incubator slot:
``incubator``). The closed processor (SEP) and the thaw device stand at the workstation and use its
reader; a container for the controlled-rate freezer (CRF, outside) is read at the RTP it leaves by."""


class StationLabels:
    """The scanner sim's label source: what physically stands at a reader when a step expects a
    container — the container with its printed label, unless a mix-up or a damaged label was set
    (tests, scenarios, the stateful test). The scanner device reads it (and may misread or fail
    on its own faults); nothing here is a read."""

    def __init__(self, cell: PatientCell) -> None:
        self.cell = cell
        self.no_reads: dict[str, int] = {}
        """Container id -> its next reads that do not decode (a damaged label, read again with
        re-orientation: COI-03)."""
        self.presented: dict[tuple[str, str], str] = {}
        """(expected container, location) -> the label of what stands there instead (a mix-up:
        another bag where the step expects this one); used once."""

    def at(self, container_id: str, location: str, label: str | None) -> tuple[str, str, bool]:
        """(container id, label, damaged) of what stands at ``location`` for this read."""
        other = self.presented.pop((container_id, location), None)
        if other is not None:
            try:
                cid = decode_label(other).container_id
            except LabelError:
                cid = "UNIDENTIFIED"
            return cid, other, False
        damaged = label is None
        if self.no_reads.get(container_id, 0) > 0:
            self.no_reads[container_id] -= 1
            damaged = True
        return container_id, label or f"CID:{container_id}", damaged


class RecordRouter:
    """The chain of identity's record: each append and query goes to the named batch's own record."""

    def __init__(self, cell: PatientCell) -> None:
        self.cell = cell

    def _record(self, batch_id: str) -> Any:
        ex = self.cell.sup.patients.get(batch_id)
        if ex is None or ex.record is None:
            raise ValueError(f"batch {batch_id!r} has no record in this cell")
        return ex.record

    def append(self, kind: str, *, batch_id: str, **kw: Any) -> Any:
        return self._record(batch_id).append(kind, batch_id=batch_id, **kw)

    def entries(self, batch_id: str | None = None, kinds: Any = None) -> list[Any]:
        if batch_id is not None:
            return list(self._record(batch_id).entries(batch_id=batch_id, kinds=kinds))
        out: list[Any] = []
        for ex in self.cell.sup.patients.values():
            if ex.record is not None:
                out.extend(ex.record.entries(batch_id=ex.batch_id, kinds=kinds))
        return out


@dataclass
class Excursion:
    """A cell-wide excursion window (SEG-06): from its start to its recovery."""

    source: str
    start: float
    end: float = math.inf
    open_batches: set[str] = field(default_factory=set)


class PatientCell:
    """The supervisor's multi-patient part (see the module docstring)."""

    def __init__(self, sup: Supervisor, record_factory: Callable[[str], Any] | None = None) -> None:
        cfg = sup.cfg
        if cfg.scheduling is None:
            raise ValueError("no scheduling.yaml: this cell runs no patient batches")
        self.sup = sup
        self.resources = ResourceSet(cfg.scheduling.resources)
        self.arbiter = Arbiter(self.resources, cfg.scheduling)
        self.admission = AdmissionControl(self.arbiter)
        self.record_factory = record_factory
        locations = [(s, LocationKind.INCUBATOR_SLOT) for s in self.resources.slots]
        locations += [(w, LocationKind.WORK_POSITION) for w in WORK_POSITIONS]
        locations.append((QUARANTINE, LocationKind.QUARANTINE))
        self.coi = ChainOfIdentity(RecordRouter(self), str(getattr(cfg.layout, "cell_id", "CELL-01")),  # type: ignore[arg-type]
                                   cfg.coi, locations)
        self.reader = StationLabels(self)
        self._reads: dict[tuple[str, str, str, int], Any] = {}
        # slot -> (ended batch, its release_slot handle): a slot the incubator would not free at the end
        # of its batch (a container of a stopped/aborted batch still in it) stays out of admission until
        # the container is taken out (an operator's unload) and the incubator frees it
        self._ended_slots: dict[str, tuple[str, Any]] = {}
        """(batch, location, container, attempt) -> the scan command in flight (a port that answers later)."""
        self.connected: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {}
        """Batch -> the two ends of its weld as read at the welder: ((container, COI read), ...)."""
        self._checked: dict[str, Any] = {}
        """Batch -> the verified reads of a step whose custody event waits for the unit's result."""
        self.inc_out_since: float | None = None
        """Start of the incubator's excursion in progress (``incubator.in_spec`` false)."""
        self.inc_excursions: list[tuple[float, float]] = []
        self.inc_doors_seen: Any = None
        """Incubator excursions longer than its ``alarm_delay_s`` (start, end; end = inf while on)."""
        pe = getattr(cfg.layout, "process_equipment", None)
        self.inc_alarm_delay_s = float(pe.incubator.alarm_delay_s) if pe is not None else 600.0
        self.lc_running: dict[int, float] = {}
        """Line-clearance request id -> its start (sim s)."""
        self.excursions: list[Excursion] = []
        self.violations: list[str] = []
        """Segregation invariants found broken at run time (a test asserts none)."""
        self._noted: set[tuple[str, str, str]] = set()
        self.open_now: dict[str, float] = {}
        """Batch -> start of its open phase in progress (SEG-01/06)."""
        from .segregation import Segregation

        self._unit_stops: list[tuple[BatchExecutive, str, Any, str]] = []
        """(batch, unit, its start command still unanswered, or its stop's progress {stage, stop, before,
        rec, t0}, why): a held batch's run to stop once known to have started; a stop whose own latch is
        to be released (a port answering later)."""
        self.seg = Segregation(self)
        """SEG-07 (spill, CONTAIN), SEG-08 (glove test per batch), SEG-10 (equipment use log)."""

    # ------------------------------------------------------------------ admission
    def run(self, recipe: Any, process_id: str, batch_id: str, user: str, coi: str, din: str,
            start_payload: dict[str, Any] | None = None) -> CommandResult:
        """RunBatch of a patient recipe (the supervisor checked the user, the id, the record and change
        control; ``start_payload``: what the batch-start entry records besides, e.g. the configuration hash)."""
        sup = self.sup
        if sup.main.active:
            return sup._refuse_batch(user, "start", "EXCLUSIVE",
                                     f"campaign batch {sup.main.batch_id} ({sup.main.recipe.id}) is "
                                     f"{sup.main.sm.state.value}: patient batches run only without it")
        if batch_id in sup.patients:
            return sup._refuse_batch(user, "start", "INVALID", f"batch {batch_id} already ran in this cell")
        process = sup.cfg.processes.get(process_id)
        if process is None:
            return sup._refuse_batch(user, "start", "RECIPE", f"unknown process {process_id!r}")
        missing = [k for k in ("scanner", "incubator", "welder", "sealer", "centrifuge", "counter")
                   if k not in sup.port.node_devices]
        if missing:
            return sup._refuse_batch(user, "start", "EQUIPMENT",
                                     f"a patient batch needs the cell's process equipment; this cell has no "
                                     f"{', '.join(missing)} (layout.process_equipment.enabled)")
        if self.record_factory is None:
            return sup._refuse_batch(user, "start", "RECORD",
                                     "a patient batch needs its own record: this supervisor has no record store")
        pol = self.coi.policy
        try:  # COI and DIN before anything is allocated (a bad one names the field)
            coi_id = parse_coi_id(coi, re.compile(pol.coi_regex))
            parse_din(din, require_check=pol.din_require_check)
        except IdentifierError as exc:
            return sup._refuse_batch(user, "start", "COI", f"{exc.field}: {exc}")
        now = sup.now()
        adm = self.admission.admit(batch_id, process, now)
        if not adm.admitted:
            return sup._refuse_batch(user, "start", "ADMISSION", adm.reason)
        assert adm.slot is not None
        bind = sup.send("incubator", "assign_slot", {"slot": self.slot_number(adm.slot), "batch_id": batch_id,
                                                      "coi": coi_id}, reason=f"batch {batch_id}: its slot (COI-20)",
                        user=user)
        if bind.done and not bind.accepted:  # (a port answering later: the first load finds out)
            self.admission.finish(batch_id, now)
            return sup._refuse_batch(user, "start", "EQUIPMENT",
                                     f"incubator slot {adm.slot} not bound to the batch: {bind.code}: {bind.reason}")
        try:
            self.coi.admit_batch(batch_id, coi, [din])
        except (IdentifierError, GenealogyError) as exc:
            self.admission.finish(batch_id, now)
            sup.send("incubator", "release_slot", {"slot": self.slot_number(adm.slot)}, user=user,
                     reason=f"batch {batch_id} refused")
            return sup._refuse_batch(user, "start", "COI", str(exc))
        bare = self.record_factory(batch_id)
        record = CoiStampedRecord(bare, self.coi.genealogy.batch(batch_id).coi)
        ex = BatchExecutive(sup.clock, BatchJournal(record, sup.now, lambda: batch_id), record,
                            coi=self.coi.genealogy.batch(batch_id).coi, din=din, patient=True)
        ex.journal.role_of = sup.main.journal.role_of
        ex.journal.on_failure = sup._record_failures.append
        ex.sm.add_listener(lambda tr: sup._on_batch_transition(tr, ex))
        ex.sm.add_listener(lambda tr: self._unit_on_hold(tr, ex))
        ex.recipe, ex.process, ex.batch_id, ex.batch_user, ex.slot = recipe, process, batch_id, user, adm.slot
        sup.patients[batch_id] = ex
        self.coi.locations.assign(adm.slot, ex.coi, batch_id)
        with sup.focused(ex):
            self.load_tree(ex)
            ex.journal.audit("command", user, "batch.start", f"recipe {recipe.id} v{recipe.version}",
                             {"recipe_id": recipe.id, "recipe_version": recipe.version, "process": process.id,
                              "din": din, "slot": adm.slot,
                              "admission": {k: round(v, 1) for k, v in adm.projected_peak_min_per_day.items()},
                              **(start_payload or {})})
            ex.sm.start(user, f"recipe {recipe.id} v{recipe.version}")
        return CommandResult(True, "OK", f"batch {batch_id} started (COI {ex.coi}, slot {adm.slot})",
                             state=ex.sm.state.value)

    def load_tree(self, ex: BatchExecutive) -> None:
        import functools

        from py_trees.composites import Sequence

        from ..behaviors.base import PhaseNode
        from ..behaviors.process import ProcessPhase

        sup = self.sup
        (up, op, _ph), = list(ex.recipe.phases())
        ex.phases, ex.phase_order, ex._phase_types = {}, [], {}
        root = Sequence(f"{ex.recipe.id} {ex.batch_id}", memory=True)
        phases = ex.process.run_phases()
        for i, ph in enumerate(phases):
            path = f"{up.id}/{op.id}/{ph.id}"
            sm = PhaseStateMachine(sup.clock, name=path)
            sm.add_listener(functools.partial(sup._on_phase_transition, path))
            ex.phases[path] = sm
            ex.phase_order.append(path)
            ex._phase_types[path] = "incubation" if ph.kind.value == "incubation" else (
                "open" if ph.open else "closed")
            root.add_child(PhaseNode(f"{ph.id} [{ex._phase_types[path]}]", sup, path,
                                     ProcessPhase(ph.id, sup, self, ex, phases, i)))
        ex.tree = root
        ex.active_phase = None
        ex.held_reason = ""

    def finish(self, ex: BatchExecutive) -> None:
        """The batch ended (Complete, Stopped, Aborted): its requests and slot go back."""
        now = self.sup.now()
        for rid in list(ex.requests.values()):
            self.drop(rid)
        ex.requests.clear()
        if ex.batch_id in self.arbiter.slot_of:
            self.admission.finish(ex.batch_id, now)
            if ex.slot:
                with contextlib.suppress(Exception):
                    self.coi.locations.release(ex.slot)
                h = self.sup.send("incubator", "release_slot", {"slot": self.slot_number(ex.slot)},
                                  reason=f"batch {ex.batch_id} ended", user="system")
                if h.done and not h.accepted:
                    ex.journal.audit("note", "system", "incubator.release_slot",
                                     f"slot {ex.slot} not released: {h.code}: {h.reason}", {"slot": ex.slot})
                if not (h.done and h.accepted):
                    self._ended_slots[ex.slot] = (ex.batch_id, h)
                    self._watch_ended_slots()
        self.open_now.pop(ex.batch_id, None)
        self.connected.pop(ex.batch_id, None)
        self._checked.pop(ex.batch_id, None)
        for k in [k for k in self._reads if k[0] == ex.batch_id]:
            del self._reads[k]

    def drop(self, rid: int) -> None:
        r = self.arbiter.requests.get(rid)
        if r is None:
            return
        if r.state is RequestState.WAITING:
            self.arbiter.cancel(rid)
        elif r.state is RequestState.RUNNING:
            self.arbiter.release(rid, self.sup.now())

    class _NotTried:
        done, accepted = True, False

    _NOT_TRIED = _NotTried()

    def _watch_ended_slots(self) -> None:
        """A slot its ended batch left occupied is blocked for admission (source ``ended:<batch>``);
        once the incubator reports it empty it is released there, and freed here when that succeeds."""
        for slot, (batch, h) in list(self._ended_slots.items()):
            if h is not None and not h.done:
                continue  # the incubator's answer is on its way (the ROS port)
            src = f"ended:{batch}"
            if h is not None and h.accepted:
                self.arbiter.unblock(slot, source=src)
                del self._ended_slots[slot]
                continue
            self.arbiter.block(slot, f"holds a container of ended batch {batch}: take it out (incubator unload)",
                               source=src)  # idempotent per source
            n = self.slot_number(slot)
            if self.sup.signal(f"incubator.slot.{n}.container_id") == "" and h is not None:  # emptied
                again = self.sup.send("incubator", "release_slot", {"slot": n},
                                      reason=f"slot of ended batch {batch} emptied", user="system")
                # one more try per emptying: a refusal now (another cause) waits for a person, not a loop
                self._ended_slots[slot] = (batch, again if not (again.done and not again.accepted) else None)
            elif h is None and self.sup.signal(f"incubator.slot.{n}.container_id"):
                self._ended_slots[slot] = (batch, self._NOT_TRIED)  # occupied again: retry after the next emptying

    # ------------------------------------------------------------------ each tick
    def tick(self) -> None:
        sup = self.sup
        now = sup.now()
        self._watch_incubator(now)
        if self._unit_stops:
            self._pending_unit_stops()
        if self._ended_slots:
            self._watch_ended_slots()
        self._line_clearances(now)
        d = self.arbiter.arbitrate(now)
        for ev in d.events:
            ex = sup.patients.get(ev.batch)
            if ex is not None:
                ex.journal.audit("note", "system", f"arbiter.{ev.kind.value}", ev.detail,
                                 {"phase": ev.phase, "request": ev.request_id})
        for g in d.grants:
            if g.request.phase == LINE_CLEARANCE:
                self.lc_running[g.request.id] = now
        self.seg.tick(now, d)
        self.violations.extend(f"t={now:.0f}: {v}" for v in self.arbiter.check_invariants())
        opened = sorted(self.open_now)
        if len({sup.patients[b].coi for b in opened if b in sup.patients}) > 1:
            self.violations.append(f"t={now:.0f}: SEG-01 two COIs open at once: {opened}")
        for exc in self.excursions:
            if exc.end == math.inf:
                exc.open_batches |= set(self.open_now)
        for ex in list(sup.patients.values()):
            if not ex.active:
                continue
            self._max_hold(ex, now)
            with sup.focused(ex):
                for _ in range(4):
                    before = ex.sm.state
                    sup._drive_batch()
                    if ex.sm.state is before:
                        break
                if ex.sm.state.final:
                    self.finish(ex)

    def _max_hold(self, ex: BatchExecutive, now: float) -> None:
        """INT-02: a hold longer than the phase's ``max_hold`` (else the process's
        ``default_max_hold``) raises a deviation for that batch only, once per hold."""
        if ex.sm.state is not S.HELD:
            ex.held_since, ex.max_hold_raised = math.nan, False
            return
        if math.isnan(ex.held_since):
            ex.held_since = now
        pid = (ex.active_phase or "").rsplit("/", 1)[-1]
        ph = next((p for p in ex.process.phases if p.id == pid), None)
        limit = ph.max_hold if ph is not None and ph.max_hold is not None else ex.process.default_max_hold
        if not ex.max_hold_raised and now - ex.held_since > limit:
            ex.max_hold_raised = True
            ex.journal.audit("deviation", "system", "deviation.raise",
                             f"INT-02: held {now - ex.held_since:.0f} s > max_hold {limit:.0f} s in phase {pid}",
                             {"rule": "INT-02", "code": "MAX_HOLD_EXCEEDED", "phase": pid, "held_since": ex.held_since,
                              "max_hold_s": limit, "held_reason": ex.held_reason})

    def _line_clearances(self, now: float) -> None:
        """SEG-04: the owner's line clearance, granted by the arbiter, lasts ``t_line_clearance``
        and is recorded (checklist, verifier) in the owner's record; the purge wait follows."""
        for rid, t0 in list(self.lc_running.items()):
            if now - t0 < self.arbiter.t_lc:
                continue
            req = self.arbiter.requests[rid]
            self.arbiter.release(rid, now)
            del self.lc_running[rid]
            ex = self.sup.patients.get(req.batch)
            if ex is None:
                continue
            checklist = ["containers closed and parked (COI-20)", "no labels or documents left",
                         "single-use items in waste", "LC_WIPE done", "purge wait follows (SEG-05)"]
            with contextlib.suppress(Exception):
                self.coi.log.append(E.LINE_CLEARANCE, batch_id=ex.batch_id, coi_id=ex.coi, actor="system",
                                    extra={"checklist": checklist,
                                           "verifier": "system (validated automatic check)",
                                           "purge_until": now + self.arbiter.t_purge})

    # ------------------------------------------------------------------ process equipment
    @staticmethod
    def slot_number(slot: str | None) -> int:
        """``INC-03`` -> 3 (the incubator's slot number)."""
        return int(str(slot).rsplit("-", 1)[-1])

    def centrifuge_program_config(self) -> Any:
        """The site's first configured centrifuge program (``cell.yaml`` ``process_equipment.centrifuge``)."""
        return self.sup.cfg.layout.process_equipment.centrifuge.programs[0]

    def door_access_s(self) -> float:
        """The incubator door's open time per load/unload access (``cell.yaml``)."""
        return float(self.sup.cfg.layout.process_equipment.incubator.door_access_s)

    def _watch_incubator(self, now: float) -> None:
        """Three signals per tick: the incubator's excursions (``incubator.in_spec`` false) that last
        longer than its alarm delay after the last door access (INC-04; the delay runs from each door
        close: a chamber recovering from a load or unload is not an excursion, spec §5)."""
        in_spec = self.sup.signal("incubator.in_spec")
        doors = self.sup.signal("incubator.door_events")
        door_open = self.sup.signal("incubator.door_open")
        if door_open is True or doors != self.inc_doors_seen:
            self.inc_doors_seen = doors
            if self.inc_excursions and self.inc_excursions[-1] == (self.inc_out_since, math.inf):
                self.inc_excursions[-1] = (self.inc_out_since or now, now)
            self.inc_out_since = None
            return
        if in_spec is False:
            if self.inc_out_since is None:
                self.inc_out_since = now
            elif now - self.inc_out_since > self.inc_alarm_delay_s and (
                    not self.inc_excursions or self.inc_excursions[-1][0] != self.inc_out_since):
                self.inc_excursions.append((self.inc_out_since, math.inf))
        elif self.inc_out_since is not None:
            if self.inc_excursions and self.inc_excursions[-1] == (self.inc_out_since, math.inf):
                self.inc_excursions[-1] = (self.inc_out_since, now)
            self.inc_out_since = None

    def incubator_excursions(self, t0: float, t1: float) -> list[tuple[float, float]]:
        """The long excursions (see :meth:`_watch_incubator`) that overlap ``[t0, t1]``."""
        return [(a, b) for a, b in self.inc_excursions if a <= t1 and b >= t0]

    # ------------------------------------------------------------------ chain of identity
    def read(self, ex: BatchExecutive, location: str, container: str, label: str | None,
             attempt: int) -> ScanResult | None:
        """Read what stands at ``location`` where the step expects ``container`` with the scanner
        device: ``place`` it at the station's reader (what the arm does), ``scan``, ``remove``. None:
        the scan's answer has not come yet (ask again next tick)."""
        key = (ex.batch_id, location, container, attempt)  # kept until the step's verdict (_forget)
        h = self._reads.get(key)
        if h is None:
            station = "incubator" if location in self.resources.slots else READER_STATION.get(location, "workstation")
            cid, payload, damaged = self.reader.at(container, location, label)
            why = f"batch {ex.batch_id}: read {container} at {location} (COI-01)"
            self.sup.send("scanner", "place", {"station": station, "container_id": cid, "label": payload}, reason=why)
            port = self.sup.port
            model = getattr(getattr(port, "sim", None), "models", {}).get(port.node_devices["scanner"])
            # a damaged label does not decode: the sim reader's no-read for this one read (in-process
            # only; a no-read fault injected by a test or scenario is left as it is)
            inject, clear = getattr(port, "inject_fault", None), getattr(port, "clear_fault", None)
            damaged = damaged and model is not None and inject is not None and clear is not None and (
                "no_read" not in model.faults)
            if damaged:
                inject(port.node_devices["scanner"], "no_read", station=station)  # type: ignore[misc]
            try:
                h = self.sup.send("scanner", "scan", {"station": station}, reason=why)
            finally:
                if damaged:
                    clear(port.node_devices["scanner"], "no_read")  # type: ignore[misc]
            self.sup.send("scanner", "remove", {"station": station}, reason=why)
            self._reads[key] = h
        if not h.done:
            return None
        p = h.payload if h.accepted else {}
        reader = str(p.get("reader_id") or f"scanner:{location}")
        if not h.accepted:  # the reader refused or is lost: no read (re-read, then hold: COI-03)
            return ScanResult(None, read_failed=True, reader_id=reader, attempt=attempt)
        text = p.get("payload")
        return ScanResult(text if isinstance(text, str) else None, symbology_ok=bool(p.get("symbology_ok", True)),
                          read_failed=bool(p.get("read_failed", False)), reader_id=reader, attempt=attempt)

    def _label(self, container: str) -> str | None:
        c = self.coi.genealogy.get(container)
        return encode_label(c.coi, c.id) if c is not None else None

    def scan_step(self, ex: BatchExecutive, event: CustodyEventType, container: str, location: str,
                  destination: str | None = None, *, extra: dict[str, Any] | None = None,
                  equipment: str = "", attempt: int = 1) -> tuple[str, str]:
        """Scan ``container`` at ``location`` and log ``event`` (COI-01). Returns (action, message):
        PROCEED, WAIT (the read's answer is not in yet), RETRY (read again), HOLD (hold this batch)
        or STOP (COI-30 done: the caller does not command the actuator; the batches named are held here)."""
        scan = self.read(ex, location, container, self._label(container), attempt)
        if scan is None:
            return "WAIT", ""
        exp = Expectation(ex.batch_id, ex.coi, container, location, destination)
        out = self.coi.handle(event, scan, exp, actor="system", equipment_id=equipment, extra=extra or {})
        return self._verdict(ex, out)

    def check_step(self, ex: BatchExecutive, container: str, location: str, attempt: int = 1) -> tuple[str, str]:
        """Scan and verify ``container`` at ``location`` for a step whose custody event carries the
        unit's result (SEAL): logged by :meth:`record_step` after the unit ran."""
        scan = self.read(ex, location, container, self._label(container), attempt)
        if scan is None:
            return "WAIT", ""
        exp = Expectation(ex.batch_id, ex.coi, container, location)
        out = self.coi.check(scan, exp, actor="system")
        if out.ok:
            self._checked[ex.batch_id] = (scan, out.verdict, exp)
        return self._verdict(ex, out)

    def record_step(self, ex: BatchExecutive, event: CustodyEventType, *, equipment: str,
                    extra: dict[str, Any]) -> None:
        scan, verdict, exp = self._checked.pop(ex.batch_id)
        self.coi.record(event, scan, verdict, exp, actor="system", equipment_id=equipment, extra=extra)

    def register(self, ex: BatchExecutive, container: str, location: str, kind: ContainerKind,
                 parents: list[str], attempt: int = 1) -> tuple[str, str]:
        """CONTAINER_REGISTER: the printed label read back by the station's reader (LAB-08)."""
        scan = self.read(ex, location, container, encode_label(ex.coi, container), attempt)
        if scan is None:
            return "WAIT", ""
        out = self.coi.register(scan, Expectation(ex.batch_id, ex.coi, container, location), actor="system",
                                kind=kind, parents=parents,
                                extra={"kit_lot": "KIT-SIM", "kit_expiry": "2099-12-31"})
        return self._verdict(ex, out)

    def receive(self, ex: BatchExecutive, container: str, location: str, attempt: int = 1) -> tuple[str, str]:
        """APH_RECEIPT: the shipped bag's label read at the RTP against the paperwork."""
        scan = self.read(ex, location, container, encode_label(ex.coi, container, ex.din), attempt)
        if scan is None:
            return "WAIT", ""
        out = self.coi.receive(scan, Expectation(ex.batch_id, ex.coi, None, location), actor="system",
                               paperwork_coi=ex.coi, paperwork_din=ex.din, seal_intact=True,
                               temperature_in_limits=True,
                               extra={"shipper_id": "SH-SIM", "logger_file": "sim", "arrival_temp_c": 4.0})
        return self._verdict(ex, out)

    def weld(self, ex: BatchExecutive, a: str, b: str, location: str, attempt: int = 1) -> tuple[str, str]:
        """SEG-03 / COI-10: both ends read at the welder and of one COI before the welder moves. The
        COIs read go to the welder's ``weld`` command (its own interlock: WELD_COI_MISMATCH); the
        WELD custody event, with the weld's quality, is logged by :meth:`weld_done`."""
        ends = []
        for cid in (a, b):
            scan = self.read(ex, location, cid, self._label(cid), attempt)
            if scan is None:
                return "WAIT", ""
            ends.append((scan, Expectation(ex.batch_id, ex.coi, cid, location)))
        read = []
        for (scan, _e), cid in zip(ends, (a, b), strict=True):
            try:
                lab = decode_label(scan.payload or "")
                read.append((lab.container_id, lab.coi or ""))
            except LabelError:
                read.append((cid, ""))
        self.connected[ex.batch_id] = (read[0], read[1])
        out = self.coi.check_connect(ends[0], ends[1], actor="system")
        if out.ok:
            self._checked[ex.batch_id] = (ends, out.verdict)
        return self._verdict(ex, out)

    def weld_done(self, ex: BatchExecutive, report: dict[str, Any]) -> None:
        """The WELD custody event of a weld that passed, with the welder's quality result."""
        ends, verdict = self._checked.pop(ex.batch_id)
        self.coi.record_connect(E.WELD, verdict, ends[0], ends[1], actor="system", equipment_id="WLD",
                                extra={"wafer_lot": "WAFER-SIM", "quality": report.get("result"),
                                       "score": report.get("score"), "run_id": report.get("run_id")})

    def _verdict(self, ex: BatchExecutive, out: Any) -> tuple[str, str]:
        for k in [k for k in self._reads if k[0] == ex.batch_id]:  # the step has its verdict: reads done
            del self._reads[k]
        v = out.verdict
        if v.ok:
            return "PROCEED", ""
        if v.action.value == "RETRY":
            return "RETRY", v.message
        if v.action.value == "HOLD":
            return "HOLD", f"{v.rule} {v.code.value}: {v.message}"
        resp = v.response
        why = f"{v.rule} {v.code.value}: {v.message} (deviation {out.deviation}; COI-30: no operator continue)"
        for b in (resp.hold_batches if resp is not None else (ex.batch_id,)):
            other = self.sup.patients.get(b)
            if other is None:
                continue
            other.coi_stop = why
            if resp is not None and b in resp.impacted_batches:
                other.impacted = True
            if other is not ex:
                self.hold(other, f"COI-30: {why}", source=v.rule)
        return "STOP", why

    # ------------------------------------------------------------------ holds
    def _unit_on_hold(self, tr: Any, ex: BatchExecutive) -> None:
        """On ``ex``'s hold, stop or abort (before its tree is stopped): its active phase's unit
        operation in progress is handled per :data:`UNIT_ON_HOLD`; other batches' units run on."""
        if tr.new not in (S.HOLDING, S.STOPPING, S.ABORTING) or ex.tree is None or not ex.active_phase:
            return
        pp = next((getattr(n, "decorated", None) for n in ex.tree.children
                   if getattr(n, "phase_path", None) == ex.active_phase), None)
        ops, i, stage = getattr(pp, "ops", ()), getattr(pp, "op_i", 0), getattr(pp, "op_stage", "")
        if pp is None or i >= len(ops) or stage not in ("starting", "running"):
            return  # no run of this batch in progress on a unit (waiting, identity steps, result taken)
        unit = ops[i]
        why = f"batch {ex.batch_id} {tr.new.value.lower()}: {ex.held_reason or tr.reason}"[:200]
        if UNIT_ON_HOLD.get(unit) != "stop":
            ex.journal.audit("note", "system", f"{unit}.run_on", f"{unit} run {pp.op_run_id or '?'} runs to its end "
                             "(batch-local hold scope, INT-03; not stopped by this batch's hold)",
                             {"unit": unit, "run_id": pp.op_run_id, "phase": ex.active_phase, "policy": "run_on"})
            return
        h = pp.op_handle
        if stage == "starting" and h is not None and not h.done:
            self._unit_stops.append((ex, unit, h, why))  # stopped when its start is answered (tick)
            return
        if stage == "starting" and (h is None or not h.accepted):
            return  # refused: nothing runs
        self._stop_unit(ex, unit, str(pp.op_run_id or (h.payload or {}).get("run_id", "")), why)

    def _stop_unit(self, ex: BatchExecutive, unit: str, run_id: str, why: str) -> None:
        """Stop ``unit``'s run of ``ex`` with its ``safe_state`` (result FAIL). The device layer latches
        every safe_state; this latch is the hold's own, on an idle unit that is not faulted: it is
        released at once (``recover``, an intervention recorded in the cell's and the batch's record)
        so the unit serves the other batches (INT-03: a batch-local hold never stops them). A latch
        of another cause (a fault) is not touched. The held batch itself waits for its signed restart."""
        sup = self.sup
        before = sup.port.latched(unit)
        if not before:
            sup.own_latch(unit)  # the latch of the safe_state below is the hold's own (see _pending_unit_stops)
        stop = sup.send(unit, "safe_state", {"reason": why}, reason=why, user="system")
        self._unit_stops.append((ex, unit, {"stage": "stop", "stop": stop, "before": before, "rec": None,
                                            "t0": sup.wall()}, why))
        ex.journal.audit("trip", "system", f"{unit}.safe_state",
                         f"{unit} run {run_id or '?'} of batch {ex.batch_id} stopped by its hold "
                         "(batch-local hold scope, INT-03)",
                         {"unit": unit, "run_id": run_id, "policy": "stop", "scope": "batch"})
        self._pending_unit_stops()

    def _pending_unit_stops(self) -> None:
        """Each tick (and at once in-process): a start answered after the hold is stopped; a stop
        answered has its own latch released (over ROS the latch shows on a later status: waited for
        up to ``UNIT_LATCH_WAIT_S``). While one is pending, the supervisor's watch for a device
        "latched by someone else during the batch" (a cell-wide trip) is told the latch is ours."""
        sup = self.sup
        for item in list(self._unit_stops):
            ex, unit, h, why = item
            if not isinstance(h, dict):  # a start command whose answer came after the hold
                if h.done:
                    self._unit_stops.remove(item)
                    if h.accepted:
                        self._stop_unit(ex, unit, str((h.payload or {}).get("run_id", "")), why)
                continue
            if not h["before"]:
                sup.own_latch(unit)  # this latch is the hold's own (see the docstring)
            latched, late = sup.port.latched(unit), sup.wall() - h["t0"] > UNIT_LATCH_WAIT_S
            if h["stage"] == "stop":
                stop = h["stop"]
                if not stop.done:
                    continue
                if not stop.accepted or h["before"] or (not latched and late):
                    self._unit_stops.remove(item)
                    if not stop.accepted:
                        ex.journal.audit("trip", "system", f"{unit}.safe_state",
                                         f"{unit} stop refused: {stop.code}: {stop.reason}", {"unit": unit})
                    continue
                if latched:
                    h["stage"], h["rec"] = "release", sup.recover(
                        unit, "system", f"release the latch of batch {ex.batch_id}'s own stop: the {unit} is at "
                        "rest and not faulted (INT-03: the other batches use it)")
                    ex.journal.audit("intervention", "system", f"{unit}.recover",
                                     f"{unit}: the latch of this batch's stop released", {"unit": unit,
                                                                                          "latched": latched})
            rec = h["rec"]
            if h["stage"] == "release" and rec is not None and rec.done and (not rec.accepted or not latched or late):
                self._unit_stops.remove(item)
                if not rec.accepted or latched:
                    ex.journal.audit("note", "system", f"{unit}.recover",
                                     f"{unit} still latched after this batch's stop: {rec.code}: {rec.reason}",
                                     {"unit": unit})

    def hold(self, ex: BatchExecutive, reason: str, *, source: str) -> None:
        """A batch-local hold of ``ex`` (INT-03): only this batch, no device made safe."""
        with self.sup.focused(ex):
            self.sup.hold(reason, trip=False, source=source)
            ex.journal.audit("trip", "system", "batch.hold", reason, {"source": source, "scope": "batch"})
            for _ in range(3):
                before = ex.sm.state
                self.sup._drive_batch()
                if ex.sm.state is before:
                    break

    def cell_wide_trip(self, reason: str, source: str) -> None:
        """INT-01: every patient batch's active phase holds; a batch in pure incubation runs on.
        SEG-06: the excursion window opens (closed by :meth:`excursion_over`)."""
        if not any(e.source == source and e.end == math.inf for e in self.excursions):
            self.excursions.append(Excursion(source, self.sup.now(), open_batches=set(self.open_now)))
        for res in ("ARM", OPEN_ZONE):  # no new hands-on or open phase until a signed restart
            if res in self.resources:
                self.arbiter.block(res, f"cell-wide trip {source}: {reason}"[:200], source="trip")
        for ex in self.sup.patients.values():
            if ex.sm.state not in (S.RUNNING, S.PAUSING, S.PAUSED, S.RESTARTING):
                continue
            path = ex.active_phase
            if path is not None and ex.phase_kind(path) == "incubation":
                if (ex.batch_id, source, path) in self._noted:
                    continue
                self._noted.add((ex.batch_id, source, path))
                ex.journal.audit("trip", "system", "interlock.cell_wide", reason,
                                 {"source": source, "scope": "cell", "phase": path, "effect": "incubation runs on"})
                continue
            with self.sup.focused(ex):
                self.sup.hold(f"cell-wide trip {source}: {reason}", trip=False, source=source)
                ex.journal.audit("trip", "system", "interlock.cell_wide", reason,
                                 {"source": source, "scope": "cell", "phase": path or ""})
                for _ in range(3):
                    before = ex.sm.state
                    self.sup._drive_batch()
                    if ex.sm.state is before:
                        break

    def excursion_over(self, source: str) -> list[str]:
        """SEG-06: close the excursion window of ``source``; the batches whose open phase overlapped it
        are IMPACTED (QA hold, recorded in each one's record). Returns them."""
        now = self.sup.now()
        out: list[str] = []
        for exc in self.excursions:
            if exc.source != source or exc.end != math.inf:
                continue
            exc.end = now
            for b in sorted(exc.open_batches):
                ex = self.sup.patients.get(b)
                if ex is None:
                    continue
                ex.impacted = True
                ex.journal.audit("deviation", "system", "deviation.raise",
                                 f"SEG-06: open phase during the {source} excursion "
                                 f"(t={exc.start:.0f}..{now:.0f} s): IMPACTED, QA hold",
                                 {"rule": "SEG-06", "code": "IMPACTED", "source": source,
                                  "window": [exc.start, now]})
                out.append(b)
        return out

    def restarted(self, ex: BatchExecutive) -> list[str]:
        """A signed restart after a cell-wide trip (its cause dealt with): the arm and the open zone
        are allocated again and the excursion windows close (SEG-06: the batches open during them
        are IMPACTED). Returns the impacted batches."""
        for res in ("ARM", OPEN_ZONE):
            if res in self.resources:
                self.arbiter.unblock(res, source="trip")
        out: list[str] = []
        for src in {e.source for e in self.excursions if e.end == math.inf}:
            out += self.excursion_over(src)
        return out

    # ------------------------------------------------------------------ views
    def queue(self) -> list[dict[str, Any]]:
        """The waiting requests in arbitration order, with why each waits."""
        now = self.sup.now()
        return [{"batch": r.batch, "phase": r.phase, "since": r.requested_at,
                 "why": [str(w) for w in self.arbiter.why(r, now)]} for r in self.arbiter.order(now)]

    def status(self) -> list[dict[str, Any]]:
        out = []
        for ex in self.sup.patients.values():
            out.append({"batch_id": ex.batch_id, "coi": ex.coi, "din": ex.din, "state": ex.sm.state.value,
                        "slot": ex.slot, "phase": (ex.active_phase or "").rsplit("/", 1)[-1],
                        "held_reason": ex.held_reason, "impacted": ex.impacted,
                        "record": str(getattr(ex.record, "path", ""))})
        return out

    def zone_owner(self) -> str | None:
        return self.arbiter.zone_owner


def sibling_records(record: Any) -> Callable[[str], Any] | None:
    """A factory of per-batch records beside the cell's SQLite record (same clock and sealer):
    ``<dir>/batch-<id>.db``; None when the cell has no file record."""
    from ..records import BatchRecord

    path = getattr(record, "path", None)
    clock = getattr(record, "_clock", None)
    if not isinstance(path, Path) or clock is None:
        return None

    def make(batch_id: str) -> Any:
        return BatchRecord(path.parent / f"batch-{batch_id}.db", clock, sealer=getattr(record, "sealer", None))

    return make


@contextlib.contextmanager
def focused(sup: Supervisor, ex: BatchExecutive) -> Iterator[None]:
    prev, sup.focus = sup.focus, ex
    try:
        yield
    finally:
        sup.focus = prev


__all__ = ["OPEN_ZONE", "READER_STATION", "PatientCell", "StationLabels", "RecordRouter", "focused", "sibling_records"]
