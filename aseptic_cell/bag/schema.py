"""Full ROS 2 message definitions (the ``ros2msg`` schema encoding of MCAP).

The schema of a channel is the type's ``.msg`` text followed by each dependency, each preceded
by a line of 80 ``=`` and ``MSG: pkg/Type`` (the form rosbag2 writes and Foxglove parses). The
``.msg`` files come from the installed packages' ``share/<pkg>/msg/`` (ROS wheels and the
built cell_interfaces install them there).
"""

from __future__ import annotations

import os
import re
import sys
from functools import cache
from pathlib import Path

SEPARATOR = "=" * 80

PRIMITIVES = frozenset({
    "bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32",
    "int64", "uint64", "string", "wstring",
})
_FIELD = re.compile(r"^\s*([A-Za-z0-9_/]+)(?:\[[^\]]*\])?(?:<=\d+)?\s+\w")


class DefinitionNotFound(LookupError):
    """No installed .msg file for a type."""


def _prefixes() -> list[Path]:
    out = [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    out.append(Path(sys.prefix))
    return out


def split_type(type_name: str) -> tuple[str, str]:
    """``pkg/msg/Type`` or ``pkg/Type`` -> (pkg, Type)."""
    parts = type_name.split("/")
    if len(parts) == 3 and parts[1] == "msg":
        return parts[0], parts[2]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise ValueError(f"not a message type name: {type_name!r}")


@cache
def msg_text(pkg: str, name: str) -> str:
    for prefix in _prefixes():
        path = prefix / "share" / pkg / "msg" / f"{name}.msg"
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise DefinitionNotFound(f"{pkg}/msg/{name}.msg not found under {[str(p) for p in _prefixes()]}")


def dependencies(pkg: str, text: str) -> list[tuple[str, str]]:
    """Message types used by the fields of a .msg text, in order of first use."""
    out: list[tuple[str, str]] = []
    for line in text.splitlines():
        m = _FIELD.match(line.split("#", 1)[0])
        if not m:
            continue
        base = m.group(1)
        if base in PRIMITIVES:  # constants are always primitive
            continue
        if base == "Header":
            dep = ("std_msgs", "Header")
        elif "/" in base:
            dep = split_type(base)
        else:
            dep = (pkg, base)
        if dep not in out:
            out.append(dep)
    return out


@cache
def message_definition(type_name: str) -> str:
    """The full definition text of ``pkg/msg/Type`` with every nested type, depth first."""
    pkg, name = split_type(type_name)
    main = msg_text(pkg, name)
    seen: list[tuple[str, str]] = []

    def walk(p: str, text: str) -> None:
        for dep in dependencies(p, text):
            if dep not in seen:
                seen.append(dep)
                walk(dep[0], msg_text(*dep))

    walk(pkg, main)
    parts = [main.rstrip("\n")]
    for dp, dn in seen:
        parts += [SEPARATOR, f"MSG: {dp}/{dn}", msg_text(dp, dn).rstrip("\n")]
    return "\n".join(parts) + "\n"
