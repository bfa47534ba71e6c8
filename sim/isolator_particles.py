"""The isolator's grade-A particle counts at 0.5 and 5 µm: seeded background, bursts on
interventions and door events, reported on a fixed sim-time grid as the count of the last
minute's sample volume.

Part of :class:`~.isolator.IsolatorModel` (a mixin).
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .common import InvalidCommand

if TYPE_CHECKING:
    from .isolator_gloves import GlovePort


PARTICLE_SIZE_EXPONENT = 2.08
"""ISO 14644-1:2015 Eq. (1): C_n = 10^N (0.1/D)^2.08. Used to scale a >=0.5 um burst to
the >=5 um channel (factor (0.5/5)^2.08 ~ 0.0083)."""

PARTICLE_REPORT_INTERVAL_S = 1.0
"""Interval at which the particle counter reports a new value [M]: remote counters report
about once a second. Candidate for ``particles.report_interval_s`` in config."""

PARTICLE_WINDOW_S = 60.0
"""Each report is the count in the last minute's sample volume (28.3 L at 1 ft3/min,
[V] [TSI]) per m3: the 1 ft3/min sample-volume convention. One >=5 um particle in
that volume reads 35 /m3, above the 29 /m3 limit, as on a real counter."""


@dataclass
class ParticleState:
    burst_0_5: float = 0.0
    burst_5_0: float = 0.0
    reading_0_5: float = 0.0
    reading_5_0: float = 0.0
    next_report_t: float = 0.0
    window_0_5: deque[int] = field(default_factory=deque)  # counts per report interval
    window_5_0: deque[int] = field(default_factory=deque)


class IsolatorParticles:
    """Grade-A particle counter (0.5 and 5 µm) and the bursts of interventions and door events."""

    _glove_ids: list[str]
    _gloves: dict[str, GlovePort]
    _particles: ParticleState
    _rng: random.Random
    cfg: Any
    clock: Any
    interventions: list[dict[str, Any]]

    def note_intervention(self, kind: str, port: str | None = None) -> None:
        """Record an intervention and add its particle burst.

        Args:
            kind: ``"glove"`` or ``"intervention"`` (intervention burst), ``"door"`` or
                ``"port"`` (door/port burst).
            port: glove port id for ``"glove"`` (must be a configured port); for door/port
                events any identifier of the door (e.g. ``"autoclave_unload"``).
        Raises:
            InvalidCommand: unknown kind, or an unknown glove port.
        """
        pc = self.cfg.particles
        bursts = {
            "glove": pc.burst_intervention_0_5,
            "intervention": pc.burst_intervention_0_5,
            "door": pc.burst_door_0_5,
            "port": pc.burst_door_0_5,
        }
        if kind not in bursts:
            raise InvalidCommand(f"unknown intervention kind {kind!r}; known: {sorted(bursts)}")
        if port is not None and not isinstance(port, str):
            raise InvalidCommand(f"port must be a string, got {port!r}")
        if kind == "glove" and port is not None and port not in self._gloves:
            raise InvalidCommand(f"unknown glove port {port!r}; known: {self._glove_ids}")
        self._add_burst(bursts[kind])
        self.interventions.append({"t": self.clock.now(), "kind": kind, "port": port})

    def _add_burst(self, peak_0_5: float, age_s: float = 0.0) -> None:
        decay = math.exp(-age_s / self.cfg.particles.burst_decay_s)
        self._particles.burst_0_5 += peak_0_5 * decay
        self._particles.burst_5_0 += peak_0_5 * (0.5 / 5.0) ** PARTICLE_SIZE_EXPONENT * decay

    def _particle_truth(self, ahead_s: float = 0.0) -> tuple[float, float]:
        pc = self.cfg.particles
        decay = math.exp(-ahead_s / pc.burst_decay_s)
        return (
            pc.background_0_5_per_m3 + self._particles.burst_0_5 * decay,
            pc.background_5_0_per_m3 + self._particles.burst_5_0 * decay,
        )

    def _interval_volume_m3(self) -> float:
        """Air sampled in one report interval (m3): L/min -> m3/s times the interval."""
        return self.cfg.particles.sample_flow_l_min * 1e-3 / 60.0 * PARTICLE_REPORT_INTERVAL_S

    def _poisson(self, mean: float) -> int:
        """Poisson-like count: exact (Knuth) for small means, rounded normal otherwise."""
        if mean <= 0.0:
            return 0
        if mean < 30.0:
            limit, k, prod = math.exp(-mean), 0, self._rng.random()
            while prod > limit:
                k += 1
                prod *= self._rng.random()
            return k
        return max(0, round(self._rng.gauss(mean, math.sqrt(mean))))

    def _count_particles(self, ahead_s: float) -> None:
        """Count one report interval of sample air; report the last minute's count per m3."""
        c05, c50 = self._particle_truth(ahead_s)
        v = self._interval_volume_m3()
        pt = self._particles
        n = round(PARTICLE_WINDOW_S / PARTICLE_REPORT_INTERVAL_S)
        for window, conc in ((pt.window_0_5, c05), (pt.window_5_0, c50)):
            window.append(self._poisson(conc * v))
            while len(window) > n:
                window.popleft()
        pt.reading_0_5 = sum(pt.window_0_5) / (v * len(pt.window_0_5))
        pt.reading_5_0 = sum(pt.window_5_0) / (v * len(pt.window_5_0))
