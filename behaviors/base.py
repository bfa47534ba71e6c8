"""Behaviours: device actions, conditions and interlock guards.

Every behaviour gets a *context* (the supervisor core, :class:`aseptic_cell.supervisor.core.Supervisor`
or anything with the same methods) in ``__init__`` and only stores it: a tree builds and
renders offline. Device goals are sent in ``initialise()``, polled in ``update()`` (never
blocking: the port returns a handle at once), and ``terminate(INVALID)`` cancels the goal and
leaves the device safe (abort the cycle, protective stop the arm) — HABITS 1.

Interlock guards (:class:`InterlockGuard`) ask the interlock engine on every tick; they are
placed first in a ``Sequence(memory=False)`` (:func:`guarded`) so that a guard turning false
invalidates the running subtree, whose ``terminate()`` makes things safe — HABITS 2.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import py_trees
from py_trees.common import Status

from ..config import CellConfig

Check = tuple[str, dict[str, str]]


class Context(Protocol):
    """What behaviours need from the supervisor core."""

    cfg: CellConfig
    port: Any
    """The cell port (cancel a command in flight; its transport allowance)."""

    def now(self) -> float: ...

    def wall(self) -> float:
        """Monotonic wall time (s): the transport allowance of waits is wall time."""

    def signal(self, name: str) -> Any:
        """Latest fresh value of a signal, or None (missing, stale, comm lost)."""

    def check(self, checks: Sequence[Check]) -> tuple[bool, str]:
        """Evaluate interlock actions now: (allowed, reason)."""

    def send(self, node: str, command: str, args: dict[str, Any], *, reason: str = "",
             checks: Sequence[Check] = ()) -> Any:
        """Check the interlocks, then send through the port; returns a handle (refusals are
        recorded and returned as a finished, not accepted handle)."""

    def make_safe(self, node: str, why: str) -> None:
        """Send the node's safe command (protective stop, cycle abort)."""

    def publish_result(self, key: str, value: Any) -> None:
        """Store a phase result (cycle report) for the batch record / summary."""

    def confirmed(self, phase_id: str) -> bool:
        """Has an operator confirmed the prompt of ``phase_id``?"""

    def updated_since(self, node: str, handle: Any) -> bool:
        """Do ``node``'s signals already reflect the answer of ``handle`` (transport lag)?"""


class _CtxBehaviour(py_trees.behaviour.Behaviour):
    def __init__(self, name: str, ctx: Context) -> None:
        super().__init__(name)
        self.ctx = ctx
        self.reason = ""

    def fail(self, why: str) -> Status:
        self.reason = why
        self.feedback_message = why
        return Status.FAILURE


class InterlockGuard(_CtxBehaviour):
    """SUCCESS while every listed interlock action is allowed; FAILURE (with the reasons) otherwise."""

    def __init__(self, name: str, ctx: Context, checks: Sequence[Check]) -> None:
        super().__init__(name, ctx)
        self.checks = tuple((a, dict(b)) for a, b in checks)

    def update(self) -> Status:
        ok, why = self.ctx.check(self.checks)
        if ok:
            self.feedback_message = "allowed"
            return Status.SUCCESS
        return self.fail(why)


class SignalGuard(_CtxBehaviour):
    """SUCCESS while ``signal op value`` holds for every condition (unknown = FAILURE)."""

    def __init__(self, name: str, ctx: Context, conditions: Sequence[tuple[str, Any]]) -> None:
        super().__init__(name, ctx)
        self.conditions = tuple(conditions)

    def update(self) -> Status:
        bad = []
        for sig, expected in self.conditions:
            v = self.ctx.signal(sig)
            if v != expected or v is None:
                bad.append(f"{sig} = {v!r} (required {expected!r})")
        if bad:
            return self.fail("; ".join(bad))
        return Status.SUCCESS


def guarded(name: str, guard: py_trees.behaviour.Behaviour, body: py_trees.behaviour.Behaviour
            ) -> py_trees.composites.Sequence:
    """``Sequence(memory=False)[guard, body]``: the guard is re-checked on every tick."""
    seq = py_trees.composites.Sequence(name, memory=False)
    seq.add_children([guard, body])
    return seq


class DeviceCommand(_CtxBehaviour):
    """Send one catalogue command (interlock-checked) and wait for the device's answer."""

    def __init__(self, name: str, ctx: Context, node: str, command: str, args: dict[str, Any] | None = None,
                 *, checks: Sequence[Check] | None = None, reason: str = "") -> None:
        super().__init__(name, ctx)
        self.node, self.command, self.args = node, command, dict(args or {})
        self.checks = None if checks is None else tuple(checks)
        self.why = reason or name
        self.handle: Any = None

    def initialise(self) -> None:
        self.reason = ""
        self.handle = self.ctx.send(self.node, self.command, self.args, reason=self.why,
                                    checks=self.checks if self.checks is not None else ())

    def update(self) -> Status:
        h = self.handle
        if h is None or not h.done:
            return Status.RUNNING
        if h.accepted:
            self.feedback_message = "done"
            return Status.SUCCESS
        return self.fail(f"{self.node}.{self.command} refused: {h.code}: {h.reason}")

    def terminate(self, new_status: Status) -> None:
        if new_status == Status.INVALID and self.handle is not None and not self.handle.done:
            self.ctx.port.cancel(self.handle)
        self.handle = None if new_status == Status.INVALID else self.handle


def _transport_allowance_passed(ctx: Any, wall_start: float) -> bool:
    """Timeouts are in sim time, but device state crosses a transport in wall time: at a high
    sim speed-up many sim seconds pass before a device's answer can arrive. A wait therefore
    expires only once the port's wall-time transport allowance has passed too (0 in process)."""
    allowance = float(getattr(ctx.port, "transport_allowance_s", 0.0))
    return ctx.wall() - wall_start >= allowance


class WaitFor(_CtxBehaviour):
    """RUNNING until ``predicate(ctx)`` is true; FAILURE after ``timeout_s`` of (sim) time."""

    def __init__(self, name: str, ctx: Context, predicate: Callable[[Context], bool], timeout_s: float,
                 *, fail_if: Callable[[Context], str | None] | None = None,
                 explain: Callable[[Context], str] | None = None) -> None:
        super().__init__(name, ctx)
        self.explain = explain
        self.predicate = predicate
        self.timeout_s = timeout_s
        self.fail_if = fail_if
        self.t0 = 0.0

    def initialise(self) -> None:
        self.t0 = self.ctx.now()
        self.w0 = self.ctx.wall()

    def update(self) -> Status:
        if self.fail_if is not None:
            why = self.fail_if(self.ctx)
            if why:
                return self.fail(why)
        if self.predicate(self.ctx):
            return Status.SUCCESS
        if self.ctx.now() - self.t0 > self.timeout_s and _transport_allowance_passed(self.ctx, self.w0):
            why = f": {self.explain(self.ctx)}" if self.explain is not None else ""
            return self.fail(f"not reached within {self.timeout_s:g} s{why}")
        return Status.RUNNING


class HoldFor(_CtxBehaviour):
    """A timed process hold on (sim) time."""

    def __init__(self, name: str, ctx: Context, duration_s: float) -> None:
        super().__init__(name, ctx)
        self.duration_s = float(duration_s)
        self.t0 = 0.0

    def initialise(self) -> None:
        self.t0 = self.ctx.now()

    def update(self) -> Status:
        left = self.duration_s - (self.ctx.now() - self.t0)
        self.feedback_message = f"{max(left, 0.0):.0f} s left"
        return Status.SUCCESS if left <= 0 else Status.RUNNING


class OperatorConfirm(_CtxBehaviour):
    """Waits for the operator's confirmation of this phase (BatchCommand ``confirm``)."""

    def __init__(self, name: str, ctx: Context, phase_id: str, prompt: str) -> None:
        super().__init__(name, ctx)
        self.phase_id, self.prompt = phase_id, prompt

    def update(self) -> Status:
        self.feedback_message = f"waiting for confirmation: {self.prompt}"
        return Status.SUCCESS if self.ctx.confirmed(self.phase_id) else Status.RUNNING


class RunCycle(_CtxBehaviour):
    """Start a VHP cycle or an autoclave program, follow it on the signals, fetch the result.

    SUCCESS only on a PASS result; the report is published under ``result_key``.
    ``terminate(INVALID)`` while the cycle runs aborts it (the device's safe command).
    """

    ACTIVE = {"vhp": "vhp.cycle_active", "autoclave": "autoclave.cycle_active"}

    def __init__(self, name: str, ctx: Context, node: str, start_args: dict[str, Any], result_key: str,
                 *, timeout_s: float, checks: Sequence[Check] = ()) -> None:
        super().__init__(name, ctx)
        self.node, self.start_args, self.result_key = node, dict(start_args), result_key
        self.timeout_s = timeout_s
        self.checks = tuple(checks)
        self.stage = "idle"
        self.handle: Any = None
        self.t0 = 0.0
        self.seen_active = False

    def initialise(self) -> None:
        self.reason = ""
        self.t0 = self.ctx.now()
        self.seen_active = False
        self.t_running = self.t0
        self.stage = "starting"
        command = "start_cycle" if self.node == "vhp" else "start_program"
        self.handle = self.ctx.send(self.node, command, self.start_args, reason=self.name, checks=self.checks)

    def update(self) -> Status:
        h = self.handle
        if self.stage == "starting":
            if not h.done:
                return Status.RUNNING
            if not h.accepted:
                return self.fail(f"{self.node} cycle refused: {h.code}: {h.reason}")
            if not self.ctx.updated_since(self.node, h):  # signals older than the start (ROS lag)
                return Status.RUNNING
            self.stage = "running"
            self.t_running = self.ctx.now()
        if self.stage == "running":
            active = self.ctx.signal(self.ACTIVE[self.node])
            self.seen_active = self.seen_active or active is True
            self.feedback_message = f"{self.node} {self.ctx.signal('vhp.phase') if self.node == 'vhp' else ''}"
            # the cycle ended: seen running and now not, or never seen running (failed at once)
            if active is False and (self.seen_active or self.ctx.now() - self.t_running > 60.0):
                self.stage = "result"
                self.handle = self.ctx.send(self.node, "get_result", {}, reason=self.name)
                return Status.RUNNING
            if self.ctx.now() - self.t0 > self.timeout_s:
                self.ctx.make_safe(self.node, f"{self.name}: cycle did not end within {self.timeout_s:g} s")
                return self.fail(f"{self.node} cycle did not end within {self.timeout_s:g} s")
            return Status.RUNNING
        if self.stage == "result":
            if not h.done:
                return Status.RUNNING
            report = (h.payload or {}).get("result") if h.accepted else None
            self.stage = "done"
            if not isinstance(report, dict):
                return self.fail(f"{self.node}: no cycle result ({h.code}: {h.reason})")
            self.ctx.publish_result(self.result_key, report)
            verdict = report.get("result")
            if verdict != "PASS":
                reasons = "; ".join(str(r) for r in report.get("reasons", []) or [])
                return self.fail(f"{self.node} cycle {verdict}: {reasons}")
            self.feedback_message = "PASS"
            return Status.SUCCESS
        return Status.FAILURE

    def terminate(self, new_status: Status) -> None:
        if new_status == Status.INVALID and self.stage in ("starting", "running"):
            if self.stage == "running" or (self.handle is not None and self.handle.accepted):
                self.ctx.make_safe(self.node, f"{self.name} interrupted")
        if new_status == Status.INVALID:
            self.stage, self.handle = "idle", None


class MoveArm(_CtxBehaviour):
    """Move the arm to a named pose through a planned, collision-checked trajectory.

    The interlocks of a process motion (``arm.move_process``), of motion near each glove port
    (IL-09) and of entering a door's swept volume (RB-04) are checked before the goal is sent;
    the arm node / in-process cell checks the trajectory itself. ``terminate(INVALID)``
    while moving sends a protective stop.
    """

    def __init__(self, name: str, ctx: Context, pose: str, speed_class: str = "transit",
                 checks: Sequence[Check] = ()) -> None:
        super().__init__(name, ctx)
        self.pose, self.speed_class = pose, speed_class
        self.checks = tuple(checks)
        self.handle: Any = None
        self.t_end = 0.0

    def initialise(self) -> None:
        self.reason = ""
        self.handle = self.ctx.send("arm", "move_to_pose", {"pose": self.pose, "speed_class": self.speed_class},
                                    reason=f"robot task: to {self.pose}", checks=self.checks)
        self.t_end = 0.0

    def update(self) -> Status:
        h = self.handle
        if not h.done:
            return Status.RUNNING
        if not h.accepted:
            return self.fail(f"move to {self.pose} refused: {h.code}: {h.reason}")
        if not self.ctx.updated_since("arm", h):  # signals older than the accepted move (ROS lag)
            return Status.RUNNING
        if not self.t_end:
            self.t_end = h.t_sent + float(h.payload.get("duration_s", 0.0))
        if self.ctx.signal("arm.protective_stop"):
            return self.fail(f"protective stop while moving to {self.pose}")
        if self.ctx.now() >= self.t_end and self.ctx.signal("arm.moving") is False:
            return Status.SUCCESS
        self.feedback_message = f"moving to {self.pose}"
        return Status.RUNNING

    def terminate(self, new_status: Status) -> None:
        if new_status == Status.INVALID and self.handle is not None and self.handle.accepted:
            if self.ctx.signal("arm.moving") is not False:
                self.ctx.make_safe("arm", f"move to {self.pose} interrupted")
        if new_status == Status.INVALID:
            self.handle = None


class PhaseNode(py_trees.decorators.Decorator):
    """One ISA-88 phase: reports to the executive and is skipped once Complete (restart after
    a hold re-runs only the phase that was interrupted)."""

    def __init__(self, name: str, ctx: Any, phase_path: str, child: py_trees.behaviour.Behaviour) -> None:
        super().__init__(name=name, child=child)
        self.ctx = ctx
        self.phase_path = phase_path
        self._started = False

    def tick(self):  # noqa: ANN201 - py_trees generator protocol
        if self.ctx.phase_is_complete(self.phase_path):
            self.status = Status.SUCCESS
            yield self
            return
        if not self._started:
            if self.ctx.wait_at_boundary(self.phase_path):  # pausing: wait before the next phase
                self.status = Status.RUNNING
                yield self
                return
            if self.status == Status.RUNNING:
                self.initialise()
        yield from super().tick()

    def initialise(self) -> None:
        self._started = True
        self.ctx.phase_started(self.phase_path)

    def terminate(self, new_status: Status) -> None:
        self._started = False

    def update(self) -> Status:
        st = self.decorated.status
        if st == Status.SUCCESS:
            self.ctx.phase_finished(self.phase_path)
        elif st == Status.FAILURE:
            self.ctx.phase_failed(self.phase_path, _first_failure_reason(self.decorated))
        return st


def _first_failure_reason(node: py_trees.behaviour.Behaviour) -> str:
    for n in node.iterate():
        reason = getattr(n, "reason", "")
        if n.status == Status.FAILURE and reason:
            return f"{n.name}: {reason}"
    return f"{node.name} failed"
