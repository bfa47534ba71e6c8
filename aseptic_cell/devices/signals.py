"""Device readings → interlock signals (the names of :data:`aseptic_cell.interlocks.KNOWN_SIGNALS`).

Each device kind's mapping lives in its contract (``aseptic_cell/devices/<kind>/contract.py``,
``signals``), used by the device nodes (published as JSON on ``/cell/<node>/signals``) and by
the in-process cell, so the supervisor sees the same signals whatever the backend. A reading
that is missing or not finite maps to ``None`` — which the engine treats as unsafe — never to
a default that looks safe.

:class:`SignalMemo` (issue 14, performance) maps one device's readings to signals again only
when a reading changed: most devices report the same values tick after tick, and parsing them
was about a third of the supervisor's signal refresh. It is exact, not approximate: the contract's
``parse`` reads the values through a probe that records whether it read the reading time ``t``
(or iterated the whole mapping); readings equal to the last parsed ones (same keys, same types,
same values; ``t`` too unless that parse did not read it) give the same signals, because
``parse(values, cfg)`` and ``signals(readings, cfg)`` are functions of what they read.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ..config import CellConfig
from .commands import CONTRACTS


def signals_from_readings(kind: str, values: Mapping[str, Any], cfg: CellConfig) -> dict[str, Any]:
    """Signal name → value (None = unknown) for one device's readings."""
    contract = CONTRACTS[kind]
    out: dict[str, Any] = contract.signals(contract.Readings.parse(values, cfg), cfg)
    return out


class _TimeProbe(Mapping[str, Any]):
    """Read-only view of a reading that notes whether the reading time ``t`` was read (iterating
    the whole mapping counts as reading it)."""

    __slots__ = ("_d", "read_t")

    def __init__(self, d: Mapping[str, Any]) -> None:
        self._d = d
        self.read_t = False

    def __getitem__(self, key: str) -> Any:
        if key == "t":
            self.read_t = True
        return self._d[key]

    def get(self, key: str, default: Any = None) -> Any:
        if key == "t":
            self.read_t = True
        return self._d.get(key, default)

    def __contains__(self, key: object) -> bool:
        if key == "t":
            self.read_t = True
        return key in self._d

    def __iter__(self) -> Iterator[str]:
        self.read_t = True
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)


_SCALARS = (bool, int, float, str, type(None))
_MISSING = object()


def _snapshot(values: Mapping[str, Any]) -> dict[str, Any] | None:
    """A private copy to compare the next reading with (lists copied: a device may reuse and
    mutate its own list), or None if a value is not a scalar or a list of scalars (no memo)."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        tv = type(v)
        if tv is list:
            if not all(type(x) in _SCALARS for x in v):
                return None
            out[k] = list(v)
        elif tv in _SCALARS:
            out[k] = v
        else:
            return None
    return out


def same_readings(values: Mapping[str, Any], snap: Mapping[str, Any], skip: str | None) -> bool:
    """``values`` equal to ``snap`` key by key, with the same types (``True`` is not ``1``;
    a NaN equals only the very same object), ``skip`` not compared."""
    if len(values) != len(snap):
        return False
    for k, x in values.items():
        y = snap.get(k, _MISSING)
        if x is y or k == skip:
            continue
        if type(x) is not type(y) or x != y:
            return False
        if type(x) is list and any(type(p) is not type(q) for p, q in zip(x, y, strict=True)):
            return False
    return True


class SignalMemo:
    """:func:`signals_from_readings` for one device, recomputed only when its readings changed.

    The returned dict is shared between calls that hit the memo: do not modify it.
    """

    __slots__ = ("kind", "cfg", "_snap", "_skip", "_out", "hits", "misses")

    def __init__(self, kind: str, cfg: CellConfig) -> None:
        self.kind = kind
        self.cfg = cfg
        self._snap: dict[str, Any] | None = None
        self._skip: str | None = None
        self._out: dict[str, Any] = {}
        self.hits = 0
        self.misses = 0

    def __call__(self, values: Mapping[str, Any]) -> dict[str, Any]:
        snap = self._snap
        if snap is not None and same_readings(values, snap, self._skip):
            self.hits += 1
            return self._out
        self.misses += 1
        contract = CONTRACTS[self.kind]
        probe = _TimeProbe(values)
        out: dict[str, Any] = contract.signals(contract.Readings.parse(probe, self.cfg), self.cfg)
        self._snap, self._skip, self._out = _snapshot(values), (None if probe.read_t else "t"), out
        return out
