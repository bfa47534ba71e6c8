"""Injected clocks. Core code never reads the wall clock directly (ARCHITECTURE rule 5)."""

from __future__ import annotations

import math
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Current time in seconds (sim time for the simulation)."""
        ...


class SimClock:
    """A deterministic clock advanced explicitly by the simulation loop."""

    def __init__(self, start: float = 0.0) -> None:
        if not math.isfinite(start):
            raise ValueError("clock start must be finite")
        self._t = float(start)

    def now(self) -> float:
        return self._t

    def advance(self, dt: float) -> float:
        if not math.isfinite(dt) or dt < 0:
            raise ValueError(f"clock can only advance by a finite, non-negative dt, got {dt!r}")
        self._t += dt
        return self._t

    def set(self, t: float) -> None:
        """Jump to absolute time ``t`` (used when slaved to ROS /clock); never backwards."""
        if not math.isfinite(t) or t < self._t:
            raise ValueError(f"sim clock cannot move backwards or to a non-finite time ({t!r} < {self._t})")
        self._t = float(t)
