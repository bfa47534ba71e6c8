"""The device layer's own hard interlocks (like a PLC's), on the device's readings.

Each device kind's interlock lives in its contract (``aseptic_cell/devices/<kind>/contract.py``,
``hard_interlock``); the command path (:mod:`.pipeline`) evaluates it before a command reaches
the backend, independently of the supervisor's interlock engine: two layers. Each returns
``(code, reason)`` to refuse, or ``None``. The devices' controllers keep their own interlocks
as well (the sim models refuse too, with the same codes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import CellConfig
from .commands import CONTRACTS
from .values import Refusal

__all__ = ["Refusal", "precheck"]


def precheck(kind: str, name: str, args: dict[str, Any], values: Mapping[str, Any], cfg: CellConfig) -> Refusal:
    """The device kind's hard interlock for ``name``; ``values`` are the device's raw readings,
    parsed into the kind's typed readings first (missing or malformed = unknown = unsafe)."""
    contract = CONTRACTS[kind]
    refusal: Refusal = contract.hard_interlock(name, args, contract.Readings.parse(values, cfg), cfg)
    return refusal
