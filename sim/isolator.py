"""Process model of the grade-A isolator (simulated device).

Plain, deterministic Python: stepped on an injected clock, no threads, no wall clock,
randomness only from a seeded :class:`random.Random`. Wrapped later by a ROS 2 node and
by an OPC UA emulator server; nothing here knows about either.

What is modelled (sources by key, docs/REFERENCES.md):

* ΔP to the room (Annex 1 §4.15-4.18 [ANNEX1-2022] [M]; set point, band and delay are
  site values [M] in config/): a fan/damper loop drives ΔP to the set point with
  ``fan_time_constant_s``; a laminar enclosure leak (``leak_rate_per_h``, ISO 10648-2
  hourly leak rate [ISO10648-2]) lowers the achievable ΔP; door/seal events add a dip that
  recovers with ``recovery_time_constant_s``. ΔP alarm after ``alarm_delay_s`` out of band.
* Pass-through hatch with doors A (room) / B (isolator) and inflatable seals (Annex 1 §4.14
  [ANNEX1-2022] [M]; [METRO] [QB-APR]; IL-01).
* Rapid transfer ports: alpha door, beta docking and locking ([MC-RTP]; IL-02, IL-03).
* Glove ports: in use / extended, pressure-decay integrity test with a record per
  Annex 1 §4.24 [ANNEX1-2022] [M] (ISO 14644-7 Annex E.5 [ISO14644-7]; [COM]).
* Whole-enclosure pressure-hold leak test (the VHP pre-check; [ISO10648-2]).
* Grade-A particle counts with bursts on interventions and door events (Annex 1
  Tables 1, 5 [ANNEX1-2022]; [ISO14644-1]; [TSI]).
* Airflow, temperature, RH (shared :class:`Atmosphere` with the VHP unit).
* Decontamination status (``DecontStatus`` of the cell's OPC UA model) and its BREACHED
  transition.

Where each physical thing lives (mixins that :class:`IsolatorModel` composes; the model
owns the shared state, the sub-stepping, the breach / decontamination status and the
sensor readings):

* :mod:`.isolator_pressure`: ΔP, its alarm, the enclosure leak test;
* :mod:`.isolator_hatch`: pass-through hatch doors, seals, dwell (IL-01);
* :mod:`.isolator_rtp`: rapid transfer ports, alpha door, beta docking and lock (IL-02/03);
* :mod:`.isolator_gloves`: glove ports and the glove integrity test (IL-05);
* :mod:`.isolator_particles`: particle counts and intervention bursts.

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
from typing import Any

from .common import (
    Atmosphere,
    DeconStatus,
    FaultHooks,
    InvalidCommand,
    SensorChannel,
    first_order,
    read_sensors,
    require_finite,
)
from .isolator_gloves import (
    AIR_DENSITY_KG_M3,
    DEFAULT_GLOVE_HOLE_UM,
    ORIFICE_DISCHARGE_COEFFICIENT,
    GlovePort,
    IsolatorGloves,
)
from .isolator_hatch import HATCH_DOORS, HatchDoor, IsolatorHatch, other_door
from .isolator_particles import (
    PARTICLE_REPORT_INTERVAL_S,
    PARTICLE_SIZE_EXPONENT,
    PARTICLE_WINDOW_S,
    IsolatorParticles,
    ParticleState,
    particle_source_param,
)
from .isolator_pressure import (
    DEFAULT_LEAK_FAULT_RATE_PER_H,
    P_ATM_PA,
    DpAlarmState,
    IsolatorPressure,
    LeakTestState,
)
from .isolator_rtp import IsolatorRTPs, RTPState
from .isolator_workstation import IsolatorWorkstation

__all__ = [
    "AIR_DENSITY_KG_M3",
    "DEFAULT_GLOVE_HOLE_UM",
    "DEFAULT_LEAK_FAULT_RATE_PER_H",
    "HATCH_DOORS",
    "ORIFICE_DISCHARGE_COEFFICIENT",
    "PARTICLE_REPORT_INTERVAL_S",
    "PARTICLE_SIZE_EXPONENT",
    "PARTICLE_WINDOW_S",
    "P_ATM_PA",
    "RH_RELAX_TIME_CONSTANT_S",
    "SUBSTEP_S",
    "IsolatorModel",
]

RH_RELAX_TIME_CONSTANT_S = 3600.0
"""Time constant with which RH inside relaxes to the room RH when no VHP cycle runs [M]
(make-up air through the inlet HEPA). Candidate for a config field."""

SUBSTEP_S = 0.1
"""Numerical integration sub-step (s). Internal; results do not depend on ``dt`` up to 1 s."""


# --------------------------------------------------------------------------- the model
class _IsolatorFaults(FaultHooks):
    """The isolator's fault hooks: a ``particle_source`` is checked when it is injected."""

    def inject(self, name: str, **params: Any) -> None:
        if name == "particle_source":
            for key in ("0_5_per_m3", "5_0_per_m3"):
                if key in params:
                    particle_source_param(params, key, 0.0)
            unknown = sorted(set(params) - {"0_5_per_m3", "5_0_per_m3"})
            if unknown:
                raise InvalidCommand(f"particle_source: unknown parameter(s) {unknown}; known: 0_5_per_m3, 5_0_per_m3")
        super().inject(name, **params)


class IsolatorModel(IsolatorPressure, IsolatorHatch, IsolatorRTPs, IsolatorGloves, IsolatorParticles,
                    IsolatorWorkstation):
    """Simulated isolator.

    ``substep_s`` (default :data:`SUBSTEP_S`) bounds the integration sub-step and
    ``particle_report_interval_s`` (default :data:`PARTICLE_REPORT_INTERVAL_S`) is the counter's
    report grid: per-instance parameters (a caller integrating a cell at rest in long steps may
    raise them on this instance, e.g. the throughput twin).

    Args:
        cfg: the ``isolator`` section of ``config/cell.yaml``.
        clock: injected clock; ``clock.now()`` timestamps records.
        seed: seed of the particle-count noise (``sim.seed`` of the cell config).
    """

    substep_s: float = SUBSTEP_S

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
        known = {"leak", "fan_failure", "seal_loss", "particle_monitor_failure", "particle_source"}
        known |= {f"glove_breach:{g}" for g in self._glove_ids}
        known |= {f"beta_lock_failure:{r}" for r in self._rtp_ids}
        self.faults = _IsolatorFaults(known=known)

        p = cfg.pressure
        self._dp_base: float = p.setpoint_pa
        self._dip: float = 0.0
        self._airflow: float = cfg.airflow.velocity_m_s
        self._alarm = DpAlarmState()

        self._doors = {d: HatchDoor(d) for d in HATCH_DOORS}
        self._hatch_decontaminated = False
        self._hatch_cycle: dict[str, Any] | None = None
        self._hatch_runs = 0
        self.hatch_decon_records: list[dict[str, Any]] = []
        self._open_stations: set[str] = set()
        self._seal_lost: dict[str, bool] = {d: False for d in HATCH_DOORS}
        self._rtps = {r.id: RTPState(r.id, r.door_travel_s, r.lock_time_s) for r in cfg.rtps}
        self._gloves = {
            g.id: GlovePort(g.id, g.glove_lot, g.fitted.isoformat()) for g in cfg.glove_ports
        }
        self._leak = LeakTestState()
        self._particles = ParticleState(
            reading_0_5=cfg.particles.background_0_5_per_m3,
            reading_5_0=cfg.particles.background_5_0_per_m3,
            next_report_t=self._t,
        )
        self._prime_particle_counter()
        self._decon_status = DeconStatus.NOT_DECONTAMINATED
        self._decon_run_id = ""
        self._breach_reason = ""
        self.interventions: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []  # device event log (door events, breaches, tests)

        self._channels: dict[str, SensorChannel] = {}
        self._held: dict[str, Any] = {}  # stuck values of non-numeric sensors
        self._dp_channel = self._channel("dp_pa")
        self._sensor_faults_seen = False

    def step(self, dt: float) -> None:
        """Advance the physics by ``dt`` sim seconds (sub-stepped internally)."""
        dt = require_finite("dt", dt)
        if dt < 0:
            raise InvalidCommand(f"dt must be >= 0, got {dt}")
        n = max(1, math.ceil(dt / self.substep_s - 1e-9))
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
        self._advance_hatch_decon(t0 + h)
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
            self._particles.next_report_t = tr + self.particle_report_interval_s

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

    def _door_event(self, what: str, t: float, at_end_of: float = 0.0) -> None:
        """A door/seal event: ΔP dip and a particle burst (decayed over ``at_end_of`` s)."""
        p = self.cfg.pressure
        decay = math.exp(-at_end_of / p.recovery_time_constant_s)
        self._dip += p.door_event_drop_pa * decay
        self._add_burst(self.cfg.particles.burst_door_0_5, at_end_of)
        self.events.append({"t": t, "event": what})

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
            other = self._doors[other_door(d)]
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
        s.update(self.workstation_sensors())
        s.update(self.hatch_decon_sensors())
        return s

    def sensors(self) -> dict[str, float | bool | str]:
        """What the real isolator reports, with sensor faults (``sensor:<key>``) applied."""
        out = read_sensors(self._raw_sensors(), self._t, self.faults, self._channels, self._held)
        # derived flags are computed from the (possibly faulty) readings, as the counter does
        p = self.cfg.pressure
        out.update(self.particle_flags(float(out["particles.0_5_per_m3"]), float(out["particles.5_0_per_m3"])))
        out["particles.5_0_count"] = self._particles.count_5_0
        out["particles.sample_time_s"] = self._sample_time_s()
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
