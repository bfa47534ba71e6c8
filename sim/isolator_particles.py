"""The isolator's grade-A particle counter at 0.5 and 5 µm, modelled as an ISO 21501-4
[ISO21501-4] light-scattering counter samples: a pump draws ``sample_flow_l_min`` through
the sensor, counts are integrated over a sample of ``sample_time_s`` (28.3 L = 1 ft³ at
28.3 L/min for one minute, [V] [TSI]) and a concentration is the count divided by the volume
actually sampled. Background is seeded; interventions and door events add bursts.

The counter reports once per :data:`PARTICLE_REPORT_INTERVAL_S`: the concentration of the last
complete sample, or, when it is already higher, the running count of the sample in progress
divided by the full sample volume (a lower bound of that sample's result: a sample whose
running count already exceeds the limit has exceeded it, so the excursion is reported before
the sample ends, as remote counters' count alarms do).

≥5 µm counts follow Annex 1's guidance on single counts [ANNEX1-2022 §9 Table 5 notes] [M]:
an occasional single ≥5 µm count may be a false count (electronic noise, stray light,
coincidence); consecutive or regular low counts may be a contamination event [HOSPINT]. So
one particle in a 28.3 L sample (35 /m³, above the 29 /m³ limit) is an **alert**, not an
action excursion by itself; the action flag needs at least
``action_5_0_min_count`` particles in one sample, or ``trend_5_0_n`` samples with counts among
the last ``trend_5_0_m`` (an "N of the last M" trend rule [PMS-AL]). The counts are site values
[M] in ``cell.yaml``.

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
about once a second."""

PARTICLE_WINDOW_S = 60.0
"""Default sample time (s) when the configuration does not set ``sample_time_s``: one minute
at 28.3 L/min = 28.3 L (1 ft³) [V] [TSI]."""


@dataclass
class ParticleState:
    burst_0_5: float = 0.0
    burst_5_0: float = 0.0
    reading_0_5: float = 0.0  # reported concentration (/m3)
    reading_5_0: float = 0.0
    count_5_0: int = 0  # >=5 um particles behind reading_5_0
    next_report_t: float = 0.0
    sample_elapsed_s: float = 0.0  # into the sample in progress
    running_0_5: int = 0  # counts of the sample in progress
    running_5_0: int = 0
    last_0_5: float = 0.0  # last complete sample (/m3)
    last_5_0: float = 0.0
    last_count_5_0: int = 0
    samples_5_0: deque[int] = field(default_factory=deque)  # >=5 um counts of the last complete samples
    samples_done: int = 0


def particle_source_param(f: Any, key: str, default: float) -> float:
    v = f.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise InvalidCommand(f"particle_source {key} must be a finite number >= 0, got {v!r}")
    return float(v)


class IsolatorParticles:
    """Grade-A particle counter (0.5 and 5 µm) and the bursts of interventions and door events."""

    _glove_ids: list[str]
    _gloves: dict[str, GlovePort]
    _particles: ParticleState
    _rng: random.Random
    particle_report_interval_s: float = PARTICLE_REPORT_INTERVAL_S
    """The counter's report grid (s): a per-instance parameter, default the module's."""
    cfg: Any
    clock: Any
    faults: Any
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

    def add_particle_burst(self, peak_0_5_per_m3: float, peak_5_0_per_m3: float | None = None) -> None:
        """A contamination event (fault injection, scenarios): add a burst of ``peak_0_5_per_m3``
        at >= 0.5 um and ``peak_5_0_per_m3`` at >= 5 um (default: scaled by the ISO 14644-1 size
        distribution). Decays with ``burst_decay_s``.

        Raises:
            InvalidCommand: a peak that is negative or not finite.
        """
        for name, v in (("peak_0_5_per_m3", peak_0_5_per_m3), ("peak_5_0_per_m3", peak_5_0_per_m3)):
            if v is not None and (not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0):
                raise InvalidCommand(f"{name} must be a finite number >= 0, got {v!r}")
        self._add_burst(float(peak_0_5_per_m3))
        if peak_5_0_per_m3 is not None:
            self._particles.burst_5_0 += float(peak_5_0_per_m3) - float(peak_0_5_per_m3) * (
                0.5 / 5.0) ** PARTICLE_SIZE_EXPONENT
        self.interventions.append({"t": self.clock.now(), "kind": "contamination", "port": None})

    def _add_burst(self, peak_0_5: float, age_s: float = 0.0) -> None:
        decay = math.exp(-age_s / self.cfg.particles.burst_decay_s)
        self._particles.burst_0_5 += peak_0_5 * decay
        self._particles.burst_5_0 += peak_0_5 * (0.5 / 5.0) ** PARTICLE_SIZE_EXPONENT * decay

    def _particle_truth(self, ahead_s: float = 0.0) -> tuple[float, float]:
        """True concentrations (/m3): background, decaying bursts and, while the fault
        ``particle_source`` is injected, a steady contamination source (params ``0_5_per_m3``,
        ``5_0_per_m3``; default 20 000 and the ISO 14644-1 share of it at 5 um)."""
        pc = self.cfg.particles
        decay = math.exp(-ahead_s / pc.burst_decay_s)
        src05 = src50 = 0.0
        f = self.faults.active("particle_source")
        if f is not None:
            src05 = particle_source_param(f, "0_5_per_m3", 20_000.0)
            src50 = particle_source_param(f, "5_0_per_m3", src05 * (0.5 / 5.0) ** PARTICLE_SIZE_EXPONENT)
        return (
            pc.background_0_5_per_m3 + self._particles.burst_0_5 * decay + src05,
            pc.background_5_0_per_m3 + max(0.0, self._particles.burst_5_0) * decay + src50,
        )

    def _sample_time_s(self) -> float:
        return float(getattr(self.cfg.particles, "sample_time_s", PARTICLE_WINDOW_S))

    def _flow_m3_s(self) -> float:
        """Sample flow (L/min -> m3/s)."""
        return float(self.cfg.particles.sample_flow_l_min) * 1e-3 / 60.0

    def _sample_volume_m3(self) -> float:
        """Air in one complete sample (m3): flow times sample time (28.3 L for 1 min at 28.3 L/min)."""
        return self._flow_m3_s() * self._sample_time_s()

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
        """Count one report interval of sample air into the sample in progress; at the end of
        a sample, its counts over the volume sampled become the reported concentration."""
        c05, c50 = self._particle_truth(ahead_s)
        pt = self._particles
        dv = self._flow_m3_s() * self.particle_report_interval_s
        n50 = self._poisson(c50 * dv)
        pt.running_5_0 += n50
        pt.running_0_5 += n50 + self._poisson(max(0.0, c05 - c50) * dv)  # cumulative channel: >=0.5 includes >=5
        pt.sample_elapsed_s += self.particle_report_interval_s
        v = self._sample_volume_m3()
        if pt.sample_elapsed_s >= self._sample_time_s() - 1e-9:
            volume = self._flow_m3_s() * pt.sample_elapsed_s
            pt.last_0_5, pt.last_5_0 = pt.running_0_5 / volume, pt.running_5_0 / volume
            pt.last_count_5_0 = pt.running_5_0
            pt.samples_5_0.append(pt.running_5_0)
            while len(pt.samples_5_0) > max(1, int(getattr(self.cfg.particles, "trend_5_0_m", 3))):
                pt.samples_5_0.popleft()
            pt.samples_done += 1
            pt.running_0_5 = pt.running_5_0 = 0
            pt.sample_elapsed_s = 0.0
        pt.reading_0_5 = max(pt.last_0_5, pt.running_0_5 / v)
        if pt.running_5_0 / v > pt.last_5_0:
            pt.reading_5_0, pt.count_5_0 = pt.running_5_0 / v, pt.running_5_0
        else:
            pt.reading_5_0, pt.count_5_0 = pt.last_5_0, pt.last_count_5_0

    def _prime_particle_counter(self) -> None:
        """The counter is already running when the model starts: one complete sample of background."""
        for _ in range(max(1, round(self._sample_time_s() / self.particle_report_interval_s))):
            self._count_particles(0.0)
        self._particles.samples_5_0.clear()

    def particle_flags(self, r05: float, r50: float) -> dict[str, bool]:
        """Alert / action flags of the counter from its (possibly faulty) readings. NaN (no
        reading) raises nothing here; a counter that is not running is its own alarm."""
        if not (math.isfinite(r05) and math.isfinite(r50)):
            return dict.fromkeys(("particles.0_5_alert", "particles.0_5_action", "particles.5_0_alert",
                                  "particles.5_0_action", "particles.action_excursion"), False)
        pc = self.cfg.particles
        pt = self._particles
        count = pt.count_5_0
        min_count = int(getattr(pc, "action_5_0_min_count", 2))
        n, m = int(getattr(pc, "trend_5_0_n", 2)), int(getattr(pc, "trend_5_0_m", 3))
        recent = list(pt.samples_5_0)[-m:]
        if pt.running_5_0 > 0:  # the sample in progress already counts
            recent = [*recent[-(m - 1):], pt.running_5_0] if m > 1 else [pt.running_5_0]
        trend = sum(1 for c in recent if c > 0) >= n
        a05 = bool(r05 > pc.action_0_5_per_m3)
        a50 = (bool(r50 > pc.action_5_0_per_m3) and count >= min_count) or trend
        return {
            "particles.0_5_alert": bool(r05 > pc.alert_0_5_per_m3),
            "particles.0_5_action": a05,
            "particles.5_0_alert": bool(r50 > pc.alert_5_0_per_m3) or trend,
            "particles.5_0_action": a50,
            "particles.action_excursion": a05 or a50,
        }
