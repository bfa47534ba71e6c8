"""The command catalogue of each device kind: the one contract between the device nodes and
their backends (sim or OPC UA). Commands are idempotent and named for their effect
(``close_door``, not ``toggle_door``); every argument is typed and validated here, so a
bad argument is rejected with a precise reason before anything is sent to a device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

KINDS = ("isolator", "vhp", "autoclave", "arm")


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


def _c(name: str, *args: Arg, moves: bool = True, description: str = "") -> CommandSpec:
    return CommandSpec(name, tuple(args), moves, description)


DOOR = Arg("door", "str", choices=("A", "B"))
RTP = Arg("rtp", "str")
PORT = Arg("port", "str")
USER = Arg("user", "str", required=False)
REASON = Arg("reason", "str", required=False)

CATALOGUE: dict[str, dict[str, CommandSpec]] = {
    "isolator": {c.name: c for c in (
        _c("open_door", DOOR, description="open pass-through hatch door A (room) or B (isolator)"),
        _c("close_door", DOOR),
        _c("mark_hatch_decontaminated", description="hatch chamber decontamination confirmed"),
        _c("dock_beta", RTP, Arg("beta_id", "str"), Arg("sterile_status", "str")),
        _c("lock_beta", RTP),
        _c("unlock_beta", RTP),
        _c("undock_beta", RTP),
        _c("open_alpha", RTP),
        _c("close_alpha", RTP),
        _c("use_glove", PORT, USER),
        _c("release_glove", PORT),
        _c("extend_glove", PORT),
        _c("retract_glove", PORT),
        _c("start_glove_test", PORT, USER, Arg("batch_id", "str", required=False)),
        _c("start_leak_test"),
        _c("safe_state", REASON, moves=False, description="hold: no further process commands"),
    )},
    "vhp": {c.name: c for c in (
        _c("start_cycle", Arg("cycle_id", "str"), Arg("operator", "str"), Arg("run_id", "str", required=False)),
        _c("abort", Arg("user", "str"), Arg("reason", "str"), moves=False),
        _c("refill_reservoir", Arg("solution_g", "float")),
        _c("get_result", moves=False),
        _c("safe_state", REASON, moves=False, description="abort an active cycle (aeration runs on)"),
    )},
    "autoclave": {c.name: c for c in (
        _c("open_door", Arg("side", "str", choices=("load", "unload"))),
        _c("close_door", Arg("side", "str", choices=("load", "unload"))),
        _c("start_program", Arg("program_id", "str"), Arg("load_id", "str", required=False),
           Arg("operator", "str", required=False), Arg("run_id", "str", required=False)),
        _c("abort", Arg("user", "str"), Arg("reason", "str"), moves=False),
        _c("override_unload", Arg("user", "str"), Arg("reason", "str")),
        _c("get_result", moves=False),
        _c("safe_state", REASON, moves=False, description="abort an active program (chamber vented)"),
    )},
    "arm": {c.name: c for c in (
        _c("enable_drives"),
        _c("disable_drives", moves=False),
        _c("move_to_pose", Arg("pose", "str"), Arg("duration_s", "float", required=False),
           Arg("speed_class", "str", required=False, choices=("near_product", "transit"))),
        _c("execute_trajectory", Arg("q", "matrix"), Arg("dt", "float"),
           Arg("speed_class", "str", required=False, choices=("near_product", "transit"))),
        _c("protective_stop", REASON, moves=False),
        _c("reset_protective_stop", moves=False),
        _c("set_mode", Arg("mode", "str", choices=(
            "MANUAL_REDUCED_SPEED", "MANUAL_HIGH_SPEED", "AUTOMATIC", "AUTOMATIC_EXTERNAL"))),
        _c("safe_state", REASON, moves=False, description="protective stop"),
    )},
}


def spec(kind: str, name: str) -> CommandSpec:
    if kind not in CATALOGUE:
        raise InvalidArguments(f"unknown device kind {kind!r}; known: {list(KINDS)}")
    try:
        return CATALOGUE[kind][name]
    except KeyError:
        raise InvalidArguments(
            f"unknown {kind} command {name!r}; known: {sorted(CATALOGUE[kind])}"
        ) from None


def validate(kind: str, name: str, args: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check ``args`` against the command's spec and return them typed.

    Raises:
        InvalidArguments: unknown command, unknown/missing argument, wrong type, NaN/inf,
            value not among the allowed choices.
    """
    s = spec(kind, name)
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
