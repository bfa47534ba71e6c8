"""ISA-88 (IEC 61512) phase state machine [ISA88], and its PackML (OPC 30050) view [OPC30050].

Pure: no I/O, no threads, time from an injected clock. Listeners are told about every
transition; a listener that raises is logged and never affects the state machine
(ARCHITECTURE rule 4, observation never becomes control).

Transitions (ISA-88 phase states [ISA88] [DELTAV]; ``done`` is the internal event that ends a
transient state)::

    Idle        --start-->   Running     --done--> Complete
    Running     --hold-->    Holding     --done--> Held
    Held        --restart--> Restarting  --done--> Running
    Running     --pause-->   Pausing     --done--> Paused
    Paused      --resume-->  Running
    Running | Held | Paused           --stop-->  Stopping  --done--> Stopped
    every state except Complete, Stopped, Aborted (final) and Aborting
                                      --abort--> Aborting  --done--> Aborted
    Complete | Stopped | Aborted      --reset--> Idle

Anything else raises :class:`IllegalCommand` and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

__all__ = [
    "EXTERNAL_COMMANDS", "FINAL_STATES", "PACKML_STATE", "STABLE_STATES", "TRANSIENT_STATES", "TRANSITIONS",
    "IllegalCommand", "PackMLState", "PhaseCommand", "PhaseState", "PhaseStateMachine", "Transition",
    "allowed_commands", "to_packml",
]

log = logging.getLogger(__name__)


class PhaseState(StrEnum):
    IDLE = "Idle"
    RUNNING = "Running"
    COMPLETE = "Complete"
    HOLDING = "Holding"
    HELD = "Held"
    RESTARTING = "Restarting"
    PAUSING = "Pausing"
    PAUSED = "Paused"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    ABORTING = "Aborting"
    ABORTED = "Aborted"

    @property
    def stable(self) -> bool:
        return self in STABLE_STATES

    @property
    def transient(self) -> bool:
        return self in TRANSIENT_STATES

    @property
    def final(self) -> bool:
        """Complete, Stopped, Aborted: left only by ``reset``."""
        return self in FINAL_STATES


class PhaseCommand(StrEnum):
    START = "start"
    HOLD = "hold"
    RESTART = "restart"
    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"
    ABORT = "abort"
    RESET = "reset"
    DONE = "done"
    """Internal event: the phase logic finished the work of a transient state."""


S, C = PhaseState, PhaseCommand

STABLE_STATES = frozenset({S.IDLE, S.COMPLETE, S.HELD, S.PAUSED, S.STOPPED, S.ABORTED})
TRANSIENT_STATES = frozenset({S.RUNNING, S.HOLDING, S.RESTARTING, S.PAUSING, S.STOPPING, S.ABORTING})
FINAL_STATES = frozenset({S.COMPLETE, S.STOPPED, S.ABORTED})
EXTERNAL_COMMANDS = tuple(c for c in PhaseCommand if c is not C.DONE)


def _table() -> dict[tuple[PhaseState, PhaseCommand], PhaseState]:
    t = {
        (S.IDLE, C.START): S.RUNNING,
        (S.RUNNING, C.HOLD): S.HOLDING,
        (S.HELD, C.RESTART): S.RESTARTING,
        (S.RUNNING, C.PAUSE): S.PAUSING,
        (S.PAUSED, C.RESUME): S.RUNNING,
        (S.RUNNING, C.STOP): S.STOPPING,
        (S.HELD, C.STOP): S.STOPPING,
        (S.PAUSED, C.STOP): S.STOPPING,
        # done: transient -> its stable successor
        (S.RUNNING, C.DONE): S.COMPLETE,
        (S.HOLDING, C.DONE): S.HELD,
        (S.RESTARTING, C.DONE): S.RUNNING,
        (S.PAUSING, C.DONE): S.PAUSED,
        (S.STOPPING, C.DONE): S.STOPPED,
        (S.ABORTING, C.DONE): S.ABORTED,
    }
    for state in PhaseState:
        if state not in FINAL_STATES and state is not S.ABORTING:
            t[(state, C.ABORT)] = S.ABORTING
        if state in FINAL_STATES:
            t[(state, C.RESET)] = S.IDLE
    return t


TRANSITIONS: dict[tuple[PhaseState, PhaseCommand], PhaseState] = _table()
"""(state, command) → next state; pairs not in the table are illegal."""


def allowed_commands(state: PhaseState) -> tuple[PhaseCommand, ...]:
    """Commands (``done`` included) legal in ``state``, in enum order."""
    return tuple(c for c in PhaseCommand if (state, c) in TRANSITIONS)


# ----------------------------------------------------------------------------- PackML
class PackMLState(StrEnum):
    """PackML states (ISA-TR88.00.02-2015, OPC 30050). Names only; the OPC UA layer owns the
    numeric encoding."""

    STOPPED = "Stopped"
    RESETTING = "Resetting"
    IDLE = "Idle"
    STARTING = "Starting"
    EXECUTE = "Execute"
    COMPLETING = "Completing"
    COMPLETE = "Complete"
    ABORTING = "Aborting"
    ABORTED = "Aborted"
    STOPPING = "Stopping"
    CLEARING = "Clearing"
    SUSPENDING = "Suspending"
    SUSPENDED = "Suspended"
    UNSUSPENDING = "Unsuspending"
    HOLDING = "Holding"
    HELD = "Held"
    UNHOLDING = "Unholding"


PACKML_STATE: dict[PhaseState, PackMLState] = {
    S.IDLE: PackMLState.IDLE,
    S.RUNNING: PackMLState.EXECUTE,
    S.COMPLETE: PackMLState.COMPLETE,
    S.HOLDING: PackMLState.HOLDING,
    S.HELD: PackMLState.HELD,  # internal cause (ISA-88 Held ~ PackML Held [ISA-TR88.00.02])
    S.RESTARTING: PackMLState.UNHOLDING,
    S.PAUSING: PackMLState.SUSPENDING,
    S.PAUSED: PackMLState.SUSPENDED,  # external cause: starved/blocked, e.g. waiting for the autoclave
    S.STOPPING: PackMLState.STOPPING,
    S.STOPPED: PackMLState.STOPPED,
    S.ABORTING: PackMLState.ABORTING,
    S.ABORTED: PackMLState.ABORTED,
}
"""ISA-88 phase state → the PackML state to publish. Not a bijection of the machines: PackML
reaches Execute from Suspended via Unsuspending (ISA-88 resume goes straight to Running),
completes via Completing, and leaves Aborted only by Clear → Stopped (ISA-88: reset → Idle).
Starting/Resetting/Completing/Clearing/Unsuspending are never published."""


def to_packml(state: PhaseState) -> PackMLState:
    return PACKML_STATE[state]


# ----------------------------------------------------------------------------- machine
class IllegalCommand(Exception):
    """A command that the current state does not accept. Nothing changed."""

    def __init__(self, state: PhaseState, command: PhaseCommand | str, allowed: tuple[PhaseCommand, ...]):
        self.state = state
        self.command = command
        self.allowed = allowed
        names = ", ".join(c.value for c in allowed) or "none"
        super().__init__(f"command '{command}' is not allowed in phase state {state.value}; allowed: {names}")


@dataclass(frozen=True)
class Transition:
    """One state change, as given to listeners."""

    old: PhaseState
    new: PhaseState
    command: PhaseCommand
    actor: str
    reason: str
    t: float


Listener = Callable[[Transition], None]


class Clock(Protocol):
    def now(self) -> float: ...


class PhaseStateMachine:
    """The ISA-88 state of one phase (or unit procedure).

    Args:
        clock: object with ``now() -> float`` or a zero-argument callable (transition times).
        initial: start state (``Idle``; another state only to restore a persisted machine).
        name: for messages and logs.
    """

    def __init__(self, clock: Clock | Callable[[], float], initial: PhaseState = S.IDLE, name: str = "phase"):
        now = getattr(clock, "now", None)
        self._now: Callable[[], float] = now if callable(now) else clock  # type: ignore[assignment]
        if not callable(self._now):
            raise TypeError("clock must have a now() method or be callable")
        self._state = PhaseState(initial)
        self.name = name
        self._listeners: list[Listener] = []
        self.last_transition: Transition | None = None

    @property
    def state(self) -> PhaseState:
        return self._state

    @property
    def packml_state(self) -> PackMLState:
        return PACKML_STATE[self._state]

    def allowed_commands(self) -> tuple[PhaseCommand, ...]:
        return allowed_commands(self._state)

    def can(self, command: PhaseCommand | str) -> bool:
        try:
            return (self._state, PhaseCommand(command)) in TRANSITIONS
        except ValueError:
            return False

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Register ``listener(transition)``; returns a function that removes it."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def fire(self, command: PhaseCommand | str, actor: str = "system", reason: str = "") -> Transition:
        """Apply ``command`` (or the internal ``done`` event).

        Raises:
            IllegalCommand: not allowed in the current state (state unchanged), or an
                unknown command name.
        """
        try:
            cmd = PhaseCommand(command)
        except ValueError:
            raise IllegalCommand(self._state, str(command), self.allowed_commands()) from None
        new = TRANSITIONS.get((self._state, cmd))
        if new is None:
            raise IllegalCommand(self._state, cmd, self.allowed_commands())
        tr = Transition(self._state, new, cmd, actor, reason, float(self._now()))
        self._state = new
        self.last_transition = tr
        for listener in tuple(self._listeners):
            try:
                listener(tr)
            except Exception:  # noqa: BLE001 - observation never becomes control
                log.exception("%s: listener %r failed on %s -> %s", self.name, listener, tr.old, tr.new)
        return tr

    # convenience wrappers
    def start(self, actor: str = "system", reason: str = "") -> Transition:
        return self.fire(C.START, actor, reason)

    def hold(self, actor: str = "system", reason: str = "") -> Transition:
        return self.fire(C.HOLD, actor, reason)

    def restart(self, actor: str = "system", reason: str = "") -> Transition:
        return self.fire(C.RESTART, actor, reason)

    def pause(self, actor: str = "system", reason: str = "") -> Transition:
        return self.fire(C.PAUSE, actor, reason)

    def resume(self, actor: str = "system", reason: str = "") -> Transition:
        return self.fire(C.RESUME, actor, reason)

    def stop(self, actor: str = "system", reason: str = "") -> Transition:
        return self.fire(C.STOP, actor, reason)

    def abort(self, actor: str = "system", reason: str = "") -> Transition:
        return self.fire(C.ABORT, actor, reason)

    def reset(self, actor: str = "system", reason: str = "") -> Transition:
        return self.fire(C.RESET, actor, reason)

    def done(self, actor: str = "phase_logic", reason: str = "") -> Transition:
        return self.fire(C.DONE, actor, reason)
