"""Process model of the grade-A isolator (simulated device).

Plain, deterministic Python: stepped on an injected clock, no threads, no wall clock,
randomness only from a seeded :class:`random.Random`. Wrapped later by a ROS 2 node and
by an OPC UA emulator server; nothing here knows about either.

What is modelled (domain spec sections in brackets):

* ΔP to the room (§1.2): a fan/damper loop drives ΔP to the set point with
  ``fan_time_constant_s``; a laminar enclosure leak (``leak_rate_per_h``, ISO 10648-2
  hourly leak rate) lowers the achievable ΔP; door/seal events add a dip that recovers
  with ``recovery_time_constant_s``. ΔP alarm after ``alarm_delay_s`` out of band.
* Pass-through hatch with doors A (room) / B (isolator) and inflatable seals (§1.5, IL-01).
* Rapid transfer ports: alpha door, beta docking and locking (§1.5, IL-02, IL-03).
* Glove ports: in use / extended, pressure-decay integrity test with a record per §1.3.
* Whole-enclosure pressure-hold leak test (§2.1 phase 0).
* Grade-A particle counts with bursts on interventions and door events (§1.1, §1.6).
* Airflow, temperature, RH (shared :class:`Atmosphere` with the VHP unit).
* Decontamination status (§6 DecontStatus) and its BREACHED transition.

Model assumptions (each is a simplification of the real physics, stated once here):

* The enclosure leak is laminar (flow proportional to ΔP). ``leak_rate_per_h`` is read as
  the ISO 10648-2 hourly leak rate at the leak-test pressure, i.e. the fraction of the
  *absolute* pressure lost per hour there, which gives the decay rate constant
  ``lambda = R_f * p_atm / (3600 s * p_test)`` (1/s) for the gauge pressure.
* The pressure loop acts like a proportional controller of bandwidth 1/tau_fan, so a leak
  ``lambda`` leaves an offset: ΔP_eq = setpoint / (1 + lambda * tau_fan).
* Pressurisation for the leak test and the glove test is instantaneous; temperature
  effects during the holds are ignored (isothermal); the glove test volume is rigid.
* The intact glove loses gas at the enclosure's own hourly leak rate (same ISO class as
  the enclosure it belongs to); a hole is a sharp-edged orifice.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..devices.codes import RefusalCode
from .common import (
    Atmosphere,
    CommandRefused,
    DeconStatus,
    FaultHooks,
    InvalidCommand,
    SensorChannel,
    first_order,
    read_sensors,
    require_finite,
)

# --------------------------------------------------------------------------- constants
P_ATM_PA = 101_325.0
"""Standard atmospheric pressure (ISO 2533 standard atmosphere)."""

AIR_DENSITY_KG_M3 = 1.204
"""Dry air at 20 degC and 101.325 kPa (ISO 2533 / ideal gas, R_air = 287.05 J/(kg K))."""

ORIFICE_DISCHARGE_COEFFICIENT = 0.61
"""Sharp-edged orifice discharge coefficient, textbook value for thin-plate orifices
(ISO 5167-2 orifice plates have C ~ 0.6)."""

PARTICLE_SIZE_EXPONENT = 2.08
"""ISO 14644-1:2015 Eq. (1): C_n = 10^N (0.1/D)^2.08. Used to scale a >=0.5 um burst to
the >=5 um channel (factor (0.5/5)^2.08 ~ 0.0083)."""

DEFAULT_GLOVE_HOLE_UM = 100.0
"""Default hole diameter of a ``glove_breach:<port>`` fault: the hole size automated
glove testers find (about 100 um) [V] [SPR24] (spec §1.3)."""

DEFAULT_LEAK_FAULT_RATE_PER_H = 5.0
"""Extra hourly leak rate of a ``leak`` fault injected without parameters: a gross leak
(torn gasket; lambda = 0.56 /s at 250 Pa) that pulls ΔP to about 15 Pa, below any sensible
alarm_low. Fault-injection convenience, not a process value."""

PARTICLE_REPORT_INTERVAL_S = 1.0
"""Interval at which the particle counter reports a new value [M]: remote counters report
about once a second. Candidate for ``particles.report_interval_s`` in config."""

PARTICLE_WINDOW_S = 60.0
"""Each report is the count in the last minute's sample volume (28.3 L at 1 ft3/min,
spec §1.6 [V] [TSI]) per m3: the 1 ft3/min sample-volume convention. One >=5 um particle in
that volume reads 35 /m3, above the 29 /m3 limit, as on a real counter."""

RH_RELAX_TIME_CONSTANT_S = 3600.0
"""Time constant with which RH inside relaxes to the room RH when no VHP cycle runs [M]
(make-up air through the inlet HEPA). Candidate for a config field."""

SUBSTEP_S = 0.1
"""Numerical integration sub-step (s). Internal; results do not depend on ``dt`` up to 1 s."""

HATCH_DOORS = ("A", "B")
_ETERNITY = math.inf


def _other(door: str) -> str:
    return "B" if door == "A" else "A"


# --------------------------------------------------------------------------- small state holders
@dataclass
class _HatchDoor:
    name: str
    phase: str = "closed"  # closed | releasing | opening | open | closing
    pos: float = 0.0  # 0 closed .. 1 open
    seal: float = 1.0  # 0 deflated .. 1 inflated
    closed_at: float = -_ETERNITY  # time the door last reached closed

    @property
    def closed(self) -> bool:
        return self.phase == "closed"

    @property
    def seal_inflated(self) -> bool:
        return self.seal >= 1.0


@dataclass
class _RTP:
    id: str
    door_travel_s: float
    lock_time_s: float
    alpha_phase: str = "closed"  # closed | opening | open | closing
    alpha_pos: float = 0.0
    beta_docked: bool = False
    beta_id: str = ""
    beta_sterile_status: str = ""
    lock: float = 0.0  # 0 unlocked .. 1 locked
    lock_target: float = 0.0

    @property
    def beta_locked(self) -> bool:
        return self.beta_docked and self.lock >= 1.0 and self.lock_target >= 1.0

    @property
    def alpha_closed(self) -> bool:
        return self.alpha_phase == "closed"


@dataclass
class _GlovePort:
    id: str
    glove_lot: str
    fitted: str
    in_use: bool = False
    extended: bool = False
    test: dict[str, Any] | None = None  # running test
    last_test: dict[str, Any] | None = None  # last completed test record


@dataclass
class _LeakTest:
    running: bool = False
    p_pa: float = 0.0
    started_at: float = 0.0
    record: dict[str, Any] | None = None
    valid: bool = False  # last result PASS and no breach since


@dataclass
class _Particles:
    burst_0_5: float = 0.0
    burst_5_0: float = 0.0
    reading_0_5: float = 0.0
    reading_5_0: float = 0.0
    next_report_t: float = 0.0
    window_0_5: deque[int] = field(default_factory=deque)  # counts per report interval
    window_5_0: deque[int] = field(default_factory=deque)


@dataclass
class _DpAlarm:
    out_since: float | None = None  # time ΔP (measured) left the band
    kind: str = ""  # "", "low", "high"
    active: bool = False


@dataclass
class _Breach:
    reasons: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- the model
class IsolatorModel:
    """Simulated isolator.

    Args:
        cfg: the ``isolator`` section of ``config/cell.yaml``.
        clock: injected clock; ``clock.now()`` timestamps records.
        seed: seed of the particle-count noise (``sim.seed`` of the cell config).
    """

    def __init__(self, cfg: Any, clock: Any, seed: int = 1) -> None:
        self.cfg = cfg
        self.clock = clock
        self.id: str = cfg.id
        self.volume_m3: float = cfg.volume_m3
        self.internal_area_m2: float = cfg.internal_area_m2
        self.air = Atmosphere(temp_c=cfg.temperature_c, rh_pct=cfg.room_rh_pct)
        self._rng = random.Random(seed)
        self._t: float = float(clock.now())

        self._glove_ids = [g.id for g in cfg.glove_ports]
        self._rtp_ids = [r.id for r in cfg.rtps]
        known = {"leak", "fan_failure", "seal_loss", "particle_monitor_failure"}
        known |= {f"glove_breach:{g}" for g in self._glove_ids}
        known |= {f"beta_lock_failure:{r}" for r in self._rtp_ids}
        self.faults = FaultHooks(known=known)

        p = cfg.pressure
        self._dp_base: float = p.setpoint_pa
        self._dip: float = 0.0
        self._airflow: float = cfg.airflow.velocity_m_s
        self._alarm = _DpAlarm()

        self._doors = {d: _HatchDoor(d) for d in HATCH_DOORS}
        self._hatch_decontaminated = False
        self._seal_lost: dict[str, bool] = {d: False for d in HATCH_DOORS}
        self._rtps = {r.id: _RTP(r.id, r.door_travel_s, r.lock_time_s) for r in cfg.rtps}
        self._gloves = {
            g.id: _GlovePort(g.id, g.glove_lot, g.fitted.isoformat()) for g in cfg.glove_ports
        }
        self._leak = _LeakTest()
        self._particles = _Particles(
            reading_0_5=cfg.particles.background_0_5_per_m3,
            reading_5_0=cfg.particles.background_5_0_per_m3,
            next_report_t=self._t,
        )
        for _ in range(round(PARTICLE_WINDOW_S / PARTICLE_REPORT_INTERVAL_S)):  # counter already running
            self._count_particles(0.0)
        self._decon_status = DeconStatus.NOT_DECONTAMINATED
        self._decon_run_id = ""
        self._breach_reason = ""
        self.interventions: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []  # device event log (door events, breaches, tests)

        self._channels: dict[str, SensorChannel] = {}
        self._held: dict[str, Any] = {}  # stuck values of non-numeric sensors
        self._dp_channel = self._channel("dp_pa")
        self._sensor_faults_seen = False

    # ================================================================== physics
    def step(self, dt: float) -> None:
        """Advance the physics by ``dt`` sim seconds (sub-stepped internally)."""
        dt = require_finite("dt", dt)
        if dt < 0:
            raise InvalidCommand(f"dt must be >= 0, got {dt}")
        n = max(1, math.ceil(dt / SUBSTEP_S - 1e-9))
        h = dt / n
        for _ in range(n):
            self._substep(h)
        self._latch_sensor_faults()

    def _latch_sensor_faults(self) -> None:
        """Read the sensors while a sensor fault is active (or was until now), so a stuck
        value is latched at injection time and channels reset once the fault clears."""
        active = any(n.startswith("sensor:") for n in self.faults.names())
        if active or self._sensor_faults_seen:
            self.sensors()
        self._sensor_faults_seen = active

    def _substep(self, h: float) -> None:
        t0 = self._t
        t1 = t0 + h
        cfg = self.cfg
        p = cfg.pressure
        fan_ok = "fan_failure" not in self.faults
        lam = self._leak_lambda()

        # ---- transients decay first; events below add their share already decayed to t1
        self._dip = first_order(self._dip, 0.0, p.recovery_time_constant_s, h)
        pc = cfg.particles
        self._particles.burst_0_5 *= math.exp(-h / pc.burst_decay_s)
        self._particles.burst_5_0 *= math.exp(-h / pc.burst_decay_s)

        # ---- discrete devices (doors, seals, locks, gloves); events at exact times
        self._update_seal_loss_fault(t0, h)
        for d in self._doors.values():
            self._advance_door(d, t0, h)
        for r in self._rtps.values():
            self._advance_rtp(r, t0, h)

        # ---- ΔP
        if self._leak.running:
            self._leak.p_pa *= math.exp(-lam * h)
            self._dp_base = self._leak.p_pa
        elif fan_ok:
            tau = p.fan_time_constant_s
            target = p.setpoint_pa / (1.0 + lam * tau)
            self._dp_base = first_order(self._dp_base, target, 1.0 / (1.0 / tau + lam), h)
        else:
            tau = p.fan_time_constant_s
            self._dp_base = first_order(self._dp_base, 0.0, 1.0 / (1.0 / tau + lam), h)

        # ---- airflow, T, RH
        self._airflow = first_order(
            self._airflow, cfg.airflow.velocity_m_s if fan_ok else 0.0, p.fan_time_constant_s, h
        )
        self.air.temp_c = cfg.temperature_c
        if self._decon_status not in (DeconStatus.CYCLE_RUNNING, DeconStatus.AERATING):
            self.air.rh_pct = first_order(self.air.rh_pct, cfg.room_rh_pct, RH_RELAX_TIME_CONSTANT_S, h)

        # ---- particle counts on a fixed sim-time grid (state is at t1: look back to tr)
        while self._particles.next_report_t <= t1 + 1e-9:
            tr = self._particles.next_report_t
            self._count_particles(-(t1 - tr))
            self._particles.next_report_t = tr + PARTICLE_REPORT_INTERVAL_S

        # ---- glove tests
        for g in self._gloves.values():
            if g.test is not None:
                self._advance_glove_test(g, h)

        self._t = t1

        # ---- leak test end / abort
        if self._leak.running:
            if self.breaches():
                self._finish_leak_test(aborted_by=", ".join(self.breaches()))
            elif self._t - self._leak.started_at >= cfg.leak_test.test_s - 1e-9:
                self._finish_leak_test()

        # ---- ΔP alarm (on the measured value, as the monitoring system sees it)
        self._update_dp_alarm()
        self._check_breaches()

    # ---------------------------------------------------------------- ΔP helpers
    def _leak_lambda(self) -> float:
        """Decay rate constant (1/s) of the gauge pressure through the enclosure leak."""
        rate = self.cfg.pressure.leak_rate_per_h
        f = self.faults.active("leak")
        if f is not None:
            if "factor" not in f and "rate_per_h" not in f:
                rate += DEFAULT_LEAK_FAULT_RATE_PER_H
            else:
                rate = rate * float(f.get("factor", 1.0)) + float(f.get("rate_per_h", 0.0))
        return rate * P_ATM_PA / (3600.0 * self.cfg.leak_test.test_pressure_pa)

    def _door_event(self, what: str, t: float, at_end_of: float = 0.0) -> None:
        """A door/seal event: ΔP dip and a particle burst (decayed over ``at_end_of`` s)."""
        p = self.cfg.pressure
        decay = math.exp(-at_end_of / p.recovery_time_constant_s)
        self._dip += p.door_event_drop_pa * decay
        self._add_burst(self.cfg.particles.burst_door_0_5, at_end_of)
        self.events.append({"t": t, "event": what})

    def _update_dp_alarm(self) -> None:
        p = self.cfg.pressure
        a = self._alarm
        if self._leak.running:  # test mode: the monitoring band does not apply
            a.out_since, a.kind, a.active = None, "", False
            return
        dp = self._dp_channel.read(self.dp_pa(), self._t, self.faults)
        if p.alarm_low_pa <= dp <= p.alarm_high_pa:
            a.out_since, a.kind, a.active = None, "", False
            return
        kind = "high" if dp > p.alarm_high_pa else "low"  # NaN counts as low (fail safe)
        if a.out_since is None or kind != a.kind:
            a.out_since, a.kind = self._t, kind
        a.active = self._t - a.out_since > p.alarm_delay_s - 1e-9

    def _dp_measured(self) -> float:
        return self._dp_channel.read(self.dp_pa(), self._t, self.faults)

    def _dp_in_band(self) -> bool:
        p = self.cfg.pressure
        dp = self._dp_measured()
        return p.alarm_low_pa <= dp <= p.alarm_high_pa

    # ---------------------------------------------------------------- hatch helpers
    def _update_seal_loss_fault(self, t: float, h: float) -> None:
        f = self.faults.active("seal_loss")
        affected: set[str] = set()
        if f is not None:
            door = f.get("door")
            affected = set(HATCH_DOORS) if door is None else {str(door)}
        for d in HATCH_DOORS:
            lost = d in affected
            if lost and not self._seal_lost[d] and self._doors[d].seal > 0.0:
                self._door_event(f"hatch seal {d} lost", t, at_end_of=h)
            self._seal_lost[d] = lost

    def _advance_door(self, d: _HatchDoor, t0: float, h: float) -> None:
        hc = self.cfg.hatch
        rem = h
        # seal: target inflated only when the door is closed and the seal supply is intact
        while rem > 0.0:
            if d.phase == "releasing":
                need = d.seal * hc.seal_deflate_s
                if need <= rem:
                    d.seal = 0.0
                    rem -= need
                    d.phase = "opening"
                    self._door_event(f"hatch door {d.name} opening", t0 + h - rem, at_end_of=rem)
                    continue
                d.seal -= rem / hc.seal_deflate_s
                rem = 0.0
            elif d.phase == "opening":
                need = (1.0 - d.pos) * hc.door_travel_s
                if need <= rem:
                    d.pos = 1.0
                    rem -= need
                    d.phase = "open"
                    continue
                d.pos += rem / hc.door_travel_s
                rem = 0.0
            elif d.phase == "closing":
                need = d.pos * hc.door_travel_s
                if need <= rem:
                    d.pos = 0.0
                    rem -= need
                    d.phase = "closed"
                    d.closed_at = t0 + h - rem
                    self._door_event(f"hatch door {d.name} closed", d.closed_at, at_end_of=rem)
                    continue
                d.pos -= rem / hc.door_travel_s
                rem = 0.0
            elif d.phase == "closed":
                if self._seal_lost[d.name]:
                    d.seal = max(0.0, d.seal - rem / hc.seal_deflate_s)
                else:
                    d.seal = min(1.0, d.seal + rem / hc.seal_inflate_s)
                rem = 0.0
            else:  # open: seal stays deflated
                d.seal = max(0.0, d.seal - rem / hc.seal_deflate_s)
                rem = 0.0

    def _hatch_dwell_remaining(self, door: str) -> float:
        """Dwell still to run before ``door`` may open (since the other door closed)."""
        other = self._doors[_other(door)]
        return max(0.0, self.cfg.hatch.dwell_s - (self._t - other.closed_at))

    # ---------------------------------------------------------------- RTP helpers
    def _advance_rtp(self, r: _RTP, t0: float, h: float) -> None:
        f = self.faults.active(f"beta_lock_failure:{r.id}")
        if f is not None and r.beta_docked:
            r.lock = 0.0
            r.lock_target = 0.0
        if r.lock < r.lock_target:
            r.lock = min(r.lock_target, r.lock + h / r.lock_time_s)
        elif r.lock > r.lock_target:
            r.lock = max(r.lock_target, r.lock - h / r.lock_time_s)
        if r.alpha_phase == "opening":
            r.alpha_pos += h / r.door_travel_s
            if r.alpha_pos >= 1.0:
                r.alpha_pos, r.alpha_phase = 1.0, "open"
        elif r.alpha_phase == "closing":
            r.alpha_pos -= h / r.door_travel_s
            if r.alpha_pos <= 0.0:
                over = -r.alpha_pos * r.door_travel_s
                r.alpha_pos, r.alpha_phase = 0.0, "closed"
                self._door_event(f"rtp {r.id} alpha closed", t0 + h - over, at_end_of=over)

    # ---------------------------------------------------------------- particles
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

    # ---------------------------------------------------------------- glove test helpers
    def _glove_hole_k(self, port: str) -> float:
        """Orifice constant k (Pa^0.5/s) in dp/dt = -k sqrt(p) for a breached glove, else 0."""
        f = self.faults.active(f"glove_breach:{port}")
        if f is None:
            return 0.0
        d_m = float(f.get("hole_um", DEFAULT_GLOVE_HOLE_UM)) * 1e-6
        area = math.pi * d_m * d_m / 4.0
        v_m3 = self.cfg.glove_test.glove_volume_l * 1e-3
        return (P_ATM_PA / v_m3) * ORIFICE_DISCHARGE_COEFFICIENT * area * math.sqrt(2.0 / AIR_DENSITY_KG_M3)

    def _glove_lambda(self) -> float:
        """Intact-glove loss rate constant (1/s): the enclosure hourly leak rate at the test pressure."""
        gt = self.cfg.glove_test
        return self.cfg.pressure.leak_rate_per_h * P_ATM_PA / (3600.0 * gt.test_pressure_pa)

    def _advance_glove_test(self, g: _GlovePort, h: float) -> None:
        gt = self.cfg.glove_test
        test = g.test
        assert test is not None
        k = self._glove_hole_k(g.id)
        p = test["p_pa"]
        if k > 0.0:  # exact for dp/dt = -k sqrt(p)
            p = max(0.0, math.sqrt(max(p, 0.0)) - 0.5 * k * h) ** 2
        p *= math.exp(-self._glove_lambda() * h)
        test["p_pa"] = p
        test["elapsed_s"] += h
        el = test["elapsed_s"]
        if test["phase"] == "stabilising" and el >= gt.stabilisation_s - 1e-9:
            test["phase"] = "testing"
            test["p_start_pa"] = p
            test["test_started_at"] = self.clock.now()
        elif test["phase"] == "testing" and el >= gt.stabilisation_s + gt.test_s - 1e-9:
            self._finish_glove_test(g)

    def _finish_glove_test(self, g: _GlovePort) -> None:
        gt = self.cfg.glove_test
        test = g.test
        assert test is not None
        drop = test["p_start_pa"] - test["p_pa"]
        result = "PASS" if drop <= gt.max_drop_pa else "FAIL"
        now = self.clock.now()
        g.last_test = {
            # spec §1.3: what to record for each glove test
            "port_id": g.id,
            "glove_lot": g.glove_lot,
            "fitted": g.fitted,
            "method": "pressure decay, ISO 14644-7 Annex E.5",
            "test_pressure_pa": gt.test_pressure_pa,
            "stabilisation_s": gt.stabilisation_s,
            "test_s": gt.test_s,
            "started_at": test["started_at"],
            "test_started_at": test["test_started_at"],
            "p_start_pa": test["p_start_pa"],
            "p_end_pa": test["p_pa"],
            "drop_pa": drop,
            "limit_pa": gt.max_drop_pa,
            "result": result,
            "user": test["user"],
            "timestamp": now,
            "instrument_id": gt.instrument_id,
            "batch_id": test["batch_id"],
        }
        g.test = None
        self.events.append({"t": now, "event": f"glove test {g.id} {result}", "drop_pa": drop})
        if result == "FAIL":
            self._breach(f"glove test FAIL on {g.id} (drop {drop:.1f} Pa > {gt.max_drop_pa} Pa)")

    # ---------------------------------------------------------------- leak test helpers
    def _finish_leak_test(self, aborted_by: str = "") -> None:
        lt = self.cfg.leak_test
        decay = lt.test_pressure_pa - self._leak.p_pa
        if aborted_by:
            result = "FAIL"
        else:
            result = "PASS" if decay <= lt.max_decay_pa else "FAIL"
        now = self.clock.now()
        self._leak.record = {
            "test_pressure_pa": lt.test_pressure_pa,
            "hold_s": self._t - self._leak.started_at,
            "p_end_pa": self._leak.p_pa,
            "decay_pa": decay,
            "limit_pa": lt.max_decay_pa,
            "result": result,
            "aborted_by": aborted_by,
            "timestamp": now,
        }
        self._leak.running = False
        self._leak.valid = result == "PASS"
        self._dp_base = self._leak.p_pa  # vent back to the set point under fan control
        self.events.append({"t": now, "event": f"leak test {result}", "decay_pa": decay})

    # ---------------------------------------------------------------- breach / decon helpers
    def _breach(self, reason: str) -> None:
        if self._decon_status == DeconStatus.DECONTAMINATED_RELEASED:
            self._decon_status = DeconStatus.BREACHED
            self._breach_reason = reason
            self.events.append({"t": self.clock.now(), "event": "decon status BREACHED", "reason": reason})

    def _check_breaches(self) -> None:
        if self.breaches():
            self._leak.valid = False
        if self._decon_status != DeconStatus.DECONTAMINATED_RELEASED:
            return
        for d in HATCH_DOORS:
            other = self._doors[_other(d)]
            other_sealed = other.closed and other.seal_inflated
            if self._seal_lost[d] and self._doors[d].seal < 1.0 and not other_sealed:
                self._breach(f"hatch seal {d} lost while door {other.name} is not sealed")
                return
        for r in self._rtps.values():
            if not r.alpha_closed and not r.beta_locked:
                self._breach(f"RTP {r.id} alpha door open without a docked, locked beta")
                return
        if self._alarm.active and self._alarm.kind == "low":
            self._breach(
                f"ΔP below alarm_low ({self.cfg.pressure.alarm_low_pa} Pa) for more than "
                f"{self.cfg.pressure.alarm_delay_s} s"
            )

    # ================================================================== API used by the VHP model
    def dp_pa(self) -> float:
        """True ΔP to the room (Pa)."""
        return self._dp_base - self._dip

    def breaches(self) -> list[str]:
        """Reasons the enclosure is not sealed now (empty list = sealed)."""
        out: list[str] = []
        for d in self._doors.values():
            if not d.closed:
                out.append(f"hatch door {d.name} not closed ({d.phase})")
            elif not d.seal_inflated:
                out.append(f"hatch seal {d.name} not inflated")
        for r in self._rtps.values():
            if not r.alpha_closed:
                out.append(f"RTP {r.id} alpha door not closed ({r.alpha_phase})")
        for g in self._gloves.values():
            if g.in_use:
                out.append(f"glove {g.id} in use")
        return out

    def gloves_extended(self) -> bool:
        """True when every glove is extended on its rack (VHP precheck, IL-07)."""
        return all(g.extended for g in self._gloves.values())

    def leak_test_passed(self) -> bool:
        """True only after a PASS of the enclosure leak test with no breach since."""
        return self._leak.valid and not self._leak.running

    def set_decon_status(self, status: DeconStatus | str, run_id: str | None) -> None:
        """Set the decontamination status (called by the VHP unit); ``run_id`` may be None."""
        try:
            st = DeconStatus(status)
        except ValueError as exc:
            raise InvalidCommand(f"unknown decon status {status!r}") from exc
        if run_id is not None and not isinstance(run_id, str):
            raise InvalidCommand(f"run_id must be a string or None, got {run_id!r}")
        self._decon_status = st
        self._decon_run_id = run_id or ""
        if st != DeconStatus.BREACHED:
            self._breach_reason = ""
        self.events.append({"t": self.clock.now(), "event": f"decon status {st.value}", "run_id": run_id})
        self._check_breaches()

    @property
    def decon_status(self) -> DeconStatus:
        return self._decon_status

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

    # ================================================================== hatch commands
    def _door(self, door: str) -> _HatchDoor:
        if door not in self._doors:
            raise InvalidCommand(f"unknown hatch door {door!r}; doors are {list(HATCH_DOORS)}")
        return self._doors[door]

    def open_door(self, door: str) -> None:
        """Open hatch door ``"A"`` (room side) or ``"B"`` (isolator side). Idempotent.

        Raises:
            InvalidCommand: unknown door.
            CommandRefused: IL-01 (other door closed, its seal inflated, dwell elapsed, ΔP in
                band), door B without a decontaminated chamber, or a leak test running.
        """
        d = self._door(door)
        if d.phase in ("releasing", "opening", "open"):
            return
        other = self._doors[_other(door)]
        hid = self.cfg.hatch.id
        if self._leak.running:
            raise CommandRefused(RefusalCode.LEAK_TEST_RUNNING, f"{hid}: enclosure leak test in progress")
        if not other.closed:
            raise CommandRefused(
                RefusalCode.HATCH_OTHER_DOOR_OPEN, f"{hid}: door {other.name} is {other.phase} (IL-01)"
            )
        if not other.seal_inflated:
            raise CommandRefused(
                RefusalCode.HATCH_SEAL_DEFLATED,
                f"{hid}: seal of door {other.name} is not inflated ({other.seal:.0%}) (IL-01)",
            )
        remaining = self._hatch_dwell_remaining(door)
        if remaining > 0.0:
            raise CommandRefused(
                RefusalCode.HATCH_DWELL,
                f"{hid}: {remaining:.1f} s of the {self.cfg.hatch.dwell_s} s dwell since door "
                f"{other.name} closed still to run (IL-01)",
            )
        if not self._dp_in_band():
            p = self.cfg.pressure
            raise CommandRefused(
                RefusalCode.DP_OUT_OF_BAND,
                f"{hid}: isolator ΔP {self._dp_measured():.1f} Pa not within "
                f"[{p.alarm_low_pa}, {p.alarm_high_pa}] Pa (IL-01)",
            )
        if door == "B" and not self._hatch_decontaminated:
            raise CommandRefused(
                RefusalCode.HATCH_NOT_DECONTAMINATED,
                f"{hid}: chamber not decontaminated since door A was last opened (spec §1.5)",
            )
        if door == "A":
            self._hatch_decontaminated = False
        d.phase = "releasing" if d.seal > 0.0 else "opening"
        if d.phase == "opening":
            self._door_event(f"hatch door {d.name} opening", self._t)
        self._check_breaches()

    def close_door(self, door: str) -> None:
        """Close hatch door ``"A"`` or ``"B"``; its seal inflates once closed. Idempotent."""
        d = self._door(door)
        if d.phase == "closed" or d.phase == "closing":
            return
        if d.phase == "releasing":  # never moved: just re-seal
            d.phase = "closed"
            return
        d.phase = "closing"

    def mark_hatch_decontaminated(self) -> None:
        """Mark the hatch chamber decontaminated (end of a pass-box cycle)."""
        for d in self._doors.values():
            if not (d.closed and d.seal_inflated):
                raise CommandRefused(
                    RefusalCode.HATCH_NOT_SEALED, f"{self.cfg.hatch.id}: door {d.name} not closed and sealed"
                )
        self._hatch_decontaminated = True

    # ================================================================== RTP commands
    def _rtp(self, rtp: str) -> _RTP:
        if rtp not in self._rtps:
            raise InvalidCommand(f"unknown RTP {rtp!r}; known: {self._rtp_ids}")
        return self._rtps[rtp]

    def dock_beta(self, rtp: str, beta_id: str, sterile_status: str) -> None:
        """Dock a beta container (unlocked). Refused unless its status is ``"sterile"``."""
        r = self._rtp(rtp)
        if not isinstance(beta_id, str) or not beta_id:
            raise InvalidCommand("beta_id must be a non-empty string")
        if not isinstance(sterile_status, str):
            raise InvalidCommand("sterile_status must be a string")
        if r.beta_docked:
            if r.beta_id == beta_id:
                return
            raise CommandRefused(RefusalCode.RTP_OCCUPIED, f"{rtp}: beta {r.beta_id} already docked")
        if sterile_status != "sterile":
            raise CommandRefused(
                RefusalCode.BETA_NOT_STERILE,
                f"{rtp}: beta {beta_id} sterile status is {sterile_status!r}, not 'sterile' "
                "(spec §1.5 rule 4)",
            )
        r.beta_docked, r.beta_id, r.beta_sterile_status = True, beta_id, sterile_status
        r.lock, r.lock_target = 0.0, 0.0

    def lock_beta(self, rtp: str) -> None:
        r = self._rtp(rtp)
        if not r.beta_docked:
            raise CommandRefused(RefusalCode.RTP_NO_BETA, f"{rtp}: no beta docked")
        if f"beta_lock_failure:{rtp}" in self.faults:
            raise CommandRefused(RefusalCode.BETA_LOCK_FAILED, f"{rtp}: beta lock does not engage")
        r.lock_target = 1.0

    def unlock_beta(self, rtp: str) -> None:
        r = self._rtp(rtp)
        if not r.beta_docked or r.lock_target == 0.0:
            return
        if not r.alpha_closed:
            raise CommandRefused(RefusalCode.RTP_ALPHA_OPEN, f"{rtp}: alpha door is {r.alpha_phase} (IL-03)")
        r.lock_target = 0.0

    def undock_beta(self, rtp: str) -> None:
        r = self._rtp(rtp)
        if not r.beta_docked:
            return
        if not r.alpha_closed:
            raise CommandRefused(RefusalCode.RTP_ALPHA_OPEN, f"{rtp}: alpha door is {r.alpha_phase} (IL-03)")
        if r.lock > 0.0 or r.lock_target > 0.0:
            raise CommandRefused(
                RefusalCode.BETA_LOCKED, f"{rtp}: beta {r.beta_id} is still locked; unlock first"
            )
        r.beta_docked, r.beta_id, r.beta_sterile_status = False, "", ""

    def open_alpha(self, rtp: str) -> None:
        """Open the RTP alpha door. IL-02: only with a docked and locked beta. Idempotent."""
        r = self._rtp(rtp)
        if r.alpha_phase in ("opening", "open"):
            return
        if self._leak.running:
            raise CommandRefused(RefusalCode.LEAK_TEST_RUNNING, "enclosure leak test in progress")
        if not r.beta_docked:
            raise CommandRefused(RefusalCode.RTP_NO_BETA, f"{rtp}: no beta docked (IL-02)")
        if not r.beta_locked:
            raise CommandRefused(
                RefusalCode.RTP_BETA_NOT_LOCKED, f"{rtp}: beta {r.beta_id} not locked (IL-02)"
            )
        r.alpha_phase = "opening"
        self._door_event(f"rtp {rtp} alpha opening", self._t)
        self._check_breaches()

    def close_alpha(self, rtp: str) -> None:
        r = self._rtp(rtp)
        if r.alpha_phase in ("closed", "closing"):
            return
        r.alpha_phase = "closing"

    # ================================================================== glove commands
    def _glove(self, port: str) -> _GlovePort:
        if port not in self._gloves:
            raise InvalidCommand(f"unknown glove port {port!r}; known: {self._glove_ids}")
        return self._gloves[port]

    def use_glove(self, port: str, user: str = "") -> None:
        """Arm in glove (intervention). Refused after a FAIL, during a test, while extended."""
        g = self._glove(port)
        if g.in_use:
            return
        if g.last_test is not None and g.last_test["result"] == "FAIL":
            raise CommandRefused(
                RefusalCode.GLOVE_FAILED,
                f"{port}: last integrity test FAILED; port blocked (spec §1.3, IL-05)",
            )
        if g.test is not None:
            raise CommandRefused(RefusalCode.GLOVE_TEST_RUNNING, f"{port}: integrity test in progress")
        if g.extended:
            raise CommandRefused(RefusalCode.GLOVE_EXTENDED, f"{port}: glove is extended on its rack")
        if self._leak.running:
            raise CommandRefused(RefusalCode.LEAK_TEST_RUNNING, "enclosure leak test in progress")
        g.in_use = True
        self.note_intervention("glove", port)
        self.interventions[-1]["user"] = user
        self._check_breaches()

    def release_glove(self, port: str) -> None:
        g = self._glove(port)
        if g.in_use:
            g.in_use = False
            self.interventions.append({"t": self.clock.now(), "kind": "glove_end", "port": port})

    def extend_glove(self, port: str) -> None:
        g = self._glove(port)
        if g.extended:
            return
        if g.in_use:
            raise CommandRefused(RefusalCode.GLOVE_IN_USE, f"{port}: glove in use")
        if g.test is not None:
            raise CommandRefused(RefusalCode.GLOVE_TEST_RUNNING, f"{port}: integrity test in progress")
        g.extended = True

    def retract_glove(self, port: str) -> None:
        self._glove(port).extended = False

    def replace_glove(self, port: str, glove_lot: str, fitted: str) -> None:
        """Fit a new glove: clears the last test and any breach of the old glove."""
        g = self._glove(port)
        if not glove_lot or not fitted:
            raise InvalidCommand("glove_lot and fitted are required")
        if g.in_use or g.test is not None:
            raise CommandRefused(RefusalCode.GLOVE_IN_USE, f"{port}: glove in use or under test")
        g.glove_lot, g.fitted, g.last_test = glove_lot, fitted, None
        self.faults.clear(f"glove_breach:{port}")

    def start_glove_test(self, port: str, user: str = "", batch_id: str | None = None) -> None:
        """Start a pressure-decay integrity test (pressurise, stabilise, hold). Idempotent.

        Raises:
            InvalidCommand: unknown port or empty user.
            CommandRefused: the glove is in use (GLOVE_IN_USE) or extended (GLOVE_EXTENDED).
        """
        g = self._glove(port)
        if not isinstance(user, str) or not user:
            raise InvalidCommand("user (tester identity) is required")
        if g.test is not None:
            return
        if g.in_use:
            raise CommandRefused(RefusalCode.GLOVE_IN_USE, f"{port}: glove in use; cannot start a test")
        if g.extended:
            raise CommandRefused(
                RefusalCode.GLOVE_EXTENDED, f"{port}: glove extended on its rack; retract first"
            )
        g.test = {
            "phase": "stabilising",
            "p_pa": self.cfg.glove_test.test_pressure_pa,
            "elapsed_s": 0.0,
            "started_at": self.clock.now(),
            "test_started_at": None,
            "p_start_pa": None,
            "user": user,
            "batch_id": batch_id,
        }

    def glove_test_record(self, port: str) -> dict[str, Any] | None:
        rec = self._glove(port).last_test
        return None if rec is None else dict(rec)

    # ================================================================== leak test
    def start_leak_test(self) -> None:
        """Start the enclosure pressure-hold test (spec §2.1 phase 0). Idempotent.

        Raises:
            CommandRefused: the enclosure is not sealed (LEAK_TEST_NOT_SEALED) or a VHP
                cycle is running (DECON_CYCLE_ACTIVE).
        """
        if self._leak.running:
            return
        b = self.breaches()
        if b:
            raise CommandRefused(RefusalCode.LEAK_TEST_NOT_SEALED, "enclosure not sealed: " + "; ".join(b))
        if self._decon_status in (DeconStatus.CYCLE_RUNNING, DeconStatus.AERATING):
            raise CommandRefused(
                RefusalCode.DECON_CYCLE_ACTIVE, f"decon status is {self._decon_status.value}"
            )
        lt = self.cfg.leak_test
        self._leak.running = True
        self._leak.valid = False
        self._leak.p_pa = lt.test_pressure_pa
        self._leak.started_at = self._t
        self._dp_base = lt.test_pressure_pa
        self._dip = 0.0

    def leak_test_record(self) -> dict[str, Any] | None:
        return None if self._leak.record is None else dict(self._leak.record)

    # ================================================================== observation
    def _channel(self, name: str) -> SensorChannel:
        ch = self._channels.get(name)
        if ch is None:
            ch = self._channels[name] = SensorChannel(name)
        return ch

    def _raw_sensors(self) -> dict[str, float | bool | str]:
        cfg = self.cfg
        pc = cfg.particles
        s: dict[str, float | bool | str] = {}
        s["dp_pa"] = self.dp_pa()
        s["dp_alarm"] = self._alarm.active
        s["airflow_m_s"] = self._airflow
        s["temp_c"] = self.air.temp_c
        s["rh_pct"] = self.air.rh_pct
        running = "particle_monitor_failure" not in self.faults
        s["particles.monitor_running"] = running
        s["particles.sample_flow_l_min"] = pc.sample_flow_l_min if running else 0.0
        r05 = self._particles.reading_0_5 if running else math.nan
        r50 = self._particles.reading_5_0 if running else math.nan
        s["particles.0_5_per_m3"] = r05
        s["particles.5_0_per_m3"] = r50
        for d in HATCH_DOORS:
            door = self._doors[d]
            s[f"hatch.door_{d}"] = door.phase if door.phase != "releasing" else "opening"
            s[f"hatch.door_{d}.closed"] = door.closed
            s[f"hatch.seal_{d}.inflated"] = door.seal_inflated
        s["hatch.dwell_remaining_s"] = max(self._hatch_dwell_remaining(d) for d in HATCH_DOORS)
        s["hatch.decontaminated"] = self._hatch_decontaminated
        for r in self._rtps.values():
            s[f"rtp.{r.id}.alpha_door"] = r.alpha_phase
            s[f"rtp.{r.id}.alpha_closed"] = r.alpha_closed
            s[f"rtp.{r.id}.alpha_locked"] = r.alpha_closed and not r.beta_locked
            s[f"rtp.{r.id}.beta_docked"] = r.beta_docked
            s[f"rtp.{r.id}.beta_locked"] = r.beta_locked
            s[f"rtp.{r.id}.beta_id"] = r.beta_id
            s[f"rtp.{r.id}.beta_sterile_status"] = r.beta_sterile_status
        for g in self._gloves.values():
            lt = g.last_test
            s[f"glove.{g.id}.in_use"] = g.in_use
            s[f"glove.{g.id}.extended"] = g.extended
            s[f"glove.{g.id}.test_running"] = g.test is not None
            s[f"glove.{g.id}.test_pressure_pa"] = g.test["p_pa"] if g.test is not None else 0.0
            s[f"glove.{g.id}.last_test"] = lt["result"] if lt else "NONE"
            s[f"glove.{g.id}.last_test_value_pa"] = lt["drop_pa"] if lt else math.nan
            s[f"glove.{g.id}.last_test_limit_pa"] = cfg.glove_test.max_drop_pa
            s[f"glove.{g.id}.last_test_time"] = lt["timestamp"] if lt else math.nan
            s[f"glove.{g.id}.last_test_user"] = lt["user"] if lt else ""
        s["decon_status"] = self._decon_status.value
        s["decon_run_id"] = self._decon_run_id
        s["leak_test.running"] = self._leak.running
        s["leak_test.passed"] = self.leak_test_passed()
        return s

    def sensors(self) -> dict[str, float | bool | str]:
        """What the real isolator reports, with sensor faults (``sensor:<key>``) applied."""
        out = read_sensors(self._raw_sensors(), self._t, self.faults, self._channels, self._held)
        # derived flags are computed from the (possibly faulty) readings, as the counter does
        pc = self.cfg.particles
        p = self.cfg.pressure
        r05, r50 = out["particles.0_5_per_m3"], out["particles.5_0_per_m3"]
        out["particles.0_5_alert"] = bool(r05 > pc.alert_0_5_per_m3)
        out["particles.0_5_action"] = bool(r05 > pc.action_0_5_per_m3)
        out["particles.5_0_alert"] = bool(r50 > pc.alert_5_0_per_m3)
        out["particles.5_0_action"] = bool(r50 > pc.action_5_0_per_m3)
        out["particles.action_excursion"] = out["particles.0_5_action"] or out["particles.5_0_action"]
        dp = out["dp_pa"]
        out["dp_in_band"] = bool(p.alarm_low_pa <= dp <= p.alarm_high_pa)
        air = self.cfg.airflow
        out["airflow_alarm"] = not (air.min_m_s <= out["airflow_m_s"] <= air.max_m_s)
        out["any_glove_in_use"] = any(g.in_use for g in self._gloves.values())
        out["gloves_extended"] = self.gloves_extended()
        return out

    def truth(self) -> dict[str, Any]:
        """True internal state, for tests."""
        c05, c50 = self._particle_truth()
        return {
            "t": self._t,
            "dp_pa": self.dp_pa(),
            "dp_base_pa": self._dp_base,
            "dip_pa": self._dip,
            "leak_lambda_per_s": self._leak_lambda(),
            "airflow_m_s": self._airflow,
            "temp_c": self.air.temp_c,
            "rh_pct": self.air.rh_pct,
            "particles_0_5_per_m3": c05,
            "particles_5_0_per_m3": c50,
            "hatch": {d: {"phase": x.phase, "pos": x.pos, "seal": x.seal, "closed_at": x.closed_at}
                      for d, x in self._doors.items()},
            "glove_test_pressure_pa": {
                g.id: (g.test["p_pa"] if g.test else None) for g in self._gloves.values()
            },
            "leak_test_pressure_pa": self._leak.p_pa if self._leak.running else None,
        }

    def status(self) -> dict[str, Any]:
        """Device status summary (states, alarms, breaches, test records)."""
        return {
            "id": self.id,
            "t": self.clock.now(),
            "dp_alarm": self._alarm.active,
            "dp_alarm_kind": self._alarm.kind if self._alarm.active else "",
            "breaches": self.breaches(),
            "decon_status": self._decon_status.value,
            "decon_run_id": self._decon_run_id,
            "breach_reason": self._breach_reason,
            "hatch_decontaminated": self._hatch_decontaminated,
            "leak_test_running": self._leak.running,
            "leak_test_passed": self.leak_test_passed(),
            "leak_test": self.leak_test_record(),
            "glove_tests": {
                g.id: (dict(g.last_test) if g.last_test else None) for g in self._gloves.values()
            },
            "faults": self.faults.names(),
        }
