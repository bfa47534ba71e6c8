"""How a device's commands are declared and validated. Each device kind declares its own
commands in its contract (``aseptic_cell/devices/<kind>/contract.py``); this module has the
argument types and the validation. Commands are idempotent and named for their effect
(``close_door``, not ``toggle_door``); every argument is typed and validated here, so a
bad argument is rejected with a precise reason before anything is sent to a device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class InvalidArguments(ValueError):
    """A command or its arguments are malformed. Nothing was sent; nothing changed."""


@dataclass(frozen=True)
class Arg:
    name: str
    type: str  # "str" | "float" | "bool" | "matrix" (list of rows of floats)
    required: bool = True
    choices: tuple[str, ...] | None = None


@dataclass(frozen=True)
class CommandSpec:
    name: str
    args: tuple[Arg, ...] = ()
    moves: bool = False  # causes motion / process action: refused unless the node is ACTIVE
    description: str = ""


def command(name: str, *args: Arg, moves: bool = True, description: str = "") -> CommandSpec:
    return CommandSpec(name, tuple(args), moves, description)


USER = Arg("user", "str", required=False)
REASON = Arg("reason", "str", required=False)


def validate_spec(kind: str, s: CommandSpec, args: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check ``args`` against the command's spec and return them typed.

    Raises:
        InvalidArguments: unknown/missing argument, wrong type, NaN/inf, value not among
            the allowed choices.
    """
    name = s.name
    args = dict(args or {})
    known = {a.name for a in s.args}
    extra = sorted(set(args) - known)
    if extra:
        raise InvalidArguments(f"{kind}.{name}: unknown argument(s) {extra}; expected {sorted(known)}")
    out: dict[str, Any] = {}
    for a in s.args:
        if a.name not in args or args[a.name] is None:
            if a.required:
                raise InvalidArguments(f"{kind}.{name}: missing argument {a.name!r}")
            continue
        out[a.name] = _coerce(f"{kind}.{name}.{a.name}", a, args[a.name])
    return out


def _coerce(where: str, a: Arg, v: Any) -> Any:
    if a.type == "str":
        if not isinstance(v, str) or not v.strip():
            raise InvalidArguments(f"{where} must be a non-empty string, got {v!r}")
        if a.choices is not None and v not in a.choices:
            raise InvalidArguments(f"{where} must be one of {list(a.choices)}, got {v!r}")
        return v
    if a.type == "float":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InvalidArguments(f"{where} must be a number, got {v!r}")
        f = float(v)
        if not math.isfinite(f):
            raise InvalidArguments(f"{where} must be finite, got {v!r}")
        return f
    if a.type == "bool":
        if not isinstance(v, bool):
            raise InvalidArguments(f"{where} must be true or false, got {v!r}")
        return v
    if a.type == "matrix":
        if not isinstance(v, (list, tuple)) or not v:
            raise InvalidArguments(f"{where} must be a non-empty list of rows")
        rows = []
        for i, row in enumerate(v):
            if not isinstance(row, (list, tuple)):
                raise InvalidArguments(f"{where}[{i}] must be a list of numbers")
            r = []
            for j, x in enumerate(row):
                if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(float(x)):
                    raise InvalidArguments(f"{where}[{i}][{j}] must be a finite number, got {x!r}")
                r.append(float(x))
            rows.append(r)
        return rows
    raise InvalidArguments(f"{where}: unsupported argument type {a.type}")  # pragma: no cover
