"""Device readings → interlock signals (the names of :data:`aseptic_cell.interlocks.KNOWN_SIGNALS`).

Each device kind's mapping lives in its contract (``aseptic_cell/devices/<kind>/contract.py``,
``signals``), used by the device nodes (published as JSON on ``/cell/<node>/signals``) and by
the in-process cell, so the supervisor sees the same signals whatever the backend. A reading
that is missing or not finite maps to ``None`` — which the engine treats as unsafe — never to
a default that looks safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import CellConfig
from .commands import CONTRACTS


def signals_from_readings(kind: str, values: Mapping[str, Any], cfg: CellConfig) -> dict[str, Any]:
    """Signal name → value (None = unknown) for one device's readings."""
    contract = CONTRACTS[kind]
    out: dict[str, Any] = contract.signals(contract.Readings.parse(values, cfg), cfg)
    return out
