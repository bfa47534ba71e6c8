"""The one command path of every device command.

    validate → lifecycle gate → latch → staleness → hard interlocks → (arm: plan + motion
    check) → safe-state latch → backend

Every device node (isolator, VHP unit, autoclave, arm) and the in-process cell used by the
supervisor's tests run their commands through :func:`execute`; they differ only in the
:class:`CommandHost` they are (where readings come from, where the backend is, how events
are published). A refusal returns a :class:`~aseptic_cell.results.CommandResult` with a code
from :class:`~aseptic_cell.devices.codes.RefusalCode` and a reason, changes nothing, and is
reported to the host as an event for the batch record. The path never raises for bad input;
an unexpected exception in a check is logged by the host and refused as ``INTERNAL_ERROR``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from ..config import CellConfig
from ..results import CommandResult
from .arm.motion import MOTION_COMMANDS, ArmMotion
from .codes import RefusalCode
from .commands import InvalidArguments, spec, validate
from .hard_interlocks import precheck

_log = logging.getLogger(__name__)


class CommandHost(Protocol):
    """What the command path needs from the thing that owns one device."""

    @property
    def kind(self) -> str: ...

    @property
    def device_id(self) -> str: ...

    @property
    def cfg(self) -> CellConfig: ...

    def lifecycle(self) -> str:
        """``active`` (process commands allowed), ``inactive`` (connected, nothing moves) or
        ``unconfigured`` (no backend)."""

    def latched_reason(self) -> str | None:
        """Why the device is held in its safe state, or None."""

    def latch(self, why: str) -> None:
        """Hold the device in its safe state until an explicit recovery."""

    def fresh_values(self) -> Mapping[str, Any] | None:
        """The device's latest readings if fresh and connected, else None."""

    def cell_signals(self) -> Mapping[str, Any] | None:
        """Interlock signals of the rest of the cell (the arm's keep-outs), None if unknown."""

    def send(self, name: str, typed: dict[str, Any], *, user: str, reason: str,
             timeout_s: float) -> CommandResult:
        """Hand the checked command to the backend (refusals by the device are results)."""

    def report(self, name: str, args: Mapping[str, Any], user: str, reason: str,
               result: CommandResult) -> None:
        """Publish the command or its refusal for the record."""


def execute(host: CommandHost, name: str, args: Mapping[str, Any] | None = None, *,
            motion: ArmMotion | None = None, user: str = "", reason: str = "",
            timeout_s: float = 5.0) -> CommandResult:
    """Run one command through the path and report it; never raises for bad input."""
    try:
        result = _run(host, name, dict(args or {}), motion, user, reason, timeout_s)
    except Exception as exc:  # a bug in a check must refuse safely, not look like a device refusal
        _log.exception("command path of %s failed on %s", host.device_id, name)
        result = CommandResult.refuse(RefusalCode.INTERNAL_ERROR,
                                      f"{host.device_id}.{name}: internal error in the command path "
                                      f"({type(exc).__name__}: {exc}); nothing was sent")
    host.report(name, args or {}, user, reason, result)
    return result


def _run(host: CommandHost, name: str, args: dict[str, Any], motion: ArmMotion | None, user: str,
         reason: str, timeout_s: float) -> CommandResult:
    # 1. validate: catalogue, argument types, and for the arm the named pose
    try:
        s = spec(host.kind, name)
        typed = validate(host.kind, name, args)
    except InvalidArguments as exc:
        return CommandResult.refuse(RefusalCode.INVALID, str(exc))
    is_motion = motion is not None and name in MOTION_COMMANDS
    if is_motion and motion is not None:
        bad = motion.validate(name, typed)
        if bad is not None:
            return bad
    # 2. lifecycle gate
    life = host.lifecycle()
    if life == "unconfigured":
        return CommandResult.refuse(RefusalCode.NOT_CONFIGURED, f"{host.device_id} is not configured")
    if s.moves and life != "active":
        return CommandResult.refuse(RefusalCode.NOT_ACTIVE, f"{host.device_id} is {life}: connected, nothing moves")
    # 3. latch
    latched = host.latched_reason()
    if s.moves and latched:
        return CommandResult.refuse(RefusalCode.LATCHED, f"{host.device_id} is held in its safe state ({latched}); "
                                    "recovery needs an operator action (recover)")
    # 4. staleness: nothing moves on data we cannot trust; a non-moving command (safe_state,
    #    abort, get_result) still goes to the backend, which refuses if the transport is down
    values = host.fresh_values()
    if values is None and s.moves:
        return CommandResult.refuse(RefusalCode.COMM_STALE, f"no fresh data from {host.device_id} "
                                    "(data stale or connection lost)")
    # 5. the device's own hard interlocks (like its PLC's)
    if values is not None:
        refusal = precheck(host.kind, name, typed, values, host.cfg)
        if refusal is not None:
            return CommandResult.refuse(*refusal)
    # 6. arm: plan, keep-out zones from the live cell state, certified motion check
    task = ""
    if is_motion and motion is not None and values is not None:
        prepared = motion.prepare(name, typed, values, host.cell_signals())
        if isinstance(prepared, CommandResult):
            return prepared
        typed, task = prepared
        name = "execute_trajectory"
    # 7. safe state latches before the command is even sent
    if name == "safe_state":
        host.latch(reason or "safe state requested")
    # 8. the backend
    out = host.send(name, typed, user=user, reason=reason, timeout_s=timeout_s)
    if is_motion and out.accepted:
        q = typed["q"]
        out = CommandResult(True, out.code, out.reason,
                            {**out.payload, "samples": len(q), "duration_s": typed["dt"] * (len(q) - 1),
                             "task": task})
    return out


def loggable_args(args: Mapping[str, Any] | None) -> dict[str, Any]:
    """Arguments for logs and events: joint matrices summarised."""
    out = {}
    for k, v in (args or {}).items():
        out[k] = f"<{len(v)} samples>" if isinstance(v, list) and v and isinstance(v[0], list) else v
    return out
