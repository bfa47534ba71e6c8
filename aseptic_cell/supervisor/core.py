"""The supervisor core (ROS-free): the ISA-88 batch executive over a
:class:`~aseptic_cell.supervisor.port.CellPort`, composed of one object per role:

* :class:`~.signing.Signing` — authorisation and e-signatures (one helper for every signed action);
* :class:`~.operator.OperatorCommands` — operator device commands, device recovery, alarm actions;
* :class:`~.trips.Trips` — on-tick interlock rules, trips, the safe state, the signed restart;
* :class:`~.process_alarms.ProcessAlarms` — ISA-18.2 process alarms from the device signals;
* :class:`~.journal.BatchJournal` — the batch record entries and the bounded in-memory copies;
* :mod:`~.views` — status, tree snapshot and summary for publishing.

One :meth:`Supervisor.tick` (the node calls it at a fixed rate; tests call it on sim time):

1. the port pushes the latest device signals into the engine's table (plus the supervisor's
   own signals: ``batch.end_glove_test_done``, ``arm.clear_of.<door>`` where the port has them);
2. every rule is evaluated (:meth:`InterlockEngine.evaluate_all`); an on-tick rule
   (``RB-02`` abort VHP, ``RB-03`` protective stop) that is violated while relevant trips:
   its reaction is sent at once and a running batch goes to Held;
3. the batch state machine runs its transient states (Holding: the tree is invalidated —
   behaviours cancel their goals — and on a trip every device is sent to its safe state;
   Restarting: the latched devices are recovered by the restarting user; ...) and the tree
   is ticked while Running/Pausing;
4. device events are appended to the batch record.

A trip or a failed phase (a guard turned false, a refusal, a FAILED cycle) puts the batch in
Held with every device safe; it never resumes by itself: ``restart`` needs a role allowed by
``users.yaml`` and an e-signature (Part 11 §11.200 re-authentication).

Faults outside the tree hold the batch the same way (a trip, every device safe, an alarm):

* **device loss**: a device whose communication stays lost for the port's ``comm_loss_hold_s``
  (the ROS port: its signals silent for ``signals_stale_s``, or the node reporting comm lost);
* **record failure**: an append the record refused (disk full, I/O error, lock timeout,
  malformed file, WAL truncated) — ``CELL_RECORD_FAULT``; a batch never completes with an
  incomplete record, and the signed restart first re-verifies the file and writes the
  entries kept meanwhile;
* **supervisor loss**: :meth:`Supervisor.recover_interrupted` (at start-up) finds a batch the
  reopened record shows in progress, records the interruption and holds it (``CELL_SUPERVISOR_LOST``)
  until a signed restart, which re-runs the interrupted phase.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import py_trees
from py_trees.common import Status

from ..batch.states import IllegalCommand, PhaseState, PhaseStateMachine
from ..config import CellConfig
from ..interlocks import InterlockEngine, RuleStatus
from ..results import CommandResult
from . import views
from .actions import SAFE_COMMANDS
from .executive import BatchExecutive, Focused
from .journal import BatchJournal
from .operator import OperatorCommands, is_supervisor_command
from .patients import PatientCell, focused, sibling_records
from .port import CellPort, Handle
from .process_alarms import ProcessAlarms
from .recipes import RecipeError, resolve_recipe
from .signing import Signing, subject_hash
from .trips import RESTART_TIMEOUT_S, SAFE_ORDER, Trips

log = logging.getLogger(__name__)

S = PhaseState
BATCH_COMMANDS = ("start", "hold", "restart", "pause", "resume", "stop", "abort", "reset", "confirm",
                  "close_record")
Outcome = CommandResult
"""The supervisor's name for the one result type."""
__all__ = ["BATCH_COMMANDS", "RESTART_TIMEOUT_S", "SAFE_ORDER", "Outcome", "Supervisor"]


class _PortClock:
    def __init__(self, port: CellPort) -> None:
        self.port = port

    def now(self) -> float:
        return float(self.port.now())


class Supervisor:
    """Supervisor core: the cell's parts and one :class:`~.executive.BatchExecutive` per batch.

    The batch attributes (``sm``, ``batch_id``, ``recipe``, ``tree``, ``phases``, ``active_phase``,
    ``held_reason``, ``journal``, ...) are those of the executive in :attr:`focus` (the single
    campaign batch unless the supervisor is driving a patient batch).

    Args:
        cfg: loaded :class:`~aseptic_cell.config.CellConfig`.
        port: the cell (:class:`InProcessCell` or the ROS port).
        record: :class:`~aseptic_cell.records.BatchRecord` (None: in-memory lists only).
        users: :class:`~aseptic_cell.auth.UserDirectory` (None: built from ``cfg.users``).
        alarms: :class:`~aseptic_cell.alarms.AlarmManager` (None: built from ``cfg.alarms``).
        record_clock: clock for the record/alarms/users (default: the port's sim time).
        engine: a prebuilt interlock engine (fuzzing: compiled once), re-bound to this cell.
        wall: monotonic wall clock (s) for the transport allowances and the restart timeout;
            unit tests inject a fake one.
    """

    sm: Focused[PhaseStateMachine] = Focused()
    recipe: Focused[Any] = Focused()
    batch_id: Focused[str] = Focused()
    batch_user: Focused[str] = Focused()
    tree: Focused[py_trees.behaviour.Behaviour | None] = Focused()
    phases: Focused[dict[str, PhaseStateMachine]] = Focused()
    phase_order: Focused[list[str]] = Focused()
    active_phase: Focused[str | None] = Focused()
    _phase_types: Focused[dict[str, str]] = Focused()
    _pending_failure: Focused[str] = Focused()
    held_reason: Focused[str] = Focused()
    _hold_is_trip: Focused[bool] = Focused()
    _restart_user: Focused[str] = Focused()
    _confirmed: Focused[set[str]] = Focused()
    _end_glove_done: Focused[bool] = Focused()
    _robot_done: Focused[bool] = Focused()
    journal: Focused[BatchJournal] = Focused()

    def __init__(self, cfg: CellConfig, port: CellPort, *, record: Any = None, users: Any = None,
                 alarms: Any = None, record_clock: Any = None, engine: InterlockEngine | None = None,
                 wall: Callable[[], float] = time.monotonic,
                 batch_records: Callable[[str], Any] | None = None) -> None:
        from ..alarms import AlarmManager
        from ..auth import UserDirectory

        self.cfg = cfg
        self.port = port
        self.clock = _PortClock(port)
        self.wall = wall
        rclock = record_clock or self.clock
        self.record = record
        if engine is None:
            engine = InterlockEngine.from_config(cfg, self.clock)
        else:
            engine.rebind(self.clock)
        self.engine = engine
        self.signals = self.engine.signals
        self.users = users if users is not None else UserDirectory(cfg.users, rclock, record)
        self.alarms = alarms if alarms is not None else AlarmManager(cfg.alarms, rclock, record)
        self.signing = Signing(self.users, record)
        self.main = BatchExecutive(self.clock, BatchJournal(record, self.now, lambda: self.main.batch_id), record)
        """The single (campaign) batch's executive: the default focus."""
        self.main.sm.add_listener(lambda tr: self._on_batch_transition(tr, self.main))
        self.focus = self.main
        """The executive whose attributes the batch attributes are (see the class docstring)."""
        self.patients: dict[str, BatchExecutive] = {}
        """Patient batches by batch id (multi-patient processes), in admission order."""
        self.operator = OperatorCommands(self)
        self.trip_handler = Trips(self)
        self.process_alarms = ProcessAlarms(cfg, self.alarms, self.signal, self.journal.audit, sup=self)
        self._refreshed_at = -math.inf
        self.statuses: list[RuleStatus] = []
        self.tick_count = 0
        self.alarms.subscribe(self.journal.alarm_event)
        self.record_fault = ""
        """Why the record is incomplete ("" = complete); sticky until a signed restart re-verifies it."""
        self._record_failures: list[str] = []
        self._lost_since: dict[str, float] = {}
        self._latched_seen: dict[str, bool] = {}
        self.journal.on_failure = self._record_failures.append
        self.patient_cell: PatientCell | None = (
            PatientCell(self, batch_records or sibling_records(record)) if cfg.scheduling is not None else None)
        """Patient batches of multi-patient processes: arbiter, admission, chain of identity."""
        if record is not None and hasattr(record, "add_failure_listener"):
            record.add_failure_listener(self._record_failures.append)  # alarms, signatures, log-ins too
            bad = record.health()
            if bad:
                self._record_failures.append(bad)

    # ================================================================== observation (read-only)
    @property
    def timeline(self) -> list[dict[str, Any]]:
        return self.journal.timeline

    @property
    def trips(self) -> list[dict[str, Any]]:
        return self.journal.trips

    @property
    def refusals(self) -> list[dict[str, Any]]:
        return self.journal.refusals

    @property
    def commands(self) -> list[dict[str, Any]]:
        return self.journal.commands

    @property
    def safe_commands(self) -> list[tuple[float, str, str]]:
        return self.journal.safe_commands

    @property
    def results(self) -> dict[str, Any]:
        return self.journal.results

    @property
    def alarm_log(self) -> list[dict[str, Any]]:
        return self.journal.alarm_log

    def phase_type(self, path: str) -> str | None:
        return self._phase_types.get(path)

    def status(self) -> dict[str, Any]:
        return views.status(self)

    def tree_snapshot(self) -> list[tuple[str, str, str, int, str]]:
        return views.tree_snapshot(self.tree)

    def summary(self) -> dict[str, Any]:
        return views.summary(self)

    def batches(self) -> dict[str, Any]:
        return views.batches(self)

    # ================================================================== behaviour context
    def now(self) -> float:
        return self.clock.now()

    def signal(self, name: str) -> Any:
        e = self.signals.get(name)
        if e is None or self.signals.comm_lost(e.source):
            return None
        if abs(self.now() - e.t) > self.engine.stale_after_s:
            return None
        v = e.value
        return None if isinstance(v, float) and math.isnan(v) else v

    def refresh_signals(self) -> None:
        """Fresh device and supervisor signals, stamped now (every tick and before every check).

        Between two ticks an accelerated sim clock runs on (at 8,000x, 800 s per 0.1 s tick), so
        a command checked against the tick's samples would see every signal stale.
        """
        self._refreshed_at = self.now()
        self.port.refresh(self.signals)
        self.signals.update("batch.end_glove_test_done", self._end_glove_done, self._refreshed_at, "supervisor")
        self.operator.publish(self.signals, self._refreshed_at)  # recorded inputs (visual checks, deviations)

    def check(self, checks: Sequence[tuple[str, Mapping[str, str]]]) -> tuple[bool, str]:
        if checks and abs(self.now() - self._refreshed_at) > self.engine.stale_after_s / 4:
            self.refresh_signals()
        reasons = []
        for action, args in checks:
            try:
                d = self.engine.check(action, args)
            except ValueError as exc:
                reasons.append(f"{action}: {exc}")
                continue
            if not d.allowed:
                reasons.append(d.message)
        return (not reasons, " | ".join(reasons))

    def send(self, node: str, command: str, args: Mapping[str, Any], *, reason: str = "",
             checks: Sequence[tuple[str, Mapping[str, str]]] = (), user: str = "") -> Handle:
        """Interlock-checked command from a behaviour (or the operator path, already checked)."""
        actor = user or self.batch_user or "supervisor"
        ok, why = self.check(checks)
        if not ok:
            h = Handle(node, command, dict(args), self.now())
            h.finish(False, "INTERLOCK", why)
            self.journal.refusal(actor, node, command, args, "INTERLOCK", why, source="supervisor")
            return h
        h = self.port.send(node, command, dict(args), user=actor, reason=reason)
        self.journal.command(node, command, actor, self.wall(), (node, command) in SAFE_COMMANDS)
        return h

    def make_safe(self, node: str, why: str) -> None:
        cmd = "protective_stop" if node == "arm" else ("abort" if node in ("vhp", "autoclave") else "safe_state")
        args: dict[str, Any] = {"reason": why} if cmd != "abort" else {"user": "supervisor", "reason": why}
        self.send(node, cmd, args, reason=why, user="supervisor")

    def publish_result(self, key: str, value: Any) -> None:
        self.journal.results[key] = value
        if isinstance(value, dict) and value.get("result") in ("PASS", "FAIL"):
            self.journal.record_cycle_result(key, value)
        if isinstance(value, dict):  # the cycle_result alarms of alarms.yaml (a FAIL, or a cycle alarm code)
            self.process_alarms.cycle_result(key, value)

    def updated_since(self, node: str, handle: Handle) -> bool:
        """Do the signals of ``node`` already reflect the answer of ``handle``?"""
        fn = getattr(self.port, "updated_since", None)
        return True if fn is None else bool(fn(node, handle.t_done_wall))

    def confirmed(self, phase_id: str) -> bool:
        return phase_id in self._confirmed

    def phase_is_complete(self, path: str) -> bool:
        sm = self.phases.get(path)
        return sm is not None and sm.state is S.COMPLETE

    def wait_at_boundary(self, path: str) -> bool:
        return self.sm.state in (S.PAUSING, S.PAUSED)

    def phase_started(self, path: str) -> None:
        sm = self.phases[path]
        self.active_phase = path
        if sm.state is S.IDLE:
            sm.start(self.batch_user or "supervisor", "phase logic started")

    def phase_finished(self, path: str) -> None:
        sm = self.phases[path]
        if sm.state is S.RUNNING:
            sm.done("phase_logic", "phase logic complete")
        self.active_phase = None
        ptype = self._phase_types.get(path)
        if ptype == "robot_task":
            self._robot_done = True
        if ptype == "glove_test" and self._robot_done:
            self._end_glove_done = True
            self.signals.update("batch.end_glove_test_done", True, self.now(), "supervisor")

    def phase_failed(self, path: str, reason: str) -> None:
        # acted on after the tick (the tree is never stopped from inside its own tick)
        self._pending_failure = f"phase {path} failed: {reason}"

    # ================================================================== batch API
    def focused(self, ex: BatchExecutive) -> Any:
        """``with sup.focused(ex):`` the batch attributes are ``ex``'s (see the class docstring)."""
        return focused(self, ex)

    def executive(self, batch_id: str = "") -> BatchExecutive | None:
        """The executive of ``batch_id`` ("" or the campaign batch's id: the campaign batch)."""
        if not batch_id or batch_id == self.main.batch_id:
            return self.main
        return self.patients.get(batch_id)

    def run_batch(self, recipe_id: str, batch_id: str, user: str, *, coi: str = "", din: str = "") -> CommandResult:
        """Load ``recipe_id`` and start it (RunBatch). Refused with a precise reason on bad input.

        A recipe whose phase is a ``process`` runs a patient batch (``coi`` and the apheresis
        ``din`` required) beside the others (:mod:`.patients`); any other recipe is the single
        campaign batch, exclusive of patient batches."""
        if (self.patient_cell is not None and recipe_id in self.cfg.recipes
                and any(ph.type == "process" for _u, _o, ph in self.cfg.recipes[recipe_id].phases())):
            return self._run_patient_batch(recipe_id, batch_id, user, coi, din)
        busy = [b for b, ex in self.patients.items() if ex.active]
        if busy:
            return self._refuse_batch(user, "start", "EXCLUSIVE",
                                      f"patient batches {', '.join(busy)} are in progress: the campaign recipe "
                                      f"{recipe_id} runs only without them")
        if self.sm.state not in (S.IDLE,) and not self.sm.state.final:
            return self._refuse_batch(user, "start", "BUSY",
                                      f"batch {self.batch_id} is {self.sm.state.value}; finish or abort it first")
        if not isinstance(batch_id, str) or not batch_id.strip() or len(batch_id) > 64:
            return self._refuse_batch(user, "start", "INVALID", f"batch_id must be 1-64 characters, got {batch_id!r}")
        _rule, denied = self.signing.authorize(user, "batch.start")
        if denied is not None:
            return self._refuse_batch(user, "start", denied.code, denied.reason)
        if not self.record_status()["complete"]:
            return self._refuse_batch(user, "start", "RECORD",
                                      f"the batch record is incomplete ({self.record_status()['fault']}); "
                                      "fix the storage and verify the record first")
        try:
            recipe = resolve_recipe(recipe_id, self.cfg)
        except RecipeError as exc:
            return self._refuse_batch(user, "start", "RECIPE", str(exc), batch_id=batch_id)
        # change control (issue 15 item 7): a GMP batch refuses a draft, obsolete, unapproved or
        # changed item; the whole configuration's hash is recorded at batch start
        from ..config.change_control import batch_start_check

        verdict = batch_start_check(self.cfg, recipe)
        if not verdict.ok:
            return self._refuse_batch(user, "start", verdict.code, verdict.reason, batch_id=batch_id)
        if self.sm.state.final:
            self.sm.reset(user, "new batch")
        self.recipe, self.batch_id, self.batch_user = recipe, batch_id, user
        self.alarms.set_batch(batch_id)
        self._load_tree()
        self.journal.audit("command", user, "batch.start", f"recipe {recipe.id} v{recipe.version}",
                    {"recipe_id": recipe.id, "recipe_version": recipe.version, **verdict.to_payload()})
        self.sm.start(user, f"recipe {recipe.id} v{recipe.version}")
        return CommandResult(True, "OK", f"batch {batch_id} started", state=self.sm.state.value)

    def _run_patient_batch(self, recipe_id: str, batch_id: str, user: str, coi: str, din: str) -> CommandResult:
        assert self.patient_cell is not None
        if not isinstance(batch_id, str) or not batch_id.strip() or len(batch_id) > 64:
            return self._refuse_batch(user, "start", "INVALID", f"batch_id must be 1-64 characters, got {batch_id!r}")
        if not isinstance(coi, str) or not coi or not isinstance(din, str) or not din:
            return self._refuse_batch(user, "start", "COI", f"a patient batch needs its COI and the apheresis DIN "
                                                            f"(got coi={coi!r}, din={din!r})")
        _rule, denied = self.signing.authorize(user, "batch.start")
        if denied is not None:
            return self._refuse_batch(user, "start", denied.code, denied.reason)
        if not self.record_status()["complete"]:
            return self._refuse_batch(user, "start", "RECORD",
                                      f"the batch record is incomplete ({self.record_status()['fault']})")
        try:
            recipe = resolve_recipe(recipe_id, self.cfg)
        except RecipeError as exc:
            return self._refuse_batch(user, "start", "RECIPE", str(exc), batch_id=batch_id)
        from ..config.change_control import batch_start_check  # change control, as for the campaign batch

        verdict = batch_start_check(self.cfg, recipe)
        if not verdict.ok:
            return self._refuse_batch(user, "start", verdict.code, verdict.reason, batch_id=batch_id)
        (_u, _o, ph), = list(recipe.phases())
        return self.patient_cell.run(recipe, str(ph.params["process"]), batch_id, user, coi, din,
                                     start_payload=verdict.to_payload())

    def recover_interrupted(self) -> str:
        """At start-up: hold a batch the reopened record shows in progress (the supervisor that ran
        it was lost); see :mod:`.interrupted`. Returns the held reason, "" if there was none."""
        from .interrupted import hold_interrupted

        return hold_interrupted(self)

    def _load_tree(self) -> None:
        from ..behaviors.trees import batch_procedure, phase_path

        self.phases, self.phase_order, self._phase_types = {}, [], {}
        for up, op, ph in self.recipe.phases():
            path = phase_path(up, op, ph)
            sm = PhaseStateMachine(self.clock, name=path)
            sm.add_listener(functools.partial(self._on_phase_transition, path))
            self.phases[path] = sm
            self.phase_order.append(path)
            self._phase_types[path] = ph.type
        self.tree = batch_procedure(self, self.recipe, self.batch_id, self.batch_user or "supervisor")
        self.active_phase = None
        self.held_reason = ""
        self._confirmed.clear()
        self._end_glove_done = self._robot_done = False

    def batch_command(self, command: str, user: str, password: str = "", meaning: str = "",
                      reason: str = "", phase: str = "", batch: str = "") -> CommandResult:
        """An ISA-88 operator command (role check; e-signature where users.yaml requires one) to the
        campaign batch, or to patient batch ``batch`` (each batch restarts with its own signed restart)."""
        ex = self.executive(batch)
        if ex is None:
            return self._refuse_batch(user, command, "INVALID",
                                      f"unknown batch {batch!r}; known: {[self.main.batch_id, *self.patients]}")
        if ex is self.main:
            return self._batch_command(command, user, password, meaning, reason, phase)
        assert self.patient_cell is not None
        if command in ("restart", "resume") and ex.coi_stop:
            return self._refuse_batch(user, command, "COI",
                                      f"batch {batch} was stopped by a COI mismatch ({ex.coi_stop}); only QA's "
                                      "disposition releases it, never an operator continue (COI-30)")
        why = self.patient_cell.seg.refusal(ex, command)  # SEG-07 CONTAIN, SEG-08, SEG-10
        if why:
            return self._refuse_batch(user, command, "SEG", why)
        with self.focused(ex):
            out = self._batch_command(command, user, password, meaning, reason, phase)
        if out.accepted and command == "restart":
            self.patient_cell.restarted(ex)
        if ex.sm.state.final:
            self.patient_cell.finish(ex)
        return out

    def _batch_command(self, command: str, user: str, password: str = "", meaning: str = "",
                       reason: str = "", phase: str = "") -> CommandResult:
        if is_supervisor_command(command):  # bypass / deviation actions (supervisor/operator.py)
            return self.operator.supervisor_command(command, user, password, meaning, reason)
        if command not in BATCH_COMMANDS:
            return self._refuse_batch(user, command, "INVALID",
                                      f"unknown batch command {command!r}; known: {list(BATCH_COMMANDS)}")
        perm = "step.verify" if command == "confirm" else f"batch.{command}"
        rule, denied = self.signing.authorize(user, perm)
        if denied is not None:
            return self._refuse_batch(user, command, denied.code, denied.reason)
        if command == "confirm":
            if self.sm.state is not S.RUNNING or not self.active_phase:
                return self._refuse_batch(user, command, "STATE", "no phase is waiting for a confirmation")
            target = self.active_phase.rsplit("/", 1)[-1]
            if phase and phase != target:
                return self._refuse_batch(user, command, "STATE", f"phase {phase} is not the active phase ({target})")
        elif command == "close_record":
            if not self.sm.state.final:
                return self._refuse_batch(user, command, "STATE",
                                          f"the batch is {self.sm.state.value}; the record closes after it ended")
            ok, why = self.check([("batch.close_record", {})])
            if not ok:
                return self._refuse_batch(user, command, "INTERLOCK", why)
        elif command == "start":
            if self.recipe is None or self.sm.state is not S.IDLE:
                return self._refuse_batch(user, command, "STATE",
                                          f"no loaded batch in Idle (state {self.sm.state.value}); "
                                          "start a batch with RunBatch (/cell/batch/run)")
        elif not self.sm.can(command):
            msg = str(IllegalCommand(self.sm.state, command, self.sm.allowed_commands()))
            return self._refuse_batch(user, command, "STATE", msg)
        if command == "restart":
            lost = sorted(self.process_alarms.comm_lost)
            if lost:
                return self._refuse_batch(user, command, "UNSAFE",
                                          f"cannot restart: communication lost with {', '.join(lost)}")
            unready = self._record_ready()
            if unready:
                return self._refuse_batch(user, command, "RECORD", f"cannot restart: {unready}")
        _sig, bad = self.signing.sign_if_required(
            user, rule, password=password, meaning=meaning, action=perm,
            subject=subject_hash({"batch": self.batch_id, "command": command, "user": user, "reason": reason,
                                  "t": self.now()}),
            batch_id=self.batch_id, reason=reason)
        if bad is not None:
            return self._refuse_batch(user, command, bad.code, bad.reason)
        if command == "confirm" and self.active_phase:
            self._confirmed.add(self.active_phase.rsplit("/", 1)[-1])
            self.journal.audit("command", user, "batch.confirm", reason, {"phase": self.active_phase})
            return CommandResult(True, "OK", "confirmed", state=self.sm.state.value)
        if command == "close_record":
            self.journal.audit("command", user, "batch.close_record", reason, {"state": self.sm.state.value})
            return CommandResult(True, "OK", "batch record closed", state=self.sm.state.value)
        if command == "start":
            self._load_tree()
            self.sm.start(user, reason or "start")
        elif command == "hold":
            self.hold(reason or f"hold by {user}", trip=False, source=user, actor=user)
        elif command == "restart":
            self._restart_user = user
            self.sm.restart(user, reason or "restart")
        else:
            self.sm.fire(command, user, reason)
        self.journal.audit("command", user, f"batch.{command}", reason, {"state": self.sm.state.value})
        if command in ("stop", "abort", "hold"):
            for _ in range(3):
                before = self.sm.state
                self._drive_batch()
                if self.sm.state is before:
                    break
        return CommandResult(True, "OK", f"{command} accepted", state=self.sm.state.value)

    # ================================================================== operator actions
    def operate(self, node: str, command: str, args: Mapping[str, Any] | None, user: str, reason: str = "",
                *, password: str = "", meaning: str = "") -> tuple[CommandResult, Handle | None]:
        return self.operator.operate(node, command, args, user, reason, password=password, meaning=meaning)

    def recover(self, node: str, user: str, reason: str) -> Handle:
        """Explicit recovery of a latched device (an intervention, recorded)."""
        self.journal.audit("intervention", user, f"{node}.recover", reason, {"node": node})
        return self.port.recover(node, user=user, reason=reason)

    def recover_device(self, node: str, user: str, password: str = "", meaning: str = "", reason: str = ""
                       ) -> tuple[CommandResult, Handle | None]:
        return self.operator.recover_device(node, user, password, meaning, reason)

    def acknowledge_alarm(self, alarm_id: str, user: str, comment: str = "") -> CommandResult:
        return self.operator.acknowledge_alarm(alarm_id, user, comment)

    def shelve_alarm(self, alarm_id: str, user: str, password: str = "", meaning: str = "", reason: str = "",
                     duration_s: float = 0.0) -> CommandResult:
        return self.operator.shelve_alarm(alarm_id, user, password, meaning, reason, duration_s)

    # ================================================================== tick
    def tick(self) -> None:
        self.refresh_signals()
        self.process_alarms.watch_comm(self.port.node_devices, self.signals)
        self.process_alarms.watch_stale(self.signals, self.engine.stale_after_s)
        self._hold_on_device_loss()
        self.statuses = self.engine.evaluate_all()
        self.trip_handler.on_tick_rules(self.statuses)
        self.process_alarms.evaluate()  # before the batch is driven: an EM hold reaches Held in this tick
        for _ in range(4):  # run transient states to their stable successor within this tick
            before = self.sm.state
            self._drive_batch()
            if self.sm.state is before:
                break
        if self.patient_cell is not None and self.patients:
            self.patient_cell.tick()  # arbitration, then each patient batch in its own focus
        self.journal.device_events(self.port.drain_events())
        self.alarms.tick()
        probe = getattr(self.record, "probe", None)
        if probe is not None:
            probe()  # a failure found between appends reaches the listeners
        self._hold_on_record_failure()
        self.tick_count += 1

    def _hold_on_device_loss(self) -> None:
        """A batch in progress is held (a trip: every device safe) once a device's communication
        has stayed lost for the port's ``comm_loss_hold_s``: a behaviour waiting on it would wait
        forever (its signals are unknown, its commands unanswered)."""
        grace = float(getattr(self.port, "comm_loss_hold_s", 0.0))
        now = self.wall()
        for node in list(self._lost_since):
            if node not in self.process_alarms.comm_lost:
                del self._lost_since[node]
        active = (S.RUNNING, S.PAUSING, S.PAUSED, S.RESTARTING)
        # the campaign batch or any patient batch (hold_on_trip holds the patients' active phases)
        running = self.sm.state in active or any(ex.sm.state in active for ex in self.patients.values())
        restarting = self.sm.state is S.RESTARTING or any(ex.sm.state is S.RESTARTING
                                                          for ex in self.patients.values())
        for node in sorted(self.process_alarms.comm_lost):
            since = self._lost_since.setdefault(node, now)
            if now - since >= grace and running:
                dev = self.port.node_devices.get(node, node)
                self.hold_on_trip(f"communication with {node} ({dev}) lost during the batch", source=f"{dev}_COMM_LOSS")
        # a device latched in its safe state by someone else while the batch runs (the lifecycle
        # manager after a node or supervisor loss, the node itself on losing its backend): held
        for node in self.port.node_devices:
            latched = self.port.latched(node)
            was, self._latched_seen[node] = self._latched_seen.get(node, True), bool(latched)
            if latched and not was and running and not restarting:
                self.hold_on_trip(f"{node} latched in its safe state during the batch: {latched}",
                                  source=f"{self.port.node_devices[node]}_LATCHED")

    def own_latch(self, node: str) -> None:
        """The latch ``node`` is about to show is the supervisor's own (a batch-local unit stop,
        :meth:`PatientCell._stop_unit`): the watch for a device latched by someone else during the
        batch (a cell-wide trip) does not take it for one."""
        self._latched_seen[node] = True

    def _hold_on_record_failure(self) -> None:
        """An append the record refused: the batch is held (every device safe) and
        CELL_RECORD_FAULT raised, once per fault; the record stays marked incomplete."""
        if not self._record_failures:
            return
        why, self._record_failures[:] = self._record_failures[0], []
        if not self.record_fault:
            self.record_fault = why
            self.process_alarms.raise_("CELL_RECORD_FAULT", why)
        self.hold_on_trip(f"batch record incomplete: {why}", source="CELL_RECORD_FAULT")

    def record_status(self) -> dict[str, Any]:
        """Is the batch record complete? (the demo and RunBatch report success only if so)."""
        return {"complete": not self.record_fault and not self._record_failures and not self.journal.unwritten,
                "fault": self.record_fault or (self._record_failures[0] if self._record_failures else ""),
                "failed_appends": self.journal.failed_appends + int(getattr(self.record, "failures", 0) or 0),
                "unwritten": len(self.journal.unwritten)}

    def hold(self, reason: str, *, trip: bool, source: str, actor: str = "system") -> None:
        """Hold a batch in progress (a trip also makes every device safe); no effect otherwise."""
        st = self.sm.state
        if st in (S.RUNNING, S.PAUSING, S.RESTARTING):
            if st is not S.RUNNING:  # finish the transient state first (PhaseStateMachine table)
                self.sm.done("system", "interrupted by a hold")
            if st is S.PAUSING:
                pass
            if self.sm.state is S.PAUSED:
                self.sm.resume("system", "hold requested")
            self.held_reason = reason
            self._hold_is_trip = trip
            self.sm.hold(actor, reason)
            # the on-tick rule that caused this hold recorded its trip just now (trips.py): not twice;
            # the same source failing again later (in this batch or the next) is a trip of its own
            if trip and not any(t["rule"] == source and t["t"] == self.now() for t in self.journal.trips[-1:]):
                self.journal.trips.append({"t": self.now(), "rule": source, "title": "phase failure", "reason": reason,
                                   "reaction": "hold_batch", "batch_state": "Running"})
                self.journal.audit("trip", "system", "batch.hold", reason, {"source": source})
                self.process_alarms.raise_("CELL_INTERLOCK_TRIP", reason)
        elif st is S.PAUSED:
            self.sm.resume("system", "hold requested while paused")
            self.hold(reason, trip=trip, source=source, actor=actor)

    def hold_on_trip(self, reason: str, *, source: str) -> None:
        """An interlock trip: a batch in progress is held with every device made safe; a cell-wide
        trip holds every patient batch's active phase, incubation runs on (INT-01)."""
        with self.focused(self.main):
            if self.sm.state in (S.RUNNING, S.PAUSING, S.PAUSED, S.RESTARTING):
                self.hold(reason, trip=True, source=source)
        if self.patient_cell is not None and self.patients:
            self.patient_cell.cell_wide_trip(reason, source)

    def _drive_batch(self) -> None:
        st = self.sm.state
        if st is not S.RESTARTING:
            self.trip_handler.drop_restart()
        if st is S.HOLDING:
            self._stop_tree()
            if self.active_phase and self.phases[self.active_phase].can("hold"):
                self.phases[self.active_phase].hold("system", self.held_reason)
                self.phases[self.active_phase].done("system", "held")
            if self._hold_is_trip and not self.focus.patient:  # a patient batch's fault is batch-local (INT-03)
                self.trip_handler.all_safe(self.held_reason)
            self.sm.done("system", "held: devices safe")
        elif st is S.RESTARTING:
            if not self.trip_handler.restart_ready(self._restart_user or "system"):
                return  # recoveries in flight: stay Restarting (nothing moves meanwhile)
            user = self._restart_user or "system"
            if self.active_phase and self.phases[self.active_phase].state is S.HELD:
                self.phases[self.active_phase].restart(user, "batch restart")
                self.phases[self.active_phase].done("system", "restarted")
            self.held_reason = ""
            self.sm.done(user, "restarted")
            self.refresh_signals()  # the restart's recoveries and reset changed them within this tick
            self._tick_tree()
        elif st in (S.RUNNING, S.PAUSING):
            self._tick_tree()
            if self.sm.state is S.PAUSING and not self._phase_in_progress():
                self.sm.done("system", "paused at a phase boundary")
        elif st is S.STOPPING:
            self._stop_tree()
            self._end_active_phase("stop")
            self.sm.done("system", "stopped")
        elif st is S.ABORTING:
            self._stop_tree()
            self._end_active_phase("abort")
            if not self.focus.patient:
                self.trip_handler.all_safe("batch aborted")
            self.sm.done("system", "aborted")

    def _record_ready(self) -> str:
        """Before a signed restart: the record file verifies on disk and the entries kept while it
        failed are written (flagged late). "" when ready, else why not."""
        if self.record is None or self.record_status()["complete"]:
            return ""
        health = getattr(self.record, "health", lambda: "")()
        if health:
            return f"the batch record cannot be extended: {health}"
        check = getattr(self.record, "check", None)
        if check is not None:
            rep = check()
            if not rep.ok:
                return f"the batch record does not verify: {rep.problem}"
        self._record_failures[:] = []
        left = self.journal.flush_unwritten()
        if left or self._record_failures:
            self._record_failures[:] = []
            return f"the batch record still refuses entries ({left} unwritten)"
        self.record_fault = ""
        return ""

    def _phase_in_progress(self) -> bool:
        return bool(self.active_phase and self.phases[self.active_phase].state is S.RUNNING)

    def _end_active_phase(self, cmd: str) -> None:
        p = self.active_phase
        if p and self.phases[p].can(cmd):
            self.phases[p].fire(cmd, "system", f"batch {cmd}")
            self.phases[p].done("system", f"batch {cmd}")
        self.active_phase = None

    def _tick_tree(self) -> None:
        if self.tree is None:
            return
        self._pending_failure = ""
        self.tree.tick_once()
        if self.tree.status == Status.SUCCESS and self.sm.state is S.RUNNING and not self.record_status()["complete"]:
            self._hold_on_record_failure()  # never Complete with an incomplete record
            if self.sm.state is S.RUNNING:
                self.hold(f"batch record incomplete: {self.record_fault}", trip=True, source="CELL_RECORD_FAULT")
        elif self.tree.status == Status.SUCCESS and self.sm.state is S.RUNNING:
            self.sm.done("system", "procedure complete")
        elif self.tree.status == Status.FAILURE and self.sm.state in (S.RUNNING, S.PAUSING):
            from ..behaviors.base import _first_failure_reason

            why = self._pending_failure or f"procedure failed: {_first_failure_reason(self.tree)}"
            self.hold(why, trip=True, source="procedure")

    def _stop_tree(self) -> None:
        if self.tree is not None and self.tree.status != Status.INVALID:
            self.tree.stop(Status.INVALID)

    # ================================================================== observation / record
    def _on_batch_transition(self, tr: Any, ex: BatchExecutive | None = None) -> None:
        ex = ex or self.focus
        ex.journal.transition("batch", ex.batch_id, tr)
        try:
            self.alarms.set_design_state("batch_active", tr.new not in (S.IDLE, S.COMPLETE, S.STOPPED, S.ABORTED))
        except KeyError:
            pass

    def _on_phase_transition(self, path: str, tr: Any) -> None:
        self.journal.transition("phase", path, tr)

    def _refuse_batch(self, user: str, command: str, code: str, why: str, batch_id: str | None = None
                      ) -> CommandResult:
        self.journal.batch_refusal(user, command, code, why)
        return CommandResult(False, code, why, state=self.sm.state.value)
