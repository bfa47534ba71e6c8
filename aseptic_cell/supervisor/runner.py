"""Run the supervisor on the in-process cell on sim time (tests, scenarios, soak, benchmark)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..config import CellConfig
from .core import Supervisor
from .port import InProcessCell


class InProcessRun:
    """An :class:`InProcessCell` and a :class:`Supervisor` on it, advanced together.

    Args:
        cfg: loaded configuration.
        tick_s: supervisor tick period in sim seconds.
        step_s: model integration step (<= tick_s); default ``cell.yaml sim.step_s``.
        record: optional :class:`~aseptic_cell.records.BatchRecord`.
        wall: the supervisor's monotonic wall clock (tests inject a fake one).
    """

    def __init__(self, cfg: CellConfig, *, tick_s: float = 1.0, step_s: float | None = None, record: Any = None,
                 users: Any = None, check_mode: str = "certified", sim: Any = None, engine: Any = None,
                 wall: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.cell = InProcessCell(cfg, sim=sim, check_mode=check_mode)
        self.sup = Supervisor(cfg, self.cell, record=record, users=users, engine=engine, wall=wall)
        self.tick_s = float(tick_s)
        self.step_s = float(step_s or cfg.layout.sim.step_s)
        self.hooks: list[Callable[[InProcessRun], None]] = []
        """Called before every tick (scenario events, invariant checks)."""

    def now(self) -> float:
        return self.cell.now()

    def advance(self, seconds: float) -> None:
        end = self.cell.now() + seconds
        while self.cell.now() < end - 1e-9:
            self.tick_once()

    def tick_period(self) -> float:
        """``tick_s``, but at most 1 s while the robot moves or a robot task runs (motion is
        short; the interlocks must see it)."""
        sup = self.sup
        if self.tick_s > 1.0 and (self.cell.sim.arm.moving or (sup.active_phase and sup.phase_type(
                sup.active_phase) in ("robot_task", "rtp_transfer_in"))):
            return 1.0
        return self.tick_s

    def tick_once(self) -> None:
        remaining = self.tick_period()
        while remaining > 1e-9:
            dt = min(self.step_s, remaining)
            self.cell.step(dt)
            remaining -= dt
        for h in tuple(self.hooks):
            h(self)
        self.sup.tick()

    def run_until(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        end = self.cell.now() + timeout_s
        while not predicate():
            if self.cell.now() >= end:
                return False
            self.tick_once()
        return True

    def run_batch(self, recipe_id: str, batch_id: str = "B-TEST", user: str = "op1",
                  timeout_s: float = 12 * 3600.0) -> Any:
        out = self.sup.run_batch(recipe_id, batch_id, user)
        if not out.accepted:
            return out
        self.run_until(lambda: self.sup.sm.state.final or self.sup.sm.state.value == "Held", timeout_s)
        return out
