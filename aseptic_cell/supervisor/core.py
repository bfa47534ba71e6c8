"""The supervisor core (ROS-free): interlock engine + ISA-88 batch executive + behaviour tree
+ alarms + batch record, over a :class:`~aseptic_cell.supervisor.port.CellPort`.

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
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import py_trees
from py_trees.common import Status

from ..batch.states import IllegalCommand, PhaseState, PhaseStateMachine
from ..interlocks import InterlockEngine, RuleStatus
from .actions import SAFE_COMMANDS, classify
from .port import NODES, CellPort, Handle
from .recipes import RecipeError, resolve_recipe

log = logging.getLogger(__name__)

S = PhaseState
RESTART_TIMEOUT_S = 20.0
"""Wall seconds the signed restart waits for the devices' recoveries before holding again."""

BATCH_COMMANDS = ("start", "hold", "restart", "pause", "resume", "stop", "abort", "reset", "confirm",
                  "close_record")
SAFE_ORDER = ("arm", "vhp", "autoclave", "isolator")
"""Safe-state order on a trip: stop motion first, then the process units."""

TRIP_REACTIONS = {"abort_vhp": ("vhp", "safe_state"), "protective_stop": ("arm", "protective_stop"),
                  "hold_batch": (None, None)}


@dataclass
class Outcome:
    accepted: bool
    code: str = "OK"
    reason: str = ""
    payload: dict[str, Any] = field(default_factory=dict)
    state: str = ""


@dataclass
class _Clock:
    port: CellPort

    def now(self) -> float:
        return float(self.port.now())


class Supervisor:
    """Supervisor core.

    Args:
        cfg: loaded :class:`~aseptic_cell.config.CellConfig`.
        port: the cell (:class:`InProcessCell` or the ROS port).
        record: :class:`~aseptic_cell.records.BatchRecord` (None: in-memory lists only).
        users: :class:`~aseptic_cell.auth.UserDirectory` (None: built from ``cfg.users``).
        alarms: :class:`~aseptic_cell.alarms.AlarmManager` (None: built from ``cfg.alarms``).
        record_clock: clock for the record/alarms/users (default: the port's sim time).
    """

    def __init__(self, cfg: Any, port: CellPort, *, record: Any = None, users: Any = None, alarms: Any = None,
                 record_clock: Any = None, engine: Any = None) -> None:
        from ..alarms import AlarmManager
        from ..auth import UserDirectory

        self.cfg = cfg
        self.port = port
        self.clock = _Clock(port)
        rclock = record_clock or self.clock
        self.record = record
        if engine is None:
            engine = InterlockEngine.from_config(cfg, self.clock)
        else:  # a prebuilt engine (fuzzing: compiled once), re-bound to this cell's signals and clock
            from ..interlocks import SignalTable

            engine.signals = SignalTable()
            engine._now = self.clock.now  # noqa: SLF001
        self.engine = engine
        self.signals = self.engine.signals
        self.users = users if users is not None else UserDirectory(cfg.users, rclock, record)
        self.alarms = alarms if alarms is not None else AlarmManager(cfg.alarms, rclock, record)
        self.sm = PhaseStateMachine(self.clock, name="batch")
        self.sm.add_listener(self._on_batch_transition)
        self.recipe: Any = None
        self.batch_id = ""
        self.batch_user = ""
        self.tree: py_trees.behaviour.Behaviour | None = None
        self.phases: dict[str, PhaseStateMachine] = {}
        self.phase_order: list[str] = []
        self.active_phase: str | None = None
        self._phase_types: dict[str, str] = {}
        self._pending_failure = ""
        self.held_reason = ""
        self._hold_is_trip = False
        self._restart_user = ""
        self._confirmed: set[str] = set()
        self._end_glove_done = False
        self._refreshed_at = -math.inf
        self._restart_step: tuple[str, list[Handle], float] | None = None
        self._robot_done = False
        self._tripped: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        self._comm_lost: set[str] = set()
        self._all_seen = False
        self.statuses: list[RuleStatus] = []
        self.tick_count = 0
        # observation (summary, HMI): bounded in-memory copies of what goes to the record
        self.timeline: list[dict[str, Any]] = []
        self.trips: list[dict[str, Any]] = []
        self.refusals: list[dict[str, Any]] = []
        self.commands: list[dict[str, Any]] = []
        self.results: dict[str, Any] = {}
        self.alarm_log: list[dict[str, Any]] = []
        self.safe_commands: list[tuple[float, str, str]] = []
        """(wall time, node, command) of every safe command sent (trip-latency benchmark)."""
        self._process_alarm_active: set[str] = set()
        """Process alarms (config/alarms.yaml) raised and not yet returned to normal."""
        self.alarms.subscribe(self._on_alarm)

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
            self._refusal(actor, node, command, args, "INTERLOCK", why, source="supervisor")
            return h
        h = self.port.send(node, command, dict(args), user=actor, reason=reason)
        if (node, command) in SAFE_COMMANDS:
            self.safe_commands.append((time.perf_counter(), node, command))
        self.commands.append({"t": self.now(), "node": node, "command": command, "user": actor})
        return h

    def make_safe(self, node: str, why: str) -> None:
        cmd = "protective_stop" if node == "arm" else ("abort" if node in ("vhp", "autoclave") else "safe_state")
        args: dict[str, Any] = {"reason": why} if cmd != "abort" else {"user": "supervisor", "reason": why}
        self.send(node, cmd, args, reason=why, user="supervisor")

    def publish_result(self, key: str, value: Any) -> None:
        self.results[key] = value
        if self.record is not None and isinstance(value, dict) and value.get("result") in ("PASS", "FAIL"):
            try:
                rep = {k: v for k, v in value.items() if _finite_json(v)}
                rep.setdefault("run_id", str(value.get("run_id") or "unknown"))
                self.record.record_cycle_result(key, rep, batch_id=self.batch_id)
            except Exception as exc:  # noqa: BLE001 - the record must not stop supervision
                log.error("cycle result not recorded: %r", exc)
        if isinstance(value, dict) and value.get("result") == "FAIL":
            self._raise_alarm("VHP1_CYCLE_ABORT" if key == "vhp" else "AC1_CYCLE_FAIL",
                              "; ".join(str(r) for r in value.get("reasons", []) or []))

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
    def run_batch(self, recipe_id: str, batch_id: str, user: str) -> Outcome:
        """Load ``recipe_id`` and start it (RunBatch). Refused with a precise reason on bad input."""
        if self.sm.state not in (S.IDLE,) and not self.sm.state.final:
            return self._refuse_batch(user, "start", "BUSY",
                                      f"batch {self.batch_id} is {self.sm.state.value}; finish or abort it first")
        if not isinstance(batch_id, str) or not batch_id.strip() or len(batch_id) > 64:
            return self._refuse_batch(user, "start", "INVALID", f"batch_id must be 1-64 characters, got {batch_id!r}")
        try:
            self.users.authorize(user, "batch.start")
        except Exception as exc:  # PermissionDenied
            return self._refuse_batch(user, "start", "PERMISSION", getattr(exc, "reason", str(exc)))
        try:
            recipe = resolve_recipe(recipe_id, self.cfg)
        except RecipeError as exc:
            return self._refuse_batch(user, "start", "RECIPE", str(exc), batch_id=batch_id)
        if self.sm.state.final:
            self.sm.reset(user, "new batch")
        self.recipe, self.batch_id, self.batch_user = recipe, batch_id, user
        self.alarms.set_batch(batch_id)
        self._load_tree()
        self._audit("command", user, "batch.start", f"recipe {recipe.id} v{recipe.version}",
                    {"recipe_id": recipe.id, "recipe_version": recipe.version})
        self.sm.start(user, f"recipe {recipe.id} v{recipe.version}")
        return Outcome(True, "OK", f"batch {batch_id} started", state=self.sm.state.value)

    def _load_tree(self) -> None:
        from ..behaviors.trees import batch_procedure, phase_path

        self.phases, self.phase_order, self._phase_types = {}, [], {}
        for up, op, ph in self.recipe.phases():
            path = phase_path(up, op, ph)
            sm = PhaseStateMachine(self.clock, name=path)
            sm.add_listener(lambda tr, p=path: self._on_phase_transition(p, tr))
            self.phases[path] = sm
            self.phase_order.append(path)
            self._phase_types[path] = ph.type
        self.tree = batch_procedure(self, self.recipe, self.batch_id, self.batch_user or "supervisor")
        self.active_phase = None
        self.held_reason = ""
        self._confirmed.clear()
        self._end_glove_done = self._robot_done = False

    def batch_command(self, command: str, user: str, password: str = "", meaning: str = "",
                      reason: str = "", phase: str = "") -> Outcome:
        """An ISA-88 operator command (role check; e-signature where users.yaml requires one)."""
        if command not in BATCH_COMMANDS:
            return self._refuse_batch(user, command, "INVALID",
                                      f"unknown batch command {command!r}; known: {list(BATCH_COMMANDS)}")
        perm = "step.verify" if command == "confirm" else f"batch.{command}"
        try:
            rule = self.users.authorize(user, perm)
        except Exception as exc:
            return self._refuse_batch(user, command, "PERMISSION", getattr(exc, "reason", str(exc)))
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
            lost = sorted(self._comm_lost)
            if lost:
                return self._refuse_batch(user, command, "UNSAFE",
                                          f"cannot restart: communication lost with {', '.join(lost)}")
        signature = None
        if rule.signature:
            if not password:
                return self._refuse_batch(user, command, "SIGNATURE",
                                          f"batch.{command} needs an e-signature (password and meaning)")
            subject = hashlib.sha256(json.dumps({"batch": self.batch_id, "command": command, "user": user,
                                                 "reason": reason, "t": self.now()}).encode()).hexdigest()
            try:
                signature = self.users.sign(user, password, meaning or rule.meaning or "responsibility", subject,
                                            action=perm)
            except Exception as exc:  # AuthError, ValueError
                return self._refuse_batch(user, command, "SIGNATURE", getattr(exc, "reason", str(exc)))
            if self.record is not None:
                from ..auth import record_signature

                try:
                    record_signature(self.record, signature, batch_id=self.batch_id, reason=reason)
                except Exception as exc:  # noqa: BLE001
                    log.error("signature not recorded: %r", exc)
        if command == "confirm":
            self._confirmed.add(self.active_phase.rsplit("/", 1)[-1])
            self._audit("command", user, "batch.confirm", reason, {"phase": self.active_phase})
            return Outcome(True, "OK", "confirmed", state=self.sm.state.value)
        if command == "close_record":
            self._audit("command", user, "batch.close_record", reason, {"state": self.sm.state.value})
            return Outcome(True, "OK", "batch record closed", state=self.sm.state.value)
        if command == "start":
            self._load_tree()
            self.sm.start(user, reason or "start")
        elif command == "hold":
            self._hold(reason or f"hold by {user}", trip=False, source=user, actor=user)
        elif command == "restart":
            self._restart_user = user
            self.sm.restart(user, reason or "restart")
        else:
            self.sm.fire(command, user, reason)
        self._audit("command", user, f"batch.{command}", reason, {"state": self.sm.state.value})
        if command in ("stop", "abort", "hold"):
            for _ in range(3):
                before = self.sm.state
                self._drive_batch()
                if self.sm.state is before:
                    break
        return Outcome(True, "OK", f"{command} accepted", state=self.sm.state.value)

    # ================================================================== operator device commands
    def operate(self, node: str, command: str, args: Mapping[str, Any] | None, user: str, reason: str = "",
                *, password: str = "", meaning: str = "") -> tuple[Outcome, Handle | None]:
        """Operator device command: role check + interlock engine, then forwarded to the device.

        Returns the outcome of the checks and, when forwarded, the device's handle (poll
        ``handle.done``). Refusals are recorded.
        """
        args = dict(args or {})
        if node not in NODES:
            return self._op_refuse(user, node, command, args, "INVALID",
                                   f"unknown device node {node!r}; known: {list(NODES)}"), None
        g = classify(node, command, args)
        if node == "arm" and command in ("move_to_pose", "execute_trajectory"):
            # a manual move passes every glove port too (IL-09: port free or reduced speed),
            # as a recipe's robot task does (behaviors.trees.motion_checks)
            g = replace(g, checks=g.checks + tuple(("arm.move_near_port", {"port": p.id})
                                                   for p in self.cfg.layout.isolator.glove_ports))
        who = self.users.get(user) if isinstance(user, str) else None
        if who is None or who.disabled:
            return self._op_refuse(user, node, command, args, "PERMISSION",
                                   f"unknown or disabled user {user!r}"), None
        signed = False
        if g.permission is not None:
            try:
                rule = self.users.authorize(user, g.permission)
            except Exception as exc:
                return self._op_refuse(user, node, command, args, "PERMISSION",
                                       getattr(exc, "reason", str(exc))), None
            if rule.signature:
                if not password:
                    return self._op_refuse(user, node, command, args, "SIGNATURE",
                                           f"{g.permission} needs an e-signature (IL-13); /cell/operate carries "
                                           "no password: use the HMI sign dialog"), None
                subject = hashlib.sha256(json.dumps([node, command, args, user, reason, self.now()],
                                                    default=str).encode()).hexdigest()
                try:
                    sig = self.users.sign(user, password, meaning or rule.meaning or "responsibility", subject,
                                          action=g.permission)
                except Exception as exc:
                    return self._op_refuse(user, node, command, args, "SIGNATURE",
                                           getattr(exc, "reason", str(exc))), None
                signed = True
                if self.record is not None:
                    from ..auth import record_signature

                    record_signature(self.record, sig, batch_id=self.batch_id, reason=reason)
        t = self.now()
        if any(a == "override" for a, _ in g.checks):
            self.signals.update("operator.has_required_role", True, t, "supervisor")
            self.signals.update("operator.signature_given", signed, t, "supervisor")
        try:
            ok, why = self.check(g.checks)
        finally:
            self.signals.remove("operator.has_required_role")
            self.signals.remove("operator.signature_given")
        if not ok:
            return self._op_refuse(user, node, command, args, "INTERLOCK", why), None
        h = self.port.send(node, command, args, user=user, reason=reason)
        if (node, command) in SAFE_COMMANDS:
            self.safe_commands.append((time.perf_counter(), node, command))
        self.commands.append({"t": t, "node": node, "command": command, "user": user})
        return Outcome(True, "FORWARDED", "checks passed; forwarded to the device"), h

    def recover(self, node: str, user: str, reason: str) -> Handle:
        """Explicit recovery of a latched device (an intervention, recorded)."""
        self._audit("intervention", user, f"{node}.recover", reason, {"node": node})
        return self.port.recover(node, user=user, reason=reason)

    def recover_device(self, node: str, user: str, password: str = "", meaning: str = "", reason: str = ""
                       ) -> tuple[Outcome, Handle | None]:
        """An operator's recovery of one latched device outside a batch restart (HMI, ``/cell/recover``).

        Releasing a device that an interlock or a communication loss made safe is a critical
        action: users.yaml ``device.recover`` (role, e-signature with meaning, stated reason).
        Refused while a batch is Running or Restarting (its devices are not latched then, or the
        signed restart is already recovering them). Returns the outcome of the checks and, when
        sent, the device's handle (poll ``handle.done``). Refusals are recorded.
        """
        def refuse(code: str, why: str) -> tuple[Outcome, None]:
            return self._op_refuse(user, node, "recover", {}, code, why), None

        if node not in NODES:
            return refuse("INVALID", f"unknown device node {node!r}; known: {list(NODES)}")
        try:
            rule = self.users.authorize(user, "device.recover")
        except Exception as exc:  # AuthError
            return refuse("PERMISSION", getattr(exc, "reason", str(exc)))
        if not isinstance(reason, str) or not reason.strip():
            return refuse("INVALID", "a recovery needs a stated reason (what was found and put right)")
        if self.sm.state in (S.RUNNING, S.RESTARTING):
            return refuse("STATE", f"the batch is {self.sm.state.value}: hold it first (a signed restart "
                                   "recovers the latched devices)")
        if not self.port.latched(node):
            return refuse("STATE", f"{node} is not latched: nothing to recover")
        if rule.signature:
            if not password:
                return refuse("SIGNATURE", "device.recover needs an e-signature (password and meaning)")
            subject = hashlib.sha256(json.dumps({"batch": self.batch_id, "recover": node, "user": user,
                                                 "reason": reason, "t": self.now()}).encode()).hexdigest()
            try:
                signature = self.users.sign(user, password, meaning or rule.meaning or "responsibility", subject,
                                            action="device.recover")
            except Exception as exc:  # AuthError, ValueError
                return refuse("SIGNATURE", getattr(exc, "reason", str(exc)))
            if self.record is not None:
                from ..auth import record_signature

                try:
                    record_signature(self.record, signature, batch_id=self.batch_id, reason=reason)
                except Exception as exc:  # noqa: BLE001
                    log.error("signature not recorded: %r", exc)
        return Outcome(True, "FORWARDED", f"recovery of {node} sent"), self.recover(node, user, reason)

    def acknowledge_alarm(self, alarm_id: str, user: str, comment: str = "") -> Outcome:
        try:
            self.users.authorize(user, "alarm.ack")
            self.alarms.acknowledge(alarm_id, self.users.get(user) or user, comment)
        except Exception as exc:
            return Outcome(False, "REFUSED", getattr(exc, "reason", str(exc)))
        return Outcome(True, "OK", "acknowledged")

    def shelve_alarm(self, alarm_id: str, user: str, password: str = "", meaning: str = "", reason: str = "",
                     duration_s: float = 0.0) -> Outcome:
        """Shelve an alarm for ``duration_s`` (ISA-18.2 §11.3; users.yaml ``alarm.shelve``:
        supervisor, e-signed, with a reason; only alarms rationalised as shelvable, at most
        ``max_shelve_s``), or end a shelve early with ``duration_s`` <= 0 (same role, no
        signature). The alarm manager records both."""
        from ..alarms import AlarmError

        try:
            rule = self.users.authorize(user, "alarm.shelve")
        except Exception as exc:  # AuthError
            return Outcome(False, "PERMISSION", getattr(exc, "reason", str(exc)))
        who = self.users.get(user) or user
        if not isinstance(duration_s, (int, float)) or math.isnan(duration_s):
            return Outcome(False, "INVALID", f"duration_s must be a number, got {duration_s!r}")
        try:
            if duration_s <= 0:
                self.alarms.unshelve(alarm_id, who, reason)
                return Outcome(True, "OK", f"{alarm_id} unshelved")
            signature = None
            if rule.signature:
                if not password:
                    return Outcome(False, "SIGNATURE", "alarm.shelve needs an e-signature (password and meaning)")
                subject = self.alarms.shelve_subject_hash(alarm_id, who, reason, float(duration_s))
                try:
                    signature = self.users.sign(user, password, meaning or rule.meaning or "responsibility",
                                                subject, action="alarm.shelve")
                except Exception as exc:  # AuthError, ValueError
                    return Outcome(False, "SIGNATURE", getattr(exc, "reason", str(exc)))
            self.alarms.shelve(alarm_id, who, reason, float(duration_s), signature=signature)
        except (AlarmError, KeyError) as exc:
            return Outcome(False, "REFUSED", str(exc).strip("'\""))
        if signature is not None and self.record is not None:
            from ..auth import record_signature

            try:
                record_signature(self.record, signature, batch_id=self.batch_id, reason=reason)
            except Exception as exc:  # noqa: BLE001
                log.error("signature not recorded: %r", exc)
        return Outcome(True, "OK", f"{alarm_id} shelved for {float(duration_s):g} s")

    # ================================================================== tick
    def tick(self) -> None:
        self.refresh_signals()
        self._watch_comm()
        self.statuses = self.engine.evaluate_all()
        self._on_tick_rules(self.statuses)
        for _ in range(4):  # run transient states to their stable successor within this tick
            before = self.sm.state
            self._drive_batch()
            if self.sm.state is before:
                break
        self._record_events()
        self._process_alarms()
        self.alarms.tick()
        self.tick_count += 1

    def _active_actions(self) -> set[str]:
        act: set[str] = set()
        if self.signal("arm.moving") is not False:  # moving or unknown
            act |= {"arm.move", "arm.move_process"}
        if self.signal("arm.drives_enabled") is not False:
            act.add("arm.enable")
        if self.active_phase and self._phase_types.get(self.active_phase) == "robot_task":
            act.add("arm.move_process")
        return act

    def _on_tick_rules(self, statuses: Sequence[RuleStatus]) -> None:
        if not self._all_seen:  # devices still coming up (lifecycle manager's job): nothing to trip yet
            self._all_seen = all(any(s.source == dev for s in self.signals._entries.values())  # noqa: SLF001
                                 for dev in self.port.node_devices.values())
            if not self._all_seen:
                return
        active = self._active_actions()
        for s in statuses:
            if s.on_tick is None:
                continue
            relevant = bool(active.intersection(s.guards))
            if s.satisfied or not relevant:
                self._tripped.discard(s.key)
                continue
            if s.key in self._tripped:
                continue
            self._tripped.add(s.key)
            why = "; ".join(c.text for c in s.clauses)
            node, cmd = TRIP_REACTIONS.get(s.on_tick, (None, None))
            if node is not None:
                args = {"reason": f"{s.rule_id}: {why}"}
                self.send(node, cmd, args, reason=f"interlock trip {s.rule_id}", user="supervisor")
            self._trip(s.rule_id, s.title, why, s.on_tick)

    def _trip(self, rule_id: str, title: str, why: str, reaction: str) -> None:
        entry = {"t": self.now(), "rule": rule_id, "title": title, "reason": why, "reaction": reaction,
                 "batch_state": self.sm.state.value}
        self.trips.append(entry)
        self._audit("trip", "system", f"interlock.{rule_id}", why, entry)
        self._raise_alarm("CELL_INTERLOCK_TRIP", f"{rule_id} {title}: {why}")
        if self.sm.state in (S.RUNNING, S.PAUSING, S.PAUSED, S.RESTARTING):
            self._hold(f"interlock trip {rule_id}: {why}", trip=True, source=rule_id)

    def _hold(self, reason: str, *, trip: bool, source: str, actor: str = "system") -> None:
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
            if trip and source not in {t["rule"] for t in self.trips[-1:]}:
                self.trips.append({"t": self.now(), "rule": source, "title": "phase failure", "reason": reason,
                                   "reaction": "hold_batch", "batch_state": "Running"})
                self._audit("trip", "system", "batch.hold", reason, {"source": source})
                self._raise_alarm("CELL_INTERLOCK_TRIP", reason)
        elif st is S.PAUSED:
            self.sm.resume("system", "hold requested while paused")
            self._hold(reason, trip=trip, source=source, actor=actor)

    def _restart_ready(self) -> bool:
        """The signed restart's device steps, in order, across ticks: recover every latched node,
        then reset the arm's protective stop (ISO 10218-1: a deliberate manual action; the signed
        restart is that action, recorded as an intervention). True once all have been answered;
        a refusal or no answer within RESTART_TIMEOUT_S holds the batch again with the reason."""
        user = self._restart_user or "system"
        if self._restart_step is None:
            self._tripped.clear()  # re-arm the on-tick rules: a still-violated rule trips again
            self._restart_step = ("recover", [self.recover(node, user, f"batch restart: {self.held_reason}")
                                              for node in NODES if self.port.latched(node)], time.monotonic())
        while True:
            step, handles, t0 = self._restart_step
            failed = [h for h in handles if h.done and not h.accepted]
            if failed or (time.monotonic() - t0 > RESTART_TIMEOUT_S and not all(h.done for h in handles)):
                why = "; ".join(f"{h.node}.{h.command} refused: {h.code}: {h.reason}" for h in failed) or (
                    f"no answer to {', '.join(f'{h.node}.{h.command}' for h in handles if not h.done)} "
                    f"within {RESTART_TIMEOUT_S:g} s")
                self._restart_step = None
                self._hold(f"restart failed: {why}", trip=True, source="restart")
                return False
            if not all(h.done for h in handles):
                return False
            if step == "recover" and self.signal("arm.protective_stop") is not False:
                self._audit("intervention", user, "arm.reset_protective_stop", "batch restart", {"node": "arm"})
                self._restart_step = ("reset", [self.port.send("arm", "reset_protective_stop", {}, user=user,
                                                               reason="batch restart")], time.monotonic())
                continue  # answered at once by an in-process cell; over ROS on a later tick
            self._restart_step = None
            return True

    def _drive_batch(self) -> None:
        st = self.sm.state
        if st is not S.RESTARTING:
            self._restart_step = None  # an abort/stop during Restarting drops its unfinished steps
        if st is S.HOLDING:
            self._stop_tree()
            if self.active_phase and self.phases[self.active_phase].can("hold"):
                self.phases[self.active_phase].hold("system", self.held_reason)
                self.phases[self.active_phase].done("system", "held")
            if self._hold_is_trip:
                self._all_safe(self.held_reason)
            self.sm.done("system", "held: devices safe")
        elif st is S.RESTARTING:
            if not self._restart_ready():
                return  # recoveries in flight: stay Restarting (nothing moves meanwhile)
            user = self._restart_user or "system"
            if self.active_phase and self.phases[self.active_phase].state is S.HELD:
                self.phases[self.active_phase].restart(user, "batch restart")
                self.phases[self.active_phase].done("system", "restarted")
            self.held_reason = ""
            self.sm.done(user, "restarted")
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
            self._all_safe("batch aborted")
            self.sm.done("system", "aborted")

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
        if self.tree.status == Status.SUCCESS and self.sm.state is S.RUNNING:
            self.sm.done("system", "procedure complete")
        elif self.tree.status == Status.FAILURE and self.sm.state in (S.RUNNING, S.PAUSING):
            from ..behaviors.base import _first_failure_reason

            why = self._pending_failure or f"procedure failed: {_first_failure_reason(self.tree)}"
            self._hold(why, trip=True, source="procedure")

    def _stop_tree(self) -> None:
        if self.tree is not None and self.tree.status != Status.INVALID:
            self.tree.stop(Status.INVALID)

    def _all_safe(self, why: str) -> None:
        for node in SAFE_ORDER:
            if not self.port.latched(node):
                self.send(node, "safe_state", {"reason": why[:200]}, reason=why[:200], user="supervisor")

    def _watch_comm(self) -> None:
        for node, dev in self.port.node_devices.items():
            lost = self.signals.comm_lost(dev)
            if lost and node not in self._comm_lost:
                self._comm_lost.add(node)
                self._raise_alarm(f"{dev}_COMM_LOSS", f"communication with {dev} lost")
                self._audit("alarm", "system", f"{dev}.comm_lost", "communication lost", {})
            elif not lost and node in self._comm_lost:
                self._comm_lost.discard(node)
                try:
                    self.alarms.clear(f"{dev}_COMM_LOSS")
                except Exception:  # noqa: BLE001
                    pass

    # ================================================================== observation / record
    def _on_batch_transition(self, tr: Any) -> None:
        self.timeline.append({"t": tr.t, "level": "batch", "what": self.batch_id, "from": tr.old.value,
                              "to": tr.new.value, "by": tr.actor, "reason": tr.reason})
        self._audit("phase_transition", tr.actor, f"batch.{tr.command.value}", tr.reason,
                    {"level": "batch", "from": tr.old.value, "to": tr.new.value})
        try:
            self.alarms.set_design_state("batch_active", tr.new not in (S.IDLE, S.COMPLETE, S.STOPPED, S.ABORTED))
        except KeyError:
            pass

    def _on_phase_transition(self, path: str, tr: Any) -> None:
        self.timeline.append({"t": tr.t, "level": "phase", "what": path, "from": tr.old.value,
                              "to": tr.new.value, "by": tr.actor, "reason": tr.reason})
        self._audit("phase_transition", tr.actor, f"phase.{tr.command.value}", tr.reason,
                    {"level": "phase", "phase": path, "from": tr.old.value, "to": tr.new.value})

    def _on_alarm(self, ev: Any) -> None:
        try:
            self.alarm_log.append({"t": getattr(ev, "time", None), "alarm": getattr(ev, "alarm_id", ""),
                                   "event": getattr(ev, "event", ""), "state": str(getattr(ev, "state", ""))})
        except Exception:  # noqa: BLE001 - observation
            pass

    def _process_alarms(self) -> None:
        """ISA-18.2 process alarms (config/alarms.yaml) evaluated from the device signals every
        tick: raised when the condition appears, cleared (return to normal) when it goes. An
        unknown signal does not clear an active alarm (unknown is not normal)."""
        lay = self.cfg.layout
        iso, arm = lay.isolator.id, lay.robot.id
        p = lay.isolator.pressure
        release = float(self.cfg.interlocks.parameters.get("h2o2_release_ppm", 1.0))
        dp = self.signal("isolator.dp_pa")
        ppm = self.signal("vhp.h2o2_ppm")
        active_cycle = self.signal("vhp.cycle_active")
        flow_ok = self.signal("isolator.particles.sample_flow_ok")
        pstop = self.signal("arm.protective_stop")
        conditions = {
            # (condition: True raise / False clear / None unknown, message)
            f"{iso}_DP_LOW": (None if dp is None else dp < p.alarm_low_pa,
                              f"isolator dP {dp} Pa below {p.alarm_low_pa} Pa"),
            f"{iso}_DP_HIGH": (None if dp is None else dp > p.alarm_high_pa,
                               f"isolator dP {dp} Pa above {p.alarm_high_pa} Pa"),
            f"{iso}_PART_SAMPLE_FLOW": (None if flow_ok is None else not flow_ok, "particle counter sample flow low"),
            f"{iso}_H2O2_ABOVE_RELEASE": (None if ppm is None or active_cycle is None else
                                          (ppm >= release and not active_cycle),
                                          f"H2O2 {ppm} ppm at or above the release limit {release} ppm"),
            f"{arm}_PROTECTIVE_STOP": (None if pstop is None else bool(pstop), "robot protective stop"),
        }
        active = self._process_alarm_active
        for aid, (cond, message) in conditions.items():
            try:
                if cond and aid not in active:
                    self.alarms.raise_(aid, message=message)
                    active.add(aid)
                elif cond is False and aid in active:
                    self.alarms.clear(aid)
                    active.discard(aid)
            except KeyError:  # not defined in this site's alarms.yaml
                continue
            except Exception as exc:  # noqa: BLE001 - alarm handling must never stop supervision
                log.error("process alarm %s: %r", aid, exc)

    def _raise_alarm(self, alarm_id: str, message: str) -> None:
        try:
            self.alarms.raise_(alarm_id, message=message[:500])
        except Exception as exc:  # noqa: BLE001 - unknown id must not stop supervision
            log.error("alarm %s: %r", alarm_id, exc)

    def _audit(self, kind: str, actor: str, action: str, reason: str, payload: Mapping[str, Any]) -> None:
        if self.record is None:
            return
        try:
            self.record.append(kind, batch_id=self.batch_id, actor=actor or "system", action=action,
                               reason=str(reason)[:2000], payload=_clean(payload))
        except Exception as exc:  # noqa: BLE001 - observation never becomes control
            log.error("record append failed (%s %s): %r", kind, action, exc)

    def _refusal(self, user: str, node: str, command: str, args: Mapping[str, Any], code: str, why: str,
                 *, source: str) -> None:
        entry = {"t": self.now(), "source": source, "user": user, "device": node, "command": command,
                 "args": _clean(args), "code": code, "reason": why}
        self.refusals.append(entry)
        self._audit("refusal", user or "system", f"{node}.{command}", why, entry)

    def _op_refuse(self, user: str, node: str, command: str, args: Mapping[str, Any], code: str, why: str
                   ) -> Outcome:
        self._refusal(user if isinstance(user, str) and user else "unknown", node, command, args, code, why,
                      source="operate")
        return Outcome(False, code, why)

    def _refuse_batch(self, user: str, command: str, code: str, why: str, batch_id: str | None = None) -> Outcome:
        entry = {"t": self.now(), "source": "batch", "user": user, "command": command, "code": code,
                 "reason": why}
        self.refusals.append(entry)
        self._audit("refusal", user if isinstance(user, str) and user.strip() else "unknown",
                    f"batch.{command}", why, entry)
        return Outcome(False, code, why, state=self.sm.state.value)

    def _record_events(self) -> None:
        events = self.port.drain_events()
        if not events:
            return
        kinds = {"command": "command", "refusal": "refusal", "cycle_result": "cycle_result", "latched": "trip",
                 "recovered": "intervention", "comm_lost": "alarm", "comm_restored": "alarm"}
        for ev in events:
            if ev.get("event") == "refusal" and ev.get("node") and ev.get("code"):
                self.refusals.append({"t": ev.get("t"), "source": "device", "user": ev.get("user", ""),
                                      "device": ev.get("node"), "command": ev.get("command"),
                                      "code": ev.get("code"), "reason": ev.get("detail")})
            kind = kinds.get(ev.get("event", ""))
            if kind is None or self.record is None or kind == "cycle_result":
                continue
            self._audit(kind, str(ev.get("user") or "system"),
                        f"{ev.get('device', '')}.{ev.get('command', ev.get('event'))}",
                        str(ev.get("detail") or ev.get("reason") or ""), {k: v for k, v in ev.items() if k != "event"})

    # ================================================================== views
    def status(self) -> dict[str, Any]:
        ph = self.active_phase or ""
        up, op, name = (ph.split("/") + ["", "", ""])[:3] if ph else ("", "", "")
        done = sum(1 for p in self.phases.values() if p.state is S.COMPLETE)
        return {"batch_id": self.batch_id, "recipe_id": self.recipe.id if self.recipe else "",
                "recipe_version": self.recipe.version if self.recipe else 0,
                "state": self.sm.state.value, "packml_state": self.sm.packml_state.value,
                "unit_procedure": up, "operation": op, "phase": name,
                "phase_state": self.phases[ph].state.value if ph in self.phases else "",
                "progress": done / len(self.phases) if self.phases else 0.0, "held_reason": self.held_reason}

    def tree_snapshot(self) -> list[tuple[str, str, str, int, str]]:
        """(name, type, status, parent index, message) in depth-first order."""
        if self.tree is None:
            return []
        out: list[tuple[str, str, str, int, str]] = []

        def walk(node: Any, parent: int) -> None:
            idx = len(out)
            out.append((node.name, type(node).__name__, node.status.value, parent, node.feedback_message or ""))
            for c in node.children:
                walk(c, idx)

        walk(self.tree, -1)
        return out

    def summary(self) -> dict[str, Any]:
        vhp = self.results.get("vhp") or {}
        ac = self.results.get("autoclave") or {}
        return {
            "result": "PASS" if self.sm.state is S.COMPLETE else "FAIL",
            "batch_id": self.batch_id, "recipe_id": self.recipe.id if self.recipe else "",
            "batch_state": self.sm.state.value, "held_reason": self.held_reason,
            "vhp": {"result": vhp.get("result"), "aeration_end_ppm": vhp.get("aeration_end_ppm"),
                    "run_id": vhp.get("run_id")},
            "autoclave": {"result": ac.get("result"), "f0_min": ac.get("f0_min"), "run_id": ac.get("run_id")},
            "trips": list(self.trips), "refusals": list(self.refusals),
            "alarms": [a for a in self.alarm_log if a.get("event") in ("raised", "raised_hidden")],
            "timeline": [e for e in self.timeline],
        }


def _finite_json(v: Any) -> bool:
    try:
        json.dumps(v, allow_nan=False)
        return True
    except (TypeError, ValueError):
        return False


def _clean(d: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, float) and not math.isfinite(v):
            out[k] = None
        elif _finite_json(v):
            out[k] = v
        else:
            out[k] = str(v)
    return out
