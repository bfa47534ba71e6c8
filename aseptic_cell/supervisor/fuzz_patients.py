"""Random commands, faults, misreads and mismatched containers against >= 4 concurrent patient
batches on the in-process cell, with the segregation, chain-of-identity and Annex 1 invariants
checked after every step (issue 14 must-show; tests/unit/test_patients_stateful.py).

A whole campaign of ``PATIENTS`` batches of PATIENT-CART-SHORT (distinct COIs and DINs) is run
once on the in-process cell with its process equipment; the whole cell + supervisor + monitors
are captured each time the *mix* changes (how many batches are open, closed, incubating,
waiting, held, ended; the open-zone owner; a line clearance running; the purge wait) and every
``every_s`` within a mix, at most one per ``min_gap_s`` (:class:`CampaignSnapshots`), plus an
excursion variant (a cell-wide trip injected) of every open phase of every batch. A sequence
starts from a copy of one snapshot (:meth:`PatientFuzzCell.clone`, the copy machinery of
:mod:`.fuzz`), so the random steps hit every mix of open, closed, incubating, waiting,
line-clearance and purge-wait batches.

The patient batches' records are :class:`MemoryRecord`: the record's own append rules (kinds,
attributable actor, JSON-safe payload, hash chain with the record's hash function) in memory,
so a sequence's copy is cheap. For fuzzing only; the product writes SQLite/PostgreSQL records.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from ..coi import encode_label
from ..coi.isbt128 import make_din
from ..config import CellConfig
from ..records.canonical import GENESIS_HASH, canonical_json, entry_hash, iso_utc
from ..records.store import KINDS, Entry
from .executive import CoiStampedRecord
from .fuzz import FAULTS, OPERATOR_COMMANDS, PASSWORDS, deep_clone, detached, shared_parts
from .invariants import InvariantMonitor, SegregationMonitor
from .runner import InProcessRun

RECIPE = "PATIENT-CART-SHORT"
PATIENTS = 4
"""Concurrent patient batches of the campaign (issue 14: >= 4)."""


def patient(i: int) -> tuple[str, str, str]:
    """(batch id, COI, apheresis DIN with its ISO 7064 Mod 37-2 check) of the ``i``-th patient."""
    return f"P-{i + 1}", f"COI-FUZZ{i + 1:04d}", str(make_din("A9999", "26", f"{i + 1:06d}"))


PATIENT_COMMANDS: list[tuple[str, str]] = [
    ("hold", "op1"), ("restart", "sup1"), ("restart", "op1"), ("pause", "op1"), ("resume", "op1"),
    ("stop", "sup1"), ("abort", "qa1"), ("reset", "sup1"),
]
"""Batch commands to one patient batch, signed where users.yaml asks (op1's restart: refused role)."""
PROCESS_FAULTS: list[tuple[str, str]] = [
    ("INC1", "heater_failure"), ("INC1", "door_stuck_open"), ("INC1", "co2_supply_failure"),
    ("WLD1", "misalignment"), ("SEAL1", "heater_failure"), ("CFG1", "imbalance"),
    ("WLD1", "comm_loss"), ("INC1", "comm_loss"),
]
ALL_FAULTS: list[tuple[str, str]] = [*FAULTS, *PROCESS_FAULTS]
MISREADS = (1, 2, 99)
"""A damaged label: that many reads of the batch's product fail before one succeeds (99: never)."""


class _Entries(list[Entry]):
    """A record's entries: immutable, so a copy of the record shares them (a shallow copy of the list).
    (No ``__deepcopy__`` on the record itself: the COI-stamping wrapper would delegate to it.)"""

    def __deepcopy__(self, memo: dict[int, Any]) -> _Entries:
        return _Entries(self)


class MemoryRecord:
    """A batch record in memory (see the module docstring): same entry kinds, same checks on
    append, same hash chain; entries are immutable and shared between copies."""

    def __init__(self, clock: Any) -> None:
        self._clock = clock
        self._entries = _Entries()

    def append(self, kind: str, *, batch_id: str, actor: str, role: str = "", action: str = "",
               reason: str = "", payload: Mapping[str, Any] | None = None) -> Entry:
        if kind not in KINDS:
            raise ValueError(f"unknown record kind {kind!r}")
        for name, value in (("batch_id", batch_id), ("actor", actor), ("role", role), ("action", action),
                            ("reason", reason)):
            if not isinstance(value, str):
                raise ValueError(f"{name} must be a string, got {type(value).__name__}")
        if not actor.strip():
            raise ValueError("actor must name a user id or 'system' (ALCOA+: attributable)")
        body = dict(payload or {})
        payload_json = canonical_json(body)
        ts = float(self._clock.now())
        ts_iso = iso_utc(ts)
        seq = len(self._entries) + 1
        prev = self._entries[-1].hash if self._entries else GENESIS_HASH
        digest = entry_hash(seq, ts, ts_iso, batch_id, kind, actor, role, action, reason, payload_json, prev)
        e = Entry(seq, ts, ts_iso, batch_id, kind, actor, role, action, reason, body, payload_json, prev, digest)
        self._entries.append(e)
        return e

    def record_cycle_result(self, kind: str, result: Mapping[str, Any], *, batch_id: str, actor: str = "system",
                            role: str = "") -> Entry:
        verdict = str(result.get("result", "")).lower()
        return self.append("cycle_result", batch_id=batch_id, actor=actor, role=role,
                           action=f"{kind}.cycle_{verdict}", payload={"cycle": kind, **dict(result)})

    def entries(self, batch_id: str | None = None, kinds: Iterable[str] | None = None) -> list[Entry]:
        ks = None if kinds is None else set(kinds)
        return [e for e in self._entries
                if (batch_id is None or e.batch_id == batch_id) and (ks is None or e.kind in ks)]

    def since(self, n: int) -> list[Entry]:
        """The entries after the first ``n`` (the monitors read only what is new)."""
        return self._entries[n:]

    def head(self) -> tuple[int, str]:
        return (len(self._entries), self._entries[-1].hash) if self._entries else (0, GENESIS_HASH)

    def health(self) -> str:
        return ""

    def __len__(self) -> int:
        return len(self._entries)


def _copy_stamped(x: CoiStampedRecord, memo: dict[int, Any]) -> CoiStampedRecord:
    """The COI-stamping record wrapper delegates unknown attributes to its record (``__deepcopy__``,
    ``__setstate__`` too): copy its own fields."""
    y = CoiStampedRecord.__new__(CoiStampedRecord)
    memo[id(x)] = y
    y.__dict__.update(copy.deepcopy(x.__dict__, memo))
    return y


class PatientCoverage:
    """What the sequences reached: per-batch phase/state checks, mixes of open/closed/incubating
    batches, faults, misreads and mismatches that fired, holds and COI-30 stops."""

    def __init__(self) -> None:
        self.phases: Counter[str] = Counter()
        self.states: Counter[str] = Counter()
        self.mixes: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        self.start_mixes: Counter[str] = Counter()

    def count(self, f: PatientFuzzCell) -> None:
        self.mixes[f.mix()] += 1
        sup = f.sup
        for ex in sup.patients.values():
            ph = (ex.active_phase or "").rsplit("/", 1)[-1] or f"<{ex.sm.state.value}>"
            self.phases[ph] += 1
            self.states[ex.sm.state.value] += 1
        pc = sup.patient_cell
        if pc is not None:
            if pc.lc_running:
                self.events["line clearance running"] += 1
            if f.purge_wait():
                self.events["purge wait"] += 1
            if len(pc.open_now) == 1 and sum(1 for ex in sup.patients.values() if ex.active) >= 2:
                self.events["one open, others closed/incubating"] += 1

    def sequence_done(self, f: PatientFuzzCell) -> None:
        """At the end of a sequence: what its monitor met since the copy was taken."""
        self.events.update(f.seg.seen - f.seen0)
        eng = f.sup.engine
        self.events["interlock evaluations, incremental"] += eng.incremental_evaluations - f.engine0[0]
        self.events["interlock evaluations, full"] += eng.full_evaluations - f.engine0[1]

    def merge(self, other: PatientCoverage) -> None:
        for a, b in ((self.phases, other.phases), (self.states, other.states), (self.mixes, other.mixes),
                     (self.events, other.events), (self.start_mixes, other.start_mixes)):
            a.update(b)

    def table(self) -> str:
        rows = [f"mixes (open/closed/incubating/waiting/held/ended batches): {len(self.mixes)} distinct"]
        rows += [f"  {k:40s} {v:9d}" for k, v in self.mixes.most_common(12)]
        rows += ["patient phases (invariant checks, summed over batches):"]
        rows += [f"  {k:28s} {v:9d}" for k, v in sorted(self.phases.items())]
        rows += ["batch states:"] + [f"  {k:28s} {v:9d}" for k, v in sorted(self.states.items())]
        rows += ["events that fired:"] + [f"  {k:44s} {v:9d}" for k, v in sorted(self.events.items())]
        return "\n".join(rows)


class PatientFuzzCell:
    """One sequence: cell + supervisor (patient batches) + the Annex 1 and segregation monitors."""

    _engines: dict[int, Any] = {}

    def __init__(self, cfg: CellConfig, users: Any, *, tick_s: float = 10.0,
                 coverage: PatientCoverage | None = None) -> None:
        from ..interlocks import InterlockEngine

        engine = self._engines.get(id(cfg))
        if engine is None:
            engine = self._engines[id(cfg)] = InterlockEngine.from_config(cfg, lambda: 0.0)
        self.cfg, self.users = cfg, users
        self.run = InProcessRun(cfg, tick_s=tick_s, users=users, check_mode="samples", engine=engine)
        self.sup, self.cell = self.run.sup, self.run.cell
        assert self.sup.patient_cell is not None, "no scheduling.yaml: no patient batches"
        clock = self.sup.clock
        self.sup.patient_cell.record_factory = lambda batch_id: MemoryRecord(clock)
        self.mon = InvariantMonitor(self.cell, self.sup)
        self.seg = SegregationMonitor(self.sup)
        self.coverage = coverage
        self.seen0: Counter[str] = Counter()
        self.engine0 = (0, 0, 0)
        """The interlock engine's (incremental, full evaluations, incremental mismatches) when
        this copy was taken: :attr:`violations` names a mismatch found since."""
        self.coarse = False
        """Step the device models by the twin's rest rule in :meth:`advance` (:meth:`tick`)."""
        self.rest_s = self.fine_s = 0.0
        self._checked()

    # ------------------------------------------------------------------ copies
    def _shared(self) -> list[Any]:
        """What every copy shares (immutable or not part of the state): the configuration, the
        collision scene, the users, the compiled alarm conditions and interlock rules."""
        return shared_parts(self.sup, self.cfg, self.cell.scene, self.users)

    def freeze(self) -> bytes:
        """This cell, supervisor and monitors as bytes (:mod:`.fuzz_pickle`): :meth:`thaw` makes
        an independent copy in ~6 ms CPU, against ~25-45 ms for :meth:`clone`."""
        from .fuzz_pickle import freeze

        with detached(self):
            return freeze(self, self._shared(), by_state=(CoiStampedRecord,), immutable_lists=(_Entries,))

    @staticmethod
    def thaw(data: bytes, coverage: PatientCoverage | None = None) -> PatientFuzzCell:
        from .fuzz_pickle import thaw

        twin: PatientFuzzCell = thaw(data)
        twin.coverage = coverage
        twin.seen0 = Counter(twin.seg.seen)
        twin.engine0 = twin._engine_counts()
        return twin

    def clone(self, coverage: PatientCoverage | None = None) -> PatientFuzzCell:
        dispatch: Any = copy._deepcopy_dispatch  # type: ignore[attr-defined]
        with detached(self):
            try:
                dispatch[CoiStampedRecord] = _copy_stamped
                twin: PatientFuzzCell = deep_clone(self, self._shared())
            finally:
                dispatch.pop(CoiStampedRecord, None)
        twin.coverage = coverage
        twin.seen0 = Counter(twin.seg.seen)
        twin.engine0 = twin._engine_counts()
        return twin

    def _attach(self) -> None:
        bp = getattr(getattr(self.sup, "operator", None), "bypasses", None)
        if bp is not None:
            self.sup.engine.bypass = bp

    # ------------------------------------------------------------------ what a step is
    def _engine_counts(self) -> tuple[int, int, int]:
        eng = self.sup.engine
        return eng.incremental_evaluations, eng.full_evaluations, eng.incremental_mismatches

    @property
    def violations(self) -> list[str]:
        found = [*self.mon.violations, *self.seg.violations]
        mismatches = self.sup.engine.incremental_mismatches - self.engine0[2]
        if mismatches:
            found.append(f"interlock engine: {mismatches} incremental verdict(s) differ from the periodic full "
                         "evaluation (InterlockEngine.incremental_mismatches)")
        return found

    def _checked(self) -> None:
        self.mon.check()
        self.seg.check()
        if self.coverage is not None:
            self.coverage.count(self)

    def batch_ids(self) -> list[str]:
        return list(self.sup.patients)

    def _batch(self, b: int) -> Any:
        ids = self.batch_ids()
        return self.sup.patients[ids[b % len(ids)]] if ids else None

    def start(self, i: int) -> None:
        """RunBatch of the ``i``-th patient (refused if it already ran: INVALID; or a slot is missing)."""
        bid, coi, din = patient(i % (PATIENTS + 2))
        self._attach()
        self.sup.run_batch(RECIPE, bid, "op1", coi=coi, din=din)
        self._checked()

    def operate(self, i: int) -> None:
        node, cmd, args, user = OPERATOR_COMMANDS[i % len(OPERATOR_COMMANDS)]
        self._attach()
        self.sup.operate(node, cmd, dict(args), user, "fuzz")
        self._checked()

    def batch(self, i: int, b: int) -> None:
        """A batch command to one patient batch, with the user's signature."""
        cmd, user = PATIENT_COMMANDS[i % len(PATIENT_COMMANDS)]
        ex = self._batch(b)
        self._attach()
        if ex is not None:
            out = self.sup.batch_command(cmd, user, PASSWORDS.get(user, ""), "responsibility", "fuzz",
                                         batch=ex.batch_id)
            if out.accepted and self.coverage is not None:
                self.coverage.events[f"batch {cmd} accepted"] += 1
        self._checked()

    def fault(self, i: int, clear: bool = False) -> None:
        dev, fault = ALL_FAULTS[i % len(ALL_FAULTS)]
        try:
            if clear:
                self.cell.clear_fault(dev, fault)
            else:
                self.cell.inject_fault(dev, fault)
        except Exception as exc:  # noqa: BLE001 - a fault this cell has no device for is a finding
            raise AssertionError(f"fault {dev}:{fault} not injectable: {exc}") from exc
        if self.coverage is not None and not clear:
            self.coverage.events[f"fault {dev}:{fault}"] += 1

    def misread(self, b: int, n: int) -> None:
        """The product label of batch ``b`` fails to decode ``MISREADS[n]`` times (COI-03)."""
        ex = self._batch(b)
        pc = self.sup.patient_cell
        if ex is None or pc is None:
            return
        pc.reader.no_reads[self.product(ex)] = MISREADS[n % len(MISREADS)]
        if self.coverage is not None:
            self.coverage.events["misread injected"] += 1

    def mismatch(self, b: int, other: int, wait_s: float = 300.0) -> None:
        """Another patient's container is presented where running batch ``b``'s next step scans its
        product (at the product's location and at every work position: wherever the next read is);
        then time passes until that read (at most ``wait_s``)."""
        pc = self.sup.patient_cell
        running = [ex for ex in self.sup.patients.values() if ex.sm.state.value == "Running"]
        if not running or pc is None:
            return
        ex = running[b % len(running)]
        others = [o for o in self.sup.patients.values() if o.coi != ex.coi]
        if not others:
            return
        ox = others[other % len(others)]
        label = encode_label(ox.coi, self.product(ox), ox.din)
        mine = self.product(ex)
        c = pc.coi.genealogy.get(mine)
        where = {c.location} if c is not None and c.location else set()
        from .patients import WORK_POSITIONS

        keys = {(mine, loc) for loc in (*where, *WORK_POSITIONS)}
        for k in keys:
            pc.reader.presented[k] = label
        self.seg.expect_mismatch(mine, ex.batch_id, keys)
        if self.coverage is not None:
            self.coverage.events["mismatched container presented"] += 1
        end = self.run.now() + wait_s
        while self.run.now() < end and all(k in pc.reader.presented for k in keys) and ex.active:
            self.advance(self.run.tick_s)

    def excursion(self) -> None:
        """A cell-wide trip (grade A particle action limit, IL-12): INT-01 and SEG-06."""
        self._attach()
        self.sup.hold_on_trip("fuzz: grade A particle action limit", source="IL-12")
        if self.coverage is not None:
            self.coverage.events["cell-wide trip (excursion)"] += 1
        self._checked()

    def restart_held(self, b: int) -> None:
        """A supervisor's signed restart of the ``b``-th held batch (refused if a COI-30 stopped it)."""
        held = [ex for ex in self.sup.patients.values() if ex.sm.state.value == "Held"]
        if held:
            self.batch(PATIENT_COMMANDS.index(("restart", "sup1")), list(self.sup.patients).index(
                held[b % len(held)].batch_id))

    def advance(self, seconds: float) -> None:
        self._attach()
        end = self.run.now() + seconds
        while self.run.now() < end - 1e-9:
            self.tick()
            self._checked()

    def tick(self) -> None:
        """One supervisor tick (:meth:`InProcessRun.tick_once`). With :attr:`coarse`, the device
        models between two ticks are stepped by the twin's rest rule (:func:`aseptic_cell.twin.
        advance_models`, checked there against fine stepping): when the arm is still, no fault is
        injected in any model, no process unit foresees an event within the tick and a 1 s probe
        with the models' own substeps changes no reading, the rest of the tick is one step with the
        substep bound raised; otherwise, or when the probe sees a change, the models' own substeps
        in the runner's ``step_s`` chunks. The supervisor then ticks as in the runner."""
        run = self.run
        if not self.coarse:
            run.tick_once()
            return
        from ..twin import TwinStats, advance_models, at_rest, models_next_event, probe_rest

        dt = run.tick_period()
        sim = self.cell.sim
        fine = dt
        if dt > 2.0 and at_rest(sim) and models_next_event(sim) >= sim.now() + dt:
            stats = TwinStats()
            if probe_rest(sim, stats, probe_s=1.0):
                advance_models(sim, dt - 1.0, stats, rest=True)
                self.rest_s += dt - 1.0
                fine = 0.0
            else:
                fine = dt - 1.0
            self.fine_s += 1.0
        self.fine_s += fine
        while fine > 1e-9:
            h = min(run.step_s, fine)
            self.cell.step(h)
            fine -= h
        for hook in tuple(run.hooks):
            hook(run)
        self.sup.tick()

    # ------------------------------------------------------------------ observation
    def product(self, ex: Any) -> str:
        g = self.sup.patient_cell.coi.genealogy  # type: ignore[union-attr]
        return f"BAG-{ex.batch_id}" if g.get(f"BAG-{ex.batch_id}") is not None else f"APH-{ex.batch_id}"

    def purge_wait(self) -> bool:
        pc = self.sup.patient_cell
        return pc is not None and pc.arbiter.zone_owner is None and self.run.now() < pc.arbiter.zone_ready_at

    def mix(self) -> str:
        """How many batches are open / closed / incubating / waiting / held / ended."""
        c: Counter[str] = Counter()
        pc = self.sup.patient_cell
        for ex in self.sup.patients.values():
            st = ex.sm.state.value
            if ex.sm.state.final:
                c["ended"] += 1
            elif st != "Running":
                c["held" if st in ("Held", "Holding") else "other"] += 1
            elif pc is not None and ex.batch_id in pc.open_now:
                c["open"] += 1
            else:
                kind = ex.phase_kind(ex.active_phase or "")
                rid = ex.requests.get((ex.active_phase or "").rsplit("/", 1)[-1])
                waiting = rid is not None and pc is not None and rid in pc.arbiter.requests and \
                    pc.arbiter.requests[rid].state.value == "waiting"
                c["waiting" if waiting else ("incubating" if kind == "incubation" else "closed")] += 1
        return " ".join(f"{k}={c[k]}" for k in ("open", "closed", "incubating", "waiting", "held", "ended", "other")
                        if c[k])

    def key(self) -> tuple[Any, ...]:
        """What a snapshot boundary is: the mix, the open-zone owner, a line clearance, the purge wait."""
        pc = self.sup.patient_cell
        assert pc is not None
        return (self.mix(), pc.arbiter.zone_owner, bool(pc.lc_running), self.purge_wait())


class CampaignSnapshots:
    """Snapshots of one campaign of ``PATIENTS`` batches (see the module docstring)."""

    _cache: dict[tuple[int, float], CampaignSnapshots] = {}

    def __init__(self, cfg: CellConfig, users: Any, *, every_s: float = 600.0, tick_s: float = 30.0,
                 build_tick_s: float = 10.0, min_gap_s: float = 90.0) -> None:
        self.tick_s = tick_s
        self.full_evaluation_period_s = 4 * tick_s - 1.0
        """The interlock engine's full evaluation period in the sequences: every 4th tick. With the
        catalogue's 10 s every 30 s tick would be a full evaluation and the incremental one,
        what the product runs at 10 Hz (99 % of its evaluations), would never be exercised; the
        full one cross-checks it (:attr:`PatientFuzzCell.violations`)."""
        f = PatientFuzzCell(cfg, users, tick_s=build_tick_s)
        self.snaps: list[bytes] = [f.freeze()]
        """Each snapshot frozen (:meth:`PatientFuzzCell.freeze`); :meth:`start` thaws a copy."""
        self.labels: list[str] = ["<fresh>"]
        for i in range(PATIENTS):
            bid, coi, din = patient(i)
            out = f.sup.run_batch(RECIPE, bid, "op1", coi=coi, din=din)
            if not out.accepted:
                raise RuntimeError(f"campaign batch {bid} refused: {out}")
        last: tuple[Any, ...] | None = None
        since = f.run.now()
        excursions: set[str] = set()
        pc = f.sup.patient_cell
        assert pc is not None
        while any(ex.active for ex in f.sup.patients.values()):
            key = f.key()
            gap = f.run.now() - since
            if (key != last and gap >= min_gap_s) or gap >= every_s:
                self.snaps.append(f.freeze())
                self.labels.append(f.mix())
                since, last = f.run.now(), key
                if pc.open_now:
                    opener = next(iter(pc.open_now))
                    ph = (f.sup.patients[opener].active_phase or "").rsplit("/", 1)[-1]
                    if f"{opener}/{ph}" not in excursions:
                        excursions.add(f"{opener}/{ph}")
                        v = PatientFuzzCell.thaw(self.snaps[-1])
                        v.excursion()
                        self.snaps.append(v.freeze())
                        self.labels.append(v.mix() + " +trip")
            f.run.tick_once()
            f._checked()
            if f.violations:
                raise RuntimeError(f"campaign violated an invariant: {f.violations[:3]}")
            if f.run.now() > 24 * 3600:
                raise RuntimeError("campaign did not end within 24 sim h")
        ended = {ex.batch_id: ex.sm.state.value for ex in f.sup.patients.values()}
        if set(ended.values()) != {"Complete"}:
            raise RuntimeError(f"campaign batches ended {ended}")
        self.snaps.append(f.freeze())
        self.labels.append(f.mix())
        self.sim_s = f.run.now()

    @classmethod
    def of(cls, cfg: CellConfig, users: Any, every_s: float = 600.0) -> CampaignSnapshots:
        key = (id(cfg), every_s)
        if key not in cls._cache:
            cls._cache[key] = cls(cfg, users, every_s=every_s)
        return cls._cache[key]

    def __len__(self) -> int:
        return len(self.snaps)

    def start(self, i: int, coverage: PatientCoverage | None = None, *, coarse: bool = True) -> PatientFuzzCell:
        """A copy of the ``i``-th snapshot (modulo their number)."""
        k = i % len(self.snaps)
        if coverage is not None:
            coverage.start_mixes[self.labels[k]] += 1
        twin = PatientFuzzCell.thaw(self.snaps[k], coverage)
        twin.run.tick_s = self.tick_s
        twin.coarse = coarse
        twin.sup.engine.full_evaluation_period_s = self.full_evaluation_period_s
        return twin


__all__ = ["ALL_FAULTS", "PATIENTS", "PATIENT_COMMANDS", "CampaignSnapshots", "MemoryRecord", "PatientCoverage",
           "PatientFuzzCell", "patient"]
