"""``cellctl twin``: the throughput twin (issue 14 item 8).

The twin runs the REAL supervisor (:class:`~.supervisor.core.Supervisor`, its patient cell,
arbiter, admission control, chain of identity, per-batch executives and hash-chained SQLite
records) on the REAL simulated cell (:class:`~.sim.cell.SimCell`: isolator, VHP, autoclave, arm,
process equipment) in-process, over a demand pattern, at full speed, and reports throughput:
batches completed and failed, the time-to-vein distribution, utilisation of the arm, the grade A
open zone (with its changeover: line clearance SEG-04 and purge wait SEG-05) and the incubator
slots, the bottleneck (spec §6.3) and batches per year, with plots of utilisation and schedule.

What runs for real and what is modelled
---------------------------------------
* Real: the supervisor's tick (interlock engine over every device signal, process alarms,
  alarms, trips), each batch's ISA-88 state machine and behaviour tree, every phase's acquire /
  release through the arbiter (SEG-01 open-zone exclusivity, line clearance, purge wait,
  windows, ageing), admission control, COI scans and custody events, each batch's own record.
  The phases command the process equipment (welder, centrifuge, counter, sealer, incubator,
  scanner: their sim models) through the supervisor's command path (``behaviors/process.py``).
* Modelled: a phase's hands-on time is its duration in the process definition (the arm's
  motions are not simulated); the demand pattern (below); a failed batch is a batch whose product
  label cannot be read at one phase (the COI re-read fails, the real supervisor holds the
  batch) and which the operator then stops (``batch.stop`` by a supervisor user) after
  ``operator_response_h``; time-to-vein adds the release-testing lead of ``scheduling.yaml``.
* The master recipe: the configuration has only the shortened patient recipe
  (PATIENT-CART-SHORT, minutes for days). The twin builds a recipe of the same structure **in
  memory** whose one process phase runs the full process definition (default
  ``config/processes/cart-autologous.yaml``, ~10.5 days; ``time_scale`` < 1 scales every
  duration and window for tests). Being outside the configuration's approved master recipes,
  its batches are engineering runs (change control reported in each record, not enforced: not
  releasable) -- from admission on, the supervisor's own patient-batch path runs them.

Demand pattern
--------------
``patients`` N is the demand kept in the cell: N patients wait at t=0 and each batch that ends
(complete or failed) brings the next patient (a backlog of N). Admission control decides when
each is admitted (a slot, the projected arm/open-zone load); a refused patient is offered again
``admission_retry_h`` later or when a batch ends. Each patient's due date is its arrival plus
the target time-to-vein; a fraction ``failure_rate`` (seeded) fails at a random phase.

Time skipping (the rule)
------------------------
The supervisor is ticked at *events* only, never skipping one:

* ``min_step_s`` (1 s) after any tick in which something changed (a request filed, granted,
  released; a batch's state; a phase's own steps: identity steps done, a unit commanded, its
  result taken; a unit started or ended a run; the incubator door) -- the executive reacts on its
  next tick;
* else at the earliest of: the end of every working phase (its work start + duration), the end
  of a running line clearance, :meth:`Arbiter.next_change` (purge end, ageing, window warnings
  and misses, slot turnaround end), the next admission retry, an operator response due, the end
  of the day (the daily utilisation), the horizon, and **the process units' own next event**
  (``next_event()`` of the sim models: a welder/sealer/counter/centrifuge run's end, the incubator
  door closing after an access, and its T, CO2 and RH all back inside their alarm limits on the
  first-order recovery, computed in closed form) -- and at most ``max_step_s`` (1 h) after the last tick, so
  the supervisor still evaluates every device signal at least hourly while nothing happens;
* but ``busy_step_s`` (5 s) after the last tick when a model cannot foresee its next event (a
  fault injected in it) or the cell's own devices (isolator, VHP, autoclave) are not at rest.

Why this is sound: between two ticks no supervisor input changes except at the listed events.
The phases wait on time (their duration), on the arbiter (whose next change it reports), or on a
unit (whose run end, phase boundaries and climate recovery its model computes exactly); the
incubator's excursion watch (INC-04) sees the chamber out of limits at the tick after the door
closes and back in limits at the foreseen re-entry; while it is out, the incubator's next event is
at most its alarm on-delay + 1 s away, so an excursion longer than the delay is seen as one.
``stepping="busy"`` keeps the earlier rule (a
tick every 5 s while any unit works or the incubator recovers) as the reference:
``tests/unit/test_twin.py`` runs one scenario both ways and finds the same phases, in the same
order, with the same outcomes, grants and releases within 30 s.

Between two ticks the device models are advanced by the gap. They integrate with their own
substeps, per-instance parameters (isolator ``substep_s`` 0.1 s and ``particle_report_interval_s``,
autoclave 0.25 s, VHP 0.5 s, incubator 1 s; the incubator splits a step at its door's closing time
and its first-order updates are exact, so any bound gives the same climate). When the cell is
**at rest** -- the arm not moving, no fault injected in any model, and a 1 s probe step changes no
reading of the isolator, VHP and autoclave beyond a tolerance (a fixed point) -- the rest of the
gap is integrated with those parameters raised to the gap (:func:`coarse_substeps`, on the
instances): the models' own exact first-order updates, at a fixed point, give the same readings
(``tests/unit/test_twin.py`` checks coarse against fine stepping). Otherwise the gap is stepped
with the models' own substeps.

    cellctl twin --patients 16 --days 30 --json
    cellctl twin --patients 16 --days 30 --purge-min 3 --json
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import random
import re
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DAY = 86400.0
TWIN_RECIPE = "PATIENT-CART-TWIN"
BASE_RECIPE = "PATIENT-CART-SHORT"
OPERATOR = "op1"
SUPERVISOR_USER = "sup1"
_OPEN_ZONE = "GRADE_A_OPEN_ZONE"
_EVENT_MARGIN_S = 0.01
"""A tick this long after a unit's foreseen event, so the event has happened at the tick."""
_CLOCKS = ("t", "status.t")


@dataclass
class TwinParams:
    """One twin run (see the module docstring)."""

    patients: int = 16
    days: float = 30.0
    process: str = "cart-autologous"
    time_scale: float = 1.0
    """Every duration, window and hold of the process times this (< 1: a fast test)."""
    purge_min: float | None = None
    lc_min: float | None = None
    slots: int | None = None
    seed: int = 1
    failure_rate: float | None = None
    """Default: ``scheduling.yaml simulation.failure_rate``."""
    operator_response_h: float = 2.0
    admission_retry_h: float = 1.0
    min_step_s: float = 1.0
    busy_step_s: float = 5.0
    stepping: str = "event"
    """``event``: from one foreseen event to the next (module docstring); ``busy``: the reference
    rule, a tick every ``busy_step_s`` while any process unit works or recovers (tests compare)."""
    max_step_s: float = 3600.0
    rest_tolerance: float = 1e-6
    out_dir: str | None = None
    records_dir: str | None = None
    plots: bool = True


@dataclass
class _Patient:
    bid: str
    coi: str
    din: str
    arrival: float
    fail_phase: str | None
    admitted: float | None = None
    ended: float | None = None
    result: str = ""
    stop_due: float | None = None


@dataclass
class TwinStats:
    ticks: int = 0
    change_ticks: int = 0
    """ticks 1 s after a tick that changed something"""
    unit_ticks: int = 0
    """ticks at a process unit's foreseen event"""
    sampled_ticks: int = 0
    """ticks busy_step_s after the last (a unit that cannot foresee, or the cell not at rest)"""
    rest_steps: int = 0
    fine_steps: int = 0
    rest_s: float = 0.0
    fine_s: float = 0.0
    busy: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    purge_s: float = 0.0
    slot_s: float = 0.0
    daily: list[dict[str, float]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------- models
@dataclass
class _Saved:
    obj: Any
    attr: str
    value: float


def _coarse_targets(sim: Any, h: float) -> list[tuple[Any, str, float]]:
    """(model instance, step-size parameter, its value for a step of ``h`` at rest)."""
    out: list[tuple[Any, str, float]] = []
    iso = sim.isolator
    out.append((iso, "substep_s", max(iso.substep_s, h)))
    sample = getattr(iso, "_sample_time_s", None)
    sample_s = float(sample()) if callable(sample) else 0.0
    out.append((iso, "particle_report_interval_s", max(iso.particle_report_interval_s, min(h, sample_s))))
    for m in [*sim.models.values(), *getattr(sim, "process", {}).values()]:
        if m is not iso and isinstance(getattr(m, "substep_max_s", None), float):
            out.append((m, "substep_max_s", max(m.substep_max_s, h)))
    return out


@contextlib.contextmanager
def coarse_substeps(sim: Any, h: float) -> Iterator[None]:
    """For the duration: every model's own step-size parameter (an instance attribute: the
    isolator's ``substep_s``, the VHP's, autoclave's and incubator's ``substep_max_s``) raised to
    ``h``, and the isolator's particle counter reporting once per whole sample (the cell at rest
    only; module docstring). Module constants are not touched."""
    targets = _coarse_targets(sim, h)
    saved = [_Saved(o, a, getattr(o, a)) for o, a, _v in targets]
    try:
        for o, a, v in targets:
            setattr(o, a, v)
        yield
    finally:
        for sv in saved:
            setattr(sv.obj, sv.attr, sv.value)


def models_next_event(sim: Any) -> float:
    """Earliest next event (sim clock) the process-equipment models foresee (``next_event``):
    a run's end, the incubator door closing, its climate back in its alarm limits.
    ``sim.now()`` or earlier: a model cannot tell (a fault injected)."""
    t = math.inf
    for m in getattr(sim, "process", {}).values():
        ne = getattr(m, "next_event", None)
        if ne is not None:
            t = min(t, float(ne()))
    return t


def _readings(sim: Any) -> dict[str, Any]:
    """The readings of the cell's own devices (isolator, VHP, autoclave); the process equipment is
    left out: its models say when they next change (:func:`models_next_event`)."""
    out: dict[str, Any] = {}
    process = {id(m) for m in getattr(sim, "process", {}).values()}
    for dev, m in sim.models.items():
        if m is sim.arm or id(m) in process:  # arm: checked by at_rest (its sensors cost forward kinematics)
            continue
        for k, v in m.sensors().items():
            if k not in _CLOCKS and not k.endswith("elapsed_s"):  # clocks advance at rest
                out[f"{dev}.{k}"] = float(v) if isinstance(v, (float, np.floating)) else v
    return out


def _same(a: dict[str, Any], b: dict[str, Any], tol: float) -> bool:
    if a.keys() != b.keys():
        return False
    for k, va in a.items():
        vb = b[k]
        if isinstance(va, float) and isinstance(vb, float):
            if not (va == vb or abs(va - vb) <= tol * max(1.0, abs(va), abs(vb))
                    or (math.isnan(va) and math.isnan(vb))):
                return False
        elif isinstance(va, np.ndarray) or isinstance(vb, np.ndarray):
            if not np.array_equal(va, vb):
                return False
        elif va != vb:
            return False
    return True


def at_rest(sim: Any) -> bool:
    """The arm still and no fault injected in any model (the cheap part of the rest rule)."""
    if getattr(sim.arm, "moving", False):
        return False
    for m in [*sim.models.values(), *getattr(sim, "process", {}).values()]:
        faults = getattr(m, "faults", None)
        if faults is not None and hasattr(faults, "names") and list(faults.names()):
            return False
    return True


def probe_rest(sim: Any, stats: TwinStats, *, tol: float = 1e-6, probe_s: float = 1.0) -> bool:
    """Step ``probe_s`` with the models' own substeps; True when the cell is at rest (module docstring)."""
    if not at_rest(sim):
        sim.step(probe_s)
        stats.fine_s += probe_s
        return False
    before = _readings(sim)
    sim.step(probe_s)
    stats.fine_s += probe_s
    return _same(before, _readings(sim), tol)


def advance_models(sim: Any, dt: float, stats: TwinStats, *, tol: float = 1e-6, probe_s: float = 1.0,
                   rest: bool | None = None) -> None:
    """Advance the device models by ``dt`` (the rule of the module docstring); ``rest``: the
    cell was just found at rest (or not) by :func:`probe_rest`, no probe here."""
    if dt <= 0:
        return
    if rest is not None:
        if rest and at_rest(sim):
            with coarse_substeps(sim, dt):
                sim.step(dt)
            stats.rest_steps += 1
            stats.rest_s += dt
        else:
            sim.step(dt)
            stats.fine_steps += 1
            stats.fine_s += dt
        return
    if dt <= 2 * probe_s or not at_rest(sim):
        sim.step(dt)
        stats.fine_steps += 1
        stats.fine_s += dt
        return
    before = _readings(sim)
    sim.step(probe_s)
    if _same(before, _readings(sim), tol):
        with coarse_substeps(sim, dt - probe_s):
            sim.step(dt - probe_s)
        stats.rest_steps += 1
        stats.rest_s += dt - probe_s
        stats.fine_s += probe_s
    else:
        sim.step(dt - probe_s)
        stats.fine_steps += 1
        stats.fine_s += dt


# ---------------------------------------------------------------------------------------- recipe
def scaled_process(process: Any, scale: float, new_id: str) -> Any:
    """A copy of ``process`` with every duration, window, hold and t_out_max times ``scale``."""
    from .scheduling.process import ProcessDefinition

    def sec(v: float) -> str:  # a bare number would be read as minutes
        return f"{v * scale!r}s"

    d = process.model_dump(mode="python")
    d["id"] = new_id
    for k in ("t_out_max", "default_max_hold"):
        d[k] = sec(d[k])
    for ph in d["phases"]:
        ph["duration"] = sec(ph["duration"])
        if ph.get("max_hold") is not None:
            ph["max_hold"] = sec(ph["max_hold"])
        w = ph.get("window")
        if w:
            w["earliest"], w["latest"] = sec(w["earliest"]), sec(w["latest"])
    return ProcessDefinition.model_validate(d)


def twin_recipe(cfg: Any, process_id: str) -> Any:
    """The in-memory patient master recipe running ``process_id`` (module docstring)."""
    from .config.recipes import BatchRecipe

    base = cfg.recipes[BASE_RECIPE]
    d = base.model_dump(mode="python")
    d["id"] = TWIN_RECIPE
    d["status"] = "draft"
    d["description"] = f"Throughput twin: one patient's batch of process {process_id} (generated in memory)"
    ups = d["procedure"]["unit_procedures"]
    ph = ups[0]["operations"][0]["phases"][0]
    ph["params"] = {**ph.get("params", {}), "process": process_id}
    return BatchRecipe.model_validate(d)


# ---------------------------------------------------------------------------------------- twin
class Twin:
    """One twin run: ``Twin(config_dir, params).run()`` -> the report dict."""

    def __init__(self, config_dir: str | Path, params: TwinParams) -> None:
        from .config import load_config
        from .records import BatchRecord
        from .supervisor.runner import InProcessRun

        p = self.p = params
        if not 1 <= p.patients <= 64:
            raise ValueError(f"--patients must be 1..64, got {p.patients}")
        if not 0 < p.days <= 366:
            raise ValueError(f"--days must be in (0, 366], got {p.days}")
        if not 0 < p.time_scale <= 1:
            raise ValueError(f"time_scale must be in (0, 1], got {p.time_scale}")
        if p.stepping not in ("event", "busy"):
            raise ValueError(f"stepping must be 'event' or 'busy', got {p.stepping!r}")
        cfg = self.cfg = load_config(str(config_dir))
        if cfg.scheduling is None:
            raise ValueError("no scheduling.yaml in the configuration: the cell runs no patient batches")
        sch = cfg.scheduling
        if p.purge_min is not None:
            sch.changeover.t_purge_min = float(p.purge_min)
        if p.lc_min is not None:
            sch.changeover.t_line_clearance_min = float(p.lc_min)
        if p.slots is not None:
            sch.resources.incubator.slots = int(p.slots)
        base = cfg.processes.get(p.process)
        if base is None:
            raise ValueError(f"unknown process {p.process!r}; known: {sorted(cfg.processes)}")
        self.process = base if p.time_scale == 1 else scaled_process(base, p.time_scale, f"{base.id}-x{p.time_scale:g}")
        cfg.processes[self.process.id] = self.process
        self.recipe = twin_recipe(cfg, self.process.id)
        self.out = Path(p.out_dir) if p.out_dir else Path(tempfile.mkdtemp(prefix="aseptic_cell-twin-"))
        self.out.mkdir(parents=True, exist_ok=True)
        # the records: real hash-chained SQLite (WAL, synchronous FULL); on a RAM disk by default,
        # where their fsyncs cost little
        shm = Path("/dev/shm")
        rdir = Path(p.records_dir) if p.records_dir else (
            Path(tempfile.mkdtemp(prefix="aseptic_cell-twin-records-", dir=shm)) if shm.is_dir()
            else self.out / "records")
        rdir.mkdir(parents=True, exist_ok=True)
        self.records_dir = rdir

        class _Clock:  # record timestamps: wall time, strictly increasing
            def __init__(self) -> None:
                self.t = time.time()

            def now(self) -> float:
                self.t = max(self.t + 1e-6, time.time())
                return self.t

        self.run_ = InProcessRun(cfg, tick_s=p.max_step_s, record=BatchRecord(rdir / "cell-record.db", _Clock()))
        self.sim = self.run_.cell.sim
        self.sup = self.run_.sup
        assert self.sup.patient_cell is not None
        self.cell = self.sup.patient_cell
        self.arb = self.cell.arbiter
        self.rng = random.Random(p.seed)
        self.failure_rate = sch.simulation.failure_rate if p.failure_rate is None else p.failure_rate
        self.target = sch.admission.target_time_to_vein_days * DAY
        self.lead = sch.admission.release_lead_days * DAY
        self.horizon = p.days * DAY
        self.stats = TwinStats()
        self.patients: dict[str, _Patient] = {}
        self.queue: list[_Patient] = []
        self.next_admit = 0.0
        self.refusals: dict[str, int] = defaultdict(int)
        self.supervisor_refusals: list[dict[str, Any]] = []
        """Refusals other than admission control's (e.g. EQUIPMENT): the first ones, in the report."""
        self.verdict_note = ""
        self.cpu_s = 0.0
        self._n = 0
        self._yy = time.strftime("%y")
        self._live: set[int] = set()
        self._verdict: Any = None
        self._seen_requests = 0

    # ------------------------------------------------------------------ demand
    def _arrive(self, now: float) -> None:
        from .coi import make_din

        self._n += 1
        i = self._n
        manip = [ph.id for ph in self.process.run_phases() if ph.kind.value != "incubation" and ph.id != "receipt"]
        fail = self.rng.choice(manip) if self.rng.random() < self.failure_rate else None
        din = make_din("A9999", self._yy, f"{i:06d}").barcode_data
        self.queue.append(_Patient(f"T{i:04d}", f"COI-TWIN{i:04d}", din, now, fail))

    def _start(self, pt: _Patient) -> Any:
        """RunBatch of the twin recipe: the supervisor's checks (permission, record, change control as
        an engineering run), then the patient cell's own admission path."""
        from .config.change_control import batch_start_check
        from .results import CommandResult

        sup = self.sup
        _rule, denied = sup.signing.authorize(OPERATOR, "batch.start")
        if denied is not None:
            return denied
        if not sup.record_status()["complete"]:
            return CommandResult(False, "RECORD", f"record incomplete: {sup.record_status()['fault']}")
        if self._verdict is None:  # the configuration is fixed for the run: its verdict once (8 ms a call)
            self._verdict = batch_start_check(self.cfg, self.recipe, gmp=False)
        verdict = self._verdict
        self.verdict_note = verdict.reason
        return self.cell.run(self.recipe, self.process.id, pt.bid, OPERATOR, pt.coi, pt.din,
                             start_payload={**verdict.to_payload(), "twin": True})

    def _admit(self, now: float, force: bool = False) -> None:
        if not self.queue or (now < self.next_admit and not force):
            return
        self.next_admit = now + self.p.admission_retry_h * 3600.0
        if self.arb.free_slot(now) is None:  # admission control would refuse (no free slot): not offered;
            back = [t for t in self.arb.slot_free_at.values() if t > now]  # again when one is back from cleaning
            self.next_admit = min([self.next_admit, *back])
            self.refusals["not offered: no free incubator slot"] += 1
            return
        while self.queue:
            pt = self.queue[0]
            out = self._start(pt)
            if not out.accepted:
                self.refusals[f"{out.code}: {re.sub(r'[0-9]+', 'N', out.reason)[:80]}"] += 1
                if out.code != "ADMISSION":  # reported (report: admission_refusals); the patient waits
                    self.supervisor_refusals.append({"t": now, "batch": pt.bid, "code": out.code,
                                                     "reason": out.reason})
                return
            self.queue.pop(0)
            pt.admitted = now
            self.patients[pt.bid] = pt

    # ------------------------------------------------------------------ failures and ends
    def _inject_failures(self, now: float) -> None:
        g = self.cell.coi.genealogy
        for bid, pt in self.patients.items():
            ex = self.sup.patients.get(bid)
            if ex is None or not ex.active:
                continue
            if pt.fail_phase is not None and (ex.active_phase or "").rsplit("/", 1)[-1] == pt.fail_phase:
                for c in (f"BAG-{bid}", f"APH-{bid}"):  # the product's label cannot be read any more
                    if g.get(c) is not None:
                        self.cell.reader.no_reads[c] = 10**6
                pt.fail_phase = None
            if ex.sm.state.value == "Held" and pt.stop_due is None:
                pt.stop_due = now + self.p.operator_response_h * 3600.0
            if pt.stop_due is not None and now >= pt.stop_due and ex.sm.state.value == "Held":
                out = self.sup.batch_command("stop", SUPERVISOR_USER, reason="twin: failed batch, product label "
                                             "unreadable (COI-03); stopped for QA disposition", batch=bid)
                if not out.accepted:
                    raise RuntimeError(f"twin: stop of held batch {bid} refused: {out.code} {out.reason}")

    def _ends(self, now: float) -> bool:
        ended = False
        for bid, pt in self.patients.items():
            ex = self.sup.patients.get(bid)
            if pt.ended is None and ex is not None and ex.sm.state.final:
                pt.ended = now
                pt.result = "COMPLETE" if ex.sm.state.value == "Complete" else "FAILED"
                ended = True
                self._arrive(now)  # the backlog: the next patient
        return ended

    # ------------------------------------------------------------------ events
    def _phases(self) -> Iterator[Any]:
        """The running :class:`ProcessPhase` of every active batch (its tree is a Sequence with
        memory: the running phase is its current child)."""
        from py_trees.common import Status

        from .behaviors.process import ProcessPhase

        for ex in self.sup.patients.values():
            if not ex.active or ex.tree is None:
                continue
            pn = getattr(ex.tree, "current_child", None)  # PhaseNode(ProcessPhase)
            if pn is None or pn.status != Status.RUNNING:
                continue
            node = getattr(pn, "decorated", None)
            if isinstance(node, ProcessPhase) and node.status == Status.RUNNING:
                yield node

    def _live_requests(self) -> list[Any]:
        """The arbiter's requests not yet released or cancelled (requests are only ever added to its
        table, in id order; a released or cancelled one never changes again)."""
        reqs = self.arb.requests
        if len(reqs) > self._seen_requests:
            self._live.update(itertools.islice(reqs, self._seen_requests, None))
            self._seen_requests = len(reqs)
        ended = [rid for rid in self._live
                 if reqs[rid].released_at is not None or reqs[rid].state.value == "cancelled"]
        self._live.difference_update(ended)
        return [reqs[rid] for rid in self._live]

    def _signature(self) -> tuple[Any, ...]:
        """What calls for another tick soon: a request filed or released (the patient cell
        arbitrates at the start of its tick), a batch's state changed, a phase moved on in its
        own steps (identity steps done, a unit commanded, its result taken), a unit started or
        ended a run, the incubator door moved."""
        live = self._live_requests()
        phases = tuple((n.ex.batch_id, n.ph.id, n.steps_done, n.attempt, n.op_i, n.op_stage, len(n.handles),
                        n.t_work is None) for n in self._phases())
        units = tuple((getattr(m, "busy", None), getattr(m, "door_open", None))
                      for m in self.sim.process.values())
        return (len(self.arb.requests), tuple(sorted((r.id, r.state.value) for r in live)),
                tuple(ex.sm.state.value for ex in self.sup.patients.values()), phases, units)

    def _next_event(self, now: float) -> float:
        """The next time (twin time) anything could change (module docstring: the rule)."""
        t = self.horizon
        soon = now + self.p.min_step_s
        for node in self._phases():
            if node.rid is not None and self.arb.requests[node.rid].state.value == "waiting":
                continue  # its grant: Arbiter.next_change, or a release (a tick that changed something)
            if node.t_work is None:  # granted, identity steps (a scan answered, a re-read due): next tick
                t = min(t, soon)
                continue
            end = node.t_work + node.ph.duration
            if end > now:
                t = min(t, end)
            if node.op_i < len(node.ops):
                model = self.sim.process.get(node.ops[node.op_i])
                if node.op_stage != "running" or model is None or not getattr(model, "busy", False):
                    t = min(t, soon)  # a command answered, a result to take: next tick
                # else: the unit's run end is among the models' events
            elif end <= now:
                t = min(t, soon)
        for t0 in self.cell.lc_running.values():
            t = min(t, t0 + self.arb.t_lc)
        t = min(t, self.arb.next_change(now))
        if self.queue:
            t = min(t, self.next_admit)
        for pt in self.patients.values():
            if pt.stop_due is not None and pt.ended is None:
                t = min(t, pt.stop_due)
        return t

    def _account(self, t0: float, t1: float) -> None:
        from .scheduling.arbiter import LINE_CLEARANCE

        dt = t1 - t0
        if dt <= 0:
            return
        st = self.stats
        for r in self._live_requests():
            if r.granted_at is not None and r.released_at is None:
                for n in r.needs:
                    st.busy[n] += dt
                if r.phase == LINE_CLEARANCE:
                    st.busy["_lc"] += dt
        if self.arb.zone_ready_at > t0:
            st.purge_s += min(t1, self.arb.zone_ready_at) - t0
        st.slot_s += dt * (len(self.arb.slot_of) + sum(1 for f in self.arb.slot_free_at.values() if f > t0))

    # ------------------------------------------------------------------ run
    def run(self) -> dict[str, Any]:
        p, sim, sup = self.p, self.run_.cell.sim, self.sup
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for _ in range(p.patients):
            self._arrive(0.0)
        t_start = sim.now()
        self._admit(0.0, force=True)
        day_mark, day_busy = DAY, self._snapshot()
        changed = True
        while True:
            now = sim.now() - t_start
            if now >= self.horizon - 1e-9:
                break
            rest: bool | None = None
            if changed:
                nxt = now + p.min_step_s
                self.stats.change_ticks += 1
            else:  # the probe second: the cell's own devices at rest or not
                self._account(now, now + 1.0)
                rest = probe_rest(sim, self.stats, tol=p.rest_tolerance)
                now = sim.now() - t_start
                unit = models_next_event(sim) - t_start  # the process equipment's own next event
                if p.stepping == "busy" and unit < math.inf:
                    unit = now  # the reference rule: every busy_step_s while a unit works or recovers
                nxt = self._next_event(now)
                if unit <= now + 1e-9 or not rest:  # a unit that cannot tell, or a transient: sample
                    if now + p.busy_step_s < nxt:
                        nxt = now + p.busy_step_s
                        self.stats.sampled_ticks += 1
                elif unit + _EVENT_MARGIN_S < nxt:
                    nxt = unit + _EVENT_MARGIN_S
                    self.stats.unit_ticks += 1
            nxt = min(max(nxt, now + p.min_step_s), now + p.max_step_s, self.horizon)
            if now < day_mark - 1e-9:
                nxt = min(nxt, day_mark)  # a tick at each day's end: the daily utilisation is exact
            self._account(now, nxt)
            advance_models(sim, nxt - now, self.stats, tol=p.rest_tolerance, rest=rest)
            now = sim.now() - t_start
            before = self._signature()
            self._inject_failures(now)
            sup.tick()
            self.stats.ticks += 1
            if self._ends(now):
                self._admit(now, force=True)
            else:
                self._admit(now)
            changed = self._signature() != before
            while now >= day_mark - 1e-9:
                snap = self._snapshot()
                self.stats.daily.append({k: (snap[k] - day_busy.get(k, 0.0)) / DAY for k in snap})
                day_busy, day_mark = snap, day_mark + DAY
        wall, self.cpu_s = time.perf_counter() - wall0, time.process_time() - cpu0
        return self._report(wall)

    def _snapshot(self) -> dict[str, float]:
        st = self.stats
        lc = 0.0 if _OPEN_ZONE in self.arb.lc_needs else st.busy.get("_lc", 0.0)  # counted once
        return {"arm": st.busy.get("ARM", 0.0), "open_zone": st.busy.get(_OPEN_ZONE, 0.0) + st.purge_s + lc,
                "slots": st.slot_s / max(1, len(self.cell.resources.slots))}

    # ------------------------------------------------------------------ report
    def _report(self, wall: float) -> dict[str, Any]:

        T, st, arb = self.horizon, self.stats, self.arb
        lc_s = st.busy.get("_lc", 0.0)
        zone_held = st.busy.get(_OPEN_ZONE, 0.0)
        # the zone's changeover: its line clearance (holding the zone, when lc_needs lists it) and purge
        lc_in_zone = _OPEN_ZONE in arb.lc_needs
        lc_extra = 0.0 if lc_in_zone else lc_s
        nslots = len(self.cell.resources.slots)
        util = {r: round(v / T, 4) for r, v in sorted(st.busy.items()) if v > 0 and r != "_lc"}
        util_main = {"arm": round(st.busy.get("ARM", 0.0) / T, 4),
                     "open_zone": round((zone_held + lc_extra + st.purge_s) / T, 4),
                     "slots": round(st.slot_s / (T * nslots), 4)}
        breakdown = {"open_zone_product_s": round(zone_held - (lc_s if lc_in_zone else 0.0)),
                     "line_clearance_s": round(lc_s),
                     "purge_wait_s": round(st.purge_s)}
        candidates = {"arm": util_main["arm"], "open_zone": util_main["open_zone"], "slots": util_main["slots"]}
        candidates.update({k: v for k, v in util.items() if k not in ("ARM", _OPEN_ZONE, "VHP")})
        bottleneck = max(candidates, key=lambda k: candidates[k])
        done = [pt for pt in self.patients.values() if pt.result == "COMPLETE"]
        failed = [pt for pt in self.patients.values() if pt.result == "FAILED"]
        ttv = sorted((pt.ended - pt.arrival + self.lead) / DAY for pt in done if pt.ended is not None)
        run = self.process.nominal_duration()
        warm = min(run + DAY, T / 2)
        late = [pt for pt in done if pt.ended is not None and pt.ended >= warm]
        per_year = len(late) / ((T - warm) / DAY) * 365 if T > warm else 0.0
        batches = []
        for bid, pt in self.patients.items():
            ex = self.sup.patients.get(bid)
            batches.append({"batch_id": bid, "coi": pt.coi, "slot": ex.slot if ex else None,
                            "state": ex.sm.state.value if ex else "", "arrival_s": pt.arrival,
                            "admitted_s": pt.admitted, "ended_s": pt.ended,
                            "time_to_vein_days": round((pt.ended - pt.arrival + self.lead) / DAY, 3)
                            if pt.result == "COMPLETE" and pt.ended is not None else None,
                            "due_met": (pt.ended - pt.arrival + self.lead) <= self.target
                            if pt.result == "COMPLETE" and pt.ended is not None else None,
                            "held_reason": ex.held_reason if ex else "",
                            "record": str(getattr(ex.record, "path", "")) if ex else ""})

        def q(pct: float) -> float | None:
            return round(ttv[min(len(ttv) - 1, int(pct * len(ttv)))], 2) if ttv else None

        ch = self.cfg.scheduling.changeover
        report: dict[str, Any] = {
            "patients": self.p.patients, "days": self.p.days,
            "batches_admitted": len(self.patients), "batches_completed": len(done),
            "batches_failed": len(failed),
            "batches_in_progress": sum(1 for pt in self.patients.values() if pt.ended is None),
            "waiting_admission": len(self.queue),
            "time_to_vein_days": {"n": len(ttv), "median": round(statistics.median(ttv), 2) if ttv else None,
                                  "p90": q(0.9), "max": round(ttv[-1], 2) if ttv else None,
                                  "min": round(ttv[0], 2) if ttv else None,
                                  "within_target": sum(t <= self.target / DAY for t in ttv)},
            "utilisation": util_main, "utilisation_by_resource": util, "open_zone_breakdown": breakdown,
            "daily_utilisation": [{k: round(v, 4) for k, v in d.items()} for d in st.daily],
            "bottleneck": bottleneck, "batches_per_year": round(per_year, 1),
            "batches_per_year_basis": f"completions after a warm-up of {warm / DAY:.1f} d, per day x 365",
            "segregation_violations": list(self.cell.violations),
            "admission_refusals": dict(self.refusals),
            "supervisor_refusals": self.supervisor_refusals[:20],
            "plots": [], "wall_s": round(wall, 2), "cpu_s": round(self.cpu_s, 2), "sim_s": round(T, 1),
            "speedup": round(T / wall, 1) if wall > 0 else None,
            "parameters": {"process": self.process.id, "time_scale": self.p.time_scale, "slots": nslots,
                           "t_purge_min": ch.t_purge_min, "t_line_clearance_min": ch.t_line_clearance_min,
                           "t_stable_min": ch.t_stable_min, "failure_rate": self.failure_rate,
                           "seed": self.p.seed, "recipe": TWIN_RECIPE, "change_control": self.verdict_note},
            "engine": {"supervisor_ticks": st.ticks, "ticks_after_a_change": st.change_ticks,
                       "ticks_at_unit_events": st.unit_ticks, "ticks_sampled": st.sampled_ticks,
                       "rest_steps": st.rest_steps, "fine_steps": st.fine_steps,
                       "rest_sim_s": round(st.rest_s), "fine_sim_s": round(st.fine_s)},
            "batches": batches, "out_dir": str(self.out), "records_dir": str(self.records_dir),
        }
        if self.p.plots:
            report["plots"] = write_plots(self, report)
        (self.out / "twin.json").write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
        return report


# ---------------------------------------------------------------------------------------- plots
def write_plots(twin: Twin, report: dict[str, Any]) -> list[str]:
    """Utilisation (overall bars + per day) and the schedule (Gantt), PNG and SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .scheduling.arbiter import LINE_CLEARANCE

    out = twin.out
    paths: list[str] = []
    u = report["utilisation"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [1, 2]})
    names = ["arm", "open_zone", "slots"]
    a1.bar(names, [u[n] for n in names], color=["#4c72b0", "#c44e52", "#55a868"])
    a1.set_ylim(0, 1.05)
    a1.set_ylabel("fraction of time")
    a1.set_title(f"utilisation, bottleneck: {report['bottleneck']}")
    days = list(range(1, len(twin.stats.daily) + 1))
    for n, c in zip(names, ["#4c72b0", "#c44e52", "#55a868"], strict=True):
        a2.plot(days, [d[n] for d in twin.stats.daily], marker=".", color=c, label=n)
    a2.set_ylim(0, 1.05)
    a2.set_xlabel("day")
    a2.set_title("daily utilisation (open zone incl. line clearance and purge wait)")
    a2.legend(loc="lower right")
    fig.tight_layout()
    for ext in ("png", "svg"):
        p = out / f"twin_utilisation.{ext}"
        fig.savefig(p)
        paths.append(str(p))
    plt.close(fig)

    bids = list(twin.patients)
    fig, ax = plt.subplots(figsize=(12, max(3.0, 0.3 * len(bids) + 1.5)))
    row = {b: i for i, b in enumerate(bids)}
    zone_row = len(bids)
    bars: dict[tuple[int, str, float], list[tuple[float, float]]] = defaultdict(list)
    for b, pt in twin.patients.items():
        if pt.admitted is not None:
            end = pt.ended if pt.ended is not None else twin.horizon
            bars[(row[b], "#f2b8b8" if pt.result == "FAILED" else "#dddddd", 0.8)].append(
                (pt.admitted / DAY, (end - pt.admitted) / DAY))
    for r in twin.arb.requests.values():
        if r.granted_at is None:
            continue
        start = r.granted_at / DAY
        end = (r.released_at if r.released_at is not None else twin.horizon) / DAY
        if r.phase == LINE_CLEARANCE:
            bars[(zone_row, "#8172b2", 0.8)].append((start, end - start))
            bars[(zone_row, "#ccb974", 0.8)].append((end, twin.arb.t_purge / DAY))
            continue
        is_open = _OPEN_ZONE in r.needs
        if r.batch in row:
            bars[(row[r.batch], "#c44e52" if is_open else "#4c72b0", 0.5)].append((start, end - start))
        if is_open:
            bars[(zone_row, "#c44e52", 0.8)].append((start, end - start))
    for (y, color, hgt), spans in bars.items():  # one collection per row and colour
        ax.broken_barh(spans, (y - hgt / 2, hgt), facecolors=color, edgecolor="none")
    ax.set_yticks(list(range(len(bids) + 1)), [*bids, "open zone"])
    ax.set_xlim(0, twin.horizon / DAY)
    ax.invert_yaxis()
    ax.set_xlabel("day")
    ax.set_title("schedule: batch in the cell (grey), open phases (red), closed hands-on (blue), "
                 "line clearance (purple), purge wait (olive)", fontsize=9)
    fig.tight_layout()
    for ext in ("png", "svg"):
        p = out / f"twin_schedule.{ext}"
        fig.savefig(p)
        paths.append(str(p))
    plt.close(fig)
    return paths


# ---------------------------------------------------------------------------------------- CLI
def run_twin_cli(config_dir: str, params: TwinParams, *, json_out: bool) -> int:
    try:
        twin = Twin(config_dir, params)
    except ValueError as exc:
        msg = {"result": "INVALID", "error": str(exc)}
        print(json.dumps(msg) if json_out else f"INVALID: {exc}")
        return 2
    rep = twin.run()
    if json_out:
        slim = {k: v for k, v in rep.items() if k != "batches"}
        slim["batches"] = rep["batches"]
        print(json.dumps(slim, default=str))
    else:
        t = rep["time_to_vein_days"]
        print(f"{rep['days']:g} days, demand {rep['patients']} patients, {rep['parameters']['slots']} slots, "
              f"purge {rep['parameters']['t_purge_min']:g} min")
        print(f"  batches: {rep['batches_completed']} completed, {rep['batches_failed']} failed, "
              f"{rep['batches_in_progress']} in progress, {rep['waiting_admission']} waiting admission")
        print(f"  time to vein (days): median {t['median']}, p90 {t['p90']}, max {t['max']}")
        print(f"  utilisation: {rep['utilisation']}  bottleneck: {rep['bottleneck']}")
        print(f"  batches/year: {rep['batches_per_year']}  ({rep['sim_s']:.0f} sim s in {rep['wall_s']} s wall)")
        for p in rep["plots"]:
            print(f"  plot: {p}")
    return 0 if not rep["segregation_violations"] else 1


__all__ = ["Twin", "TwinParams", "advance_models", "coarse_substeps", "models_next_event", "run_twin_cli",
           "scaled_process", "twin_recipe"]
