"""The one result type of a command, in every layer.

A device node, the in-process cell, the supervisor, the HMI backend and the OPC UA cell
server all answer a command with a :class:`CommandResult`: accepted or not, a code from
the one catalogue (:class:`aseptic_cell.devices.codes.RefusalCode` for device refusals;
the supervisor adds its own codes such as ``PERMISSION`` or ``SIGNATURE``), a human-readable
reason, an optional payload and, where a batch is concerned, the batch state after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CommandResult:
    accepted: bool
    code: str = "OK"
    reason: str = ""
    payload: Mapping[str, Any] = field(default_factory=dict)
    state: str = ""

    @classmethod
    def refuse(cls, code: str, reason: str, **payload: Any) -> CommandResult:
        return cls(False, str(code), reason, dict(payload))

    @classmethod
    def ok(cls, reason: str = "", **payload: Any) -> CommandResult:
        return cls(True, "OK", reason, dict(payload))
