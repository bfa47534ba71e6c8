"""The autoclave's cycle: phases, the cycle record, and the supervision of a running program.

:class:`AutoclaveCycleSupervisor` holds the program logic of
:class:`~.autoclave.AutoclaveModel` (which inherits it): the abort rules checked on every
sub-step, the phase sequence of the sterilise, Bowie-Dick and leak-test programs, the
downsampled EN 285 record and the per-cycle result with its release decision. The chamber
physics, the doors and the commands stay in :mod:`.autoclave`; the model's state is
declared here only for the type checker.
"""

from __future__ import annotations

import enum
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..config.devices import (
    AutoclaveConfig,
    AutoclaveProgram,
    Drying,
    Exhaust,
    LeakTestProgram,
    Plateau,
    Prevacuum,
)
from .cycle import AlarmRecord, CheckedFaultHooks, PhaseRecord, json_safe
from .steam import ATMOSPHERIC_KPA, IF97_P_MIN_KPA, F0Integrator, t_sat_c

P_EPS = 1e-6  # "reached" tolerance for pressures the model drives exactly to a target
SIDES = ("load", "unload")


class AutoclavePhase(enum.StrEnum):
    IDLE = "IDLE"
    LEAK_EVACUATE = "LEAK_EVACUATE"
    LEAK_STABILISE = "LEAK_STABILISE"
    LEAK_HOLD = "LEAK_HOLD"
    PULSE_VACUUM = "PULSE_VACUUM"
    PULSE_PRESSURE = "PULSE_PRESSURE"
    HEATUP = "HEATUP"
    PLATEAU = "PLATEAU"
    EXHAUST = "EXHAUST"
    DRYING = "DRYING"
    AIR_BREAK = "AIR_BREAK"
    VENTING = "VENTING"  # safe exhaust after an abort
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"


IDLE_PHASES = {AutoclavePhase.IDLE, AutoclavePhase.COMPLETE, AutoclavePhase.FAILED}
STEAM_PHASES = {AutoclavePhase.PULSE_PRESSURE, AutoclavePhase.HEATUP, AutoclavePhase.PLATEAU}


@dataclass(frozen=True)
class AutoclaveSeries:
    """Downsampled record (measured values) [EN285-2015 §6.5]."""

    t: tuple[float, ...] = ()
    phase: tuple[str, ...] = ()
    chamber_t_c: tuple[float, ...] = ()
    chamber_p_kpa: tuple[float, ...] = ()
    load_t_c: tuple[float, ...] = ()
    f0_min: tuple[float, ...] = ()


@dataclass(frozen=True)
class AutoclaveResult:
    unit_id: str
    program_id: str
    program_kind: str
    load_id: str
    run_id: str
    operator: str
    start_time: float
    end_time: float
    phases: tuple[PhaseRecord, ...]
    f0_min: float
    f0_target_min: float | None
    plateau_min_c: float | None
    plateau_max_c: float | None
    hold_time_in_band_s: float
    equilibration_s: float | None
    max_probe_disagreement_c: float
    bowie_dick_delta_c: float | None
    leak_rate_kpa_min: float | None
    alarms: tuple[AlarmRecord, ...]
    passed: bool
    reasons: tuple[str, ...]
    series: AutoclaveSeries = field(default_factory=AutoclaveSeries)

    @property
    def result(self) -> str:
        return "PASS" if self.passed else "FAIL"

    @property
    def releases_load(self) -> bool:
        """Only a complete, successful *sterilise* cycle releases the clean-side door."""
        return self.passed and self.program_kind == "sterilise"

    def phase_times(self, phase: str) -> PhaseRecord | None:
        for rec in self.phases:
            if rec.phase == phase:
                return rec
        return None

    def to_dict(self) -> dict[str, Any]:
        d = json_safe(asdict(self))
        d["result"] = self.result
        return d


class AutoclaveRun:
    def __init__(self, program: AutoclaveProgram, load_id: str, operator: str, run_id: str, t: float) -> None:
        self.program = program
        self.load_id = load_id
        self.operator = operator
        self.run_id = run_id
        self.start = t
        self.phases: list[list[Any]] = []
        self.alarms: list[AlarmRecord] = []
        self.reasons: list[str] = []
        self.failed = False
        self.pulse = 0
        self.f0 = F0Integrator()
        self.plateau_min = math.inf
        self.plateau_max = -math.inf
        self.hold_in_band = 0.0
        self.equilibration: float | None = None
        self.max_disagreement = 0.0
        self.bd_delta = -math.inf
        self.leak_p0: float | None = None
        self.leak_rate: float | None = None
        self.next_record = t
        self.series: dict[str, list[Any]] = {k: [] for k in AutoclaveSeries.__dataclass_fields__}

    # typed access to the program sections the running phase needs (validated at start)
    @property
    def prevacuum(self) -> Prevacuum:
        assert self.program.prevacuum is not None
        return self.program.prevacuum

    @property
    def plateau(self) -> Plateau:
        assert self.program.plateau is not None
        return self.program.plateau

    @property
    def exhaust(self) -> Exhaust:
        assert self.program.exhaust is not None
        return self.program.exhaust

    @property
    def drying(self) -> Drying:
        assert self.program.drying is not None
        return self.program.drying

    @property
    def leak_test(self) -> LeakTestProgram:
        assert self.program.leak_test is not None
        return self.program.leak_test

    @property
    def heatup_timeout_s(self) -> float:
        assert self.program.heatup_timeout_s is not None
        return self.program.heatup_timeout_s


class AutoclaveCycleSupervisor:
    """Supervision of the running program (mixed into :class:`~.autoclave.AutoclaveModel`)."""

    cfg: AutoclaveConfig
    faults: CheckedFaultHooks
    record_interval_s: float
    last_result: AutoclaveResult | None
    _t: float
    _phase: AutoclavePhase
    _phase_start: float
    _run: AutoclaveRun | None
    _unload_released: bool
    _unload_opened: bool
    tests_passed_at: dict[str, float | None]

    if TYPE_CHECKING:

        def _p(self) -> float: ...

        def _meas(self) -> dict[str, float]: ...

        def _door_sealed(self, side: str) -> bool: ...

    def _supervise(self, run: AutoclaveRun, h: float) -> None:
        now = self._t
        prog = run.program
        m = self._meas()
        if math.isfinite(m["load_t_c"]):
            run.f0.add(now, m["load_t_c"])
        self._record(run, m, now)
        phase = self._phase
        elapsed = now - self._phase_start
        if phase == AutoclavePhase.VENTING:
            if abs(self._p() - ATMOSPHERIC_KPA) <= P_EPS:
                self._finish(now)
            return

        faults: list[tuple[str, str]] = []
        if "e_stop" in self.faults:
            faults.append(("E_STOP", "e-stop pressed"))
        if "power_loss" in self.faults:
            faults.append(("POWER_LOSS", "loss of power"))
        bad = [k for k, v in m.items() if not math.isfinite(v)]
        if bad:
            faults.append(("SENSOR_FAULT", f"sensor fault: no valid reading from {', '.join(bad)}"))
        for side in SIDES:
            if not self._door_sealed(side):
                faults.append(("DOOR_SEAL_LOSS", f"{side} door seal lost (gasket not pressurised)"))
        if phase in STEAM_PHASES and "steam_failure" in self.faults:
            faults.append(("STEAM_SUPPLY_FAILURE", "steam supply failure (supply pressure switch)"))
        tc, tm, p = m["chamber_t_c"], m["chamber_t_mon_c"], m["chamber_p_kpa"]
        tol = self.cfg.probe_disagreement_max_c
        if math.isfinite(tc) and math.isfinite(tm):
            dis = abs(tc - tm)
            run.max_disagreement = max(run.max_disagreement, dis)
            if dis > tol:
                faults.append(
                    (
                        "PROBE_DISAGREEMENT",
                        f"control probe {tc:.2f} C and monitoring probe {tm:.2f} C "
                        f"disagree by {dis:.2f} K (> {tol} K)",
                    )
                )
        if (
            phase in (AutoclavePhase.HEATUP, AutoclavePhase.PLATEAU)
            and math.isfinite(tc)
            and math.isfinite(p)
        ):
            if p > IF97_P_MIN_KPA:
                t_theory = t_sat_c(min(p, 22000.0))
                if abs(t_theory - tc) > tol:
                    faults.append(
                        (
                            "NON_SATURATED",
                            f"pressure {p:.1f} kPa and temperature {tc:.2f} C inconsistent "
                            f"with saturated steam (T_sat(P) = {t_theory:.2f} C): air or "
                            "non-condensable gas present, or a faulty probe",
                        )
                    )
        if phase == AutoclavePhase.PLATEAU:
            plateau = run.plateau
            lo, hi = plateau.setpoint_c, plateau.setpoint_c + plateau.band_c
            for name, val in (("control", tc), ("monitoring", tm)):
                if math.isfinite(val) and val < lo:
                    faults.append(
                        ("BELOW_BAND", f"{name} probe {val:.2f} C below the band [{lo}, {hi}] C on plateau")
                    )
                elif math.isfinite(val) and val > hi:
                    faults.append(
                        ("ABOVE_BAND", f"{name} probe {val:.2f} C above the band [{lo}, {hi}] C on plateau")
                    )
        if faults:
            self._abort(faults, now)
            return

        # --- sequencing
        if phase == AutoclavePhase.PULSE_VACUUM:
            pv = run.prevacuum
            if p <= pv.vacuum_kpa + P_EPS:
                self._enter(AutoclavePhase.PULSE_PRESSURE, now)
            elif elapsed >= pv.pulse_timeout_s:
                self._abort(
                    [
                        (
                            "VACUUM_NOT_REACHED",
                            f"vacuum pulse {run.pulse}: {p:.1f} kPa, set point "
                            f"{pv.vacuum_kpa} kPa not reached within {pv.pulse_timeout_s:.0f} s",
                        )
                    ],
                    now,
                )
        elif phase == AutoclavePhase.PULSE_PRESSURE:
            pv = run.prevacuum
            if p >= pv.pulse_high_kpa - P_EPS:
                if run.pulse < pv.pulses:
                    run.pulse += 1
                    self._enter(AutoclavePhase.PULSE_VACUUM, now)
                else:
                    self._enter(AutoclavePhase.HEATUP, now)
            elif elapsed >= pv.pulse_timeout_s:
                self._abort(
                    [
                        (
                            "PRESSURE_PULSE_NOT_REACHED",
                            f"steam pulse {run.pulse}: {p:.1f} kPa, set point "
                            f"{pv.pulse_high_kpa} kPa not reached within {pv.pulse_timeout_s:.0f} s",
                        )
                    ],
                    now,
                )
        elif phase == AutoclavePhase.HEATUP:
            if tc >= run.plateau.setpoint_c:
                self._enter(AutoclavePhase.PLATEAU, now)
            elif elapsed >= run.heatup_timeout_s:
                self._abort(
                    [
                        (
                            "HEATUP_TIMEOUT",
                            f"plateau {run.plateau.setpoint_c} C not reached within "
                            f"{run.heatup_timeout_s:.0f} s",
                        )
                    ],
                    now,
                )
        elif phase == AutoclavePhase.PLATEAU:
            plateau = run.plateau
            run.plateau_min = min(run.plateau_min, tc)
            run.plateau_max = max(run.plateau_max, tc)
            run.hold_in_band += h
            if run.equilibration is None and m["load_t_c"] >= plateau.setpoint_c:
                run.equilibration = elapsed
            if prog.kind == "bowie_dick" and elapsed >= plateau.hold_s / 2.0:
                run.bd_delta = max(run.bd_delta, tc - m["load_t_c"])
            if elapsed >= plateau.hold_s - 1e-9:
                self._enter(AutoclavePhase.EXHAUST, now)
        elif phase == AutoclavePhase.EXHAUST:
            ex = run.exhaust
            if p <= ex.target_kpa + P_EPS:
                self._enter(AutoclavePhase.DRYING, now)
            elif elapsed >= ex.timeout_s:
                self._abort(
                    [
                        (
                            "EXHAUST_TIMEOUT",
                            f"exhaust to {ex.target_kpa} kPa not completed within {ex.timeout_s:.0f} s",
                        )
                    ],
                    now,
                )
        elif phase == AutoclavePhase.DRYING:
            if elapsed >= run.drying.time_s - 1e-9:
                self._enter(AutoclavePhase.AIR_BREAK, now)
        elif phase == AutoclavePhase.AIR_BREAK:
            target = prog.exhaust.target_kpa if prog.exhaust is not None else ATMOSPHERIC_KPA
            if p >= target - P_EPS:
                self._finish(now)
        elif phase == AutoclavePhase.LEAK_EVACUATE:
            lt = run.leak_test
            if p <= lt.vacuum_kpa + P_EPS:
                self._enter(AutoclavePhase.LEAK_STABILISE, now)
            elif elapsed >= lt.evacuate_timeout_s:
                self._abort(
                    [
                        (
                            "VACUUM_NOT_REACHED",
                            f"leak test: {p:.1f} kPa, {lt.vacuum_kpa} kPa not reached "
                            f"within {lt.evacuate_timeout_s:.0f} s",
                        )
                    ],
                    now,
                )
        elif phase == AutoclavePhase.LEAK_STABILISE:
            if elapsed >= run.leak_test.stabilise_s - 1e-9:
                run.leak_p0 = p
                self._enter(AutoclavePhase.LEAK_HOLD, now)
        elif phase == AutoclavePhase.LEAK_HOLD:
            lt = run.leak_test
            if elapsed >= lt.hold_s - 1e-9:
                run.leak_rate = (p - (run.leak_p0 or p)) / (elapsed / 60.0)
                if run.leak_rate > lt.max_rate_kpa_min:
                    msg = f"leak rate {run.leak_rate:.3f} kPa/min exceeds {lt.max_rate_kpa_min} kPa/min"
                    run.alarms.append(AlarmRecord(now, "LEAK_RATE_HIGH", msg))
                    run.reasons.append(msg)
                    run.failed = True
                self._enter(AutoclavePhase.AIR_BREAK, now)

    def _record(self, run: AutoclaveRun, m: dict[str, float], now: float) -> None:
        if now + 1e-9 < run.next_record:
            return
        run.next_record += self.record_interval_s * max(
            1, math.floor((now - run.next_record) / self.record_interval_s) + 1
        )
        s = run.series
        s["t"].append(now)
        s["phase"].append(self._phase.value)
        s["chamber_t_c"].append(m["chamber_t_c"])
        s["chamber_p_kpa"].append(m["chamber_p_kpa"])
        s["load_t_c"].append(m["load_t_c"])
        s["f0_min"].append(run.f0.f0_min)

    def _enter(self, phase: AutoclavePhase, now: float) -> None:
        run = self._run
        if run is not None:
            if run.phases and run.phases[-1][2] is None:
                run.phases[-1][2] = now
            if phase not in (AutoclavePhase.COMPLETE, AutoclavePhase.FAILED):
                name = phase.value
                if phase in (AutoclavePhase.PULSE_VACUUM, AutoclavePhase.PULSE_PRESSURE):
                    name = f"{name}_{run.pulse}"
                run.phases.append([name, now, None])
        self._phase = phase
        self._phase_start = now

    def _abort(self, faults: list[tuple[str, str]], now: float) -> None:
        run = self._run
        assert run is not None
        for code, text in faults:
            run.alarms.append(AlarmRecord(now, code, text))
            run.reasons.append(text)
        run.failed = True
        self._enter(AutoclavePhase.VENTING, now)

    def _finish(self, now: float) -> None:
        run = self._run
        assert run is not None
        prog = run.program
        if not run.failed:
            if prog.kind in ("sterilise", "bowie_dick"):
                target = prog.f0_target_min or 0.0
                if run.f0.f0_min < target:
                    msg = f"F0 {run.f0.f0_min:.2f} min below target {target} min"
                    run.alarms.append(AlarmRecord(now, "F0_LOW", msg))
                    run.reasons.append(msg)
                    run.failed = True
                if run.hold_in_band + 1e-6 < run.plateau.hold_s:
                    msg = f"hold time in band {run.hold_in_band:.0f} s below {run.plateau.hold_s:.0f} s"
                    run.reasons.append(msg)
                    run.failed = True
                eq_max = prog.equilibration_max_s if prog.kind == "sterilise" else None
                if eq_max is not None and (run.equilibration is None or run.equilibration > eq_max + 1e-9):
                    seen = "never" if run.equilibration is None else f"after {run.equilibration:.0f} s"
                    msg = (f"equilibration: load probe reached {run.plateau.setpoint_c} C {seen}, "
                           f"limit {eq_max:.0f} s [EN285-2015]")
                    run.alarms.append(AlarmRecord(now, "EQUILIBRATION_TOO_LONG", msg))
                    run.reasons.append(msg)
                    run.failed = True
            if prog.kind == "bowie_dick":
                limit = prog.bowie_dick_max_delta_c or 0.0
                if run.bd_delta >= limit:
                    msg = (
                        f"Bowie-Dick: pack centre {run.bd_delta:.2f} K below chamber (limit {limit} K): "
                        "air removal insufficient or air leak"
                    )
                    run.alarms.append(AlarmRecord(now, "BOWIE_DICK_FAIL", msg))
                    run.reasons.append(msg)
                    run.failed = True
        passed = not run.failed
        if passed and prog.kind in ("bowie_dick", "leak_test"):
            self.tests_passed_at[prog.kind] = now
        self._enter(AutoclavePhase.COMPLETE if passed else AutoclavePhase.FAILED, now)
        plateau_seen = math.isfinite(run.plateau_min)
        self.last_result = AutoclaveResult(
            unit_id=self.cfg.id,
            program_id=prog.id,
            program_kind=prog.kind,
            load_id=run.load_id,
            run_id=run.run_id,
            operator=run.operator,
            start_time=run.start,
            end_time=now,
            phases=tuple(PhaseRecord(p, s, e) for p, s, e in run.phases),
            f0_min=run.f0.f0_min,
            f0_target_min=prog.f0_target_min,
            plateau_min_c=run.plateau_min if plateau_seen else None,
            plateau_max_c=run.plateau_max if plateau_seen else None,
            hold_time_in_band_s=run.hold_in_band,
            equilibration_s=run.equilibration,
            max_probe_disagreement_c=run.max_disagreement,
            bowie_dick_delta_c=run.bd_delta
            if prog.kind == "bowie_dick" and math.isfinite(run.bd_delta)
            else None,
            leak_rate_kpa_min=run.leak_rate,
            alarms=tuple(run.alarms),
            passed=passed,
            reasons=tuple(run.reasons),
            series=AutoclaveSeries(**{k: tuple(v) for k, v in run.series.items()}),
        )
        self._unload_released = self.last_result.releases_load
        self._unload_opened = False
