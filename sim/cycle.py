"""Cycle records and fault hooks shared by the batch process units (VHP unit, autoclave).

- :class:`PhaseRecord`, :class:`AlarmRecord`: the phase times and the alarms of one cycle,
  as both units write them into their cycle result.
- :func:`json_safe`: a JSON-safe copy of a result (NaN/inf -> None).
- :class:`CheckedFaultHooks`: fault hooks that validate fault parameters before anything
  changes.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

from .common import FaultHooks, InvalidCommand, require_finite


class CheckedFaultHooks(FaultHooks):
    """:class:`FaultHooks` that rejects bad fault parameters (NaN, out of range) with
    :class:`InvalidCommand` before anything changes, so a fault can never push NaN into
    the physics.

    Args:
        known: device fault names.
        numeric: {fault: {param: (min, max)}} for numeric parameters.
        choices: {fault: {param: allowed values}} for string parameters.
    """

    _SENSOR_NUMERIC = ("offset", "rate", "value")

    def __init__(
        self,
        known: set[str],
        numeric: dict[str, dict[str, tuple[float, float]]] | None = None,
        choices: dict[str, dict[str, tuple[str, ...]]] | None = None,
    ) -> None:
        super().__init__(known=known)
        self._numeric = numeric or {}
        self._choices = choices or {}

    def inject(self, name: str, **params: Any) -> None:
        checked = dict(params)
        if name.startswith("sensor:"):
            for key in self._SENSOR_NUMERIC:
                if key in checked:
                    checked[key] = require_finite(f"{name}.{key}", checked[key])
        for key, (lo, hi) in self._numeric.get(name, {}).items():
            if key in checked:
                val = require_finite(f"{name}.{key}", checked[key])
                if not lo <= val <= hi:
                    raise InvalidCommand(f"fault {name}: {key}={val} outside [{lo}, {hi}]")
                checked[key] = val
        for key, allowed in self._choices.get(name, {}).items():
            if key in checked and checked[key] not in allowed:
                raise InvalidCommand(f"fault {name}: {key}={checked[key]!r} not one of {list(allowed)}")
        super().inject(name, **checked)



def json_safe(value: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, tuples -> lists, enums -> values."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


@dataclass(frozen=True)
class PhaseRecord:
    phase: str
    start: float
    end: float | None


@dataclass(frozen=True)
class AlarmRecord:
    time: float
    code: str
    text: str


