"""The VHP unit's cycle: phases, the cycle record, and the supervision of a running cycle.

:class:`VHPCycleSupervisor` holds the cycle logic of :class:`~.vhp.VHPUnitModel` (which
inherits it): the abort rules checked in every active phase, the phase sequence
PRECHECK -> DEHUMIDIFY -> CONDITION -> DECONTAMINATE -> AERATE (-> HOLD_CLOSED), the
downsampled record and the per-cycle result.

Aeration ends on a *measured* residual read by the low-range residual sensor
(``h2o2_residual_ppm``, 0..``residual_sensor_range_ppm``; the 0-2000 ppm process sensors
cannot decide 1 ppm) [QB-PB] [PATALERT], and only after a **rebound hold**: once the residual
is at or below ``aerate.release_ppm`` the loop, dryer and exhaust stop, as they will after
release, and the H2O2 still sorbed on gloves, filters and polymers desorbs into the air; the
residual must stay at or below the limit for ``aerate.hold_s``. A rebound above it restarts the
catalytic aeration (counted in the record). Only a PASS of a cycle ``validated_for_release``
releases the isolator (DECONTAMINATED_RELEASED); an engineering cycle's PASS leaves it
NOT_DECONTAMINATED (Annex 1 §4.25 [ANNEX1-2022]: a validated process). The physics and the commands stay in
:mod:`.vhp`; the model's state is declared here only for the type checker.
"""

from __future__ import annotations

import enum
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..config.devices import VHPCycleRecipe, VHPUnitConfig
from .common import DeconStatus, SensorChannel
from .cycle import AlarmRecord, CheckedFaultHooks, PhaseRecord, json_safe
from .vhp_physics import relative_saturation_pct

if TYPE_CHECKING:
    from .vhp import Enclosure, RobotSafe


class VHPPhase(enum.StrEnum):
    IDLE = "IDLE"
    PRECHECK = "PRECHECK"
    DEHUMIDIFY = "DEHUMIDIFY"
    CONDITION = "CONDITION"
    DECONTAMINATE = "DECONTAMINATE"
    AERATE = "AERATE"
    HOLD_CLOSED = "HOLD_CLOSED"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"


ACTIVE_PHASES = {
    VHPPhase.PRECHECK,
    VHPPhase.DEHUMIDIFY,
    VHPPhase.CONDITION,
    VHPPhase.DECONTAMINATE,
    VHPPhase.AERATE,
    VHPPhase.HOLD_CLOSED,
}
GASSING_PHASES = {VHPPhase.CONDITION, VHPPhase.DECONTAMINATE}


@dataclass(frozen=True)
class VHPSeries:
    """Downsampled cycle record (measured values, as the unit reports them)."""

    t: tuple[float, ...] = ()
    phase: tuple[str, ...] = ()
    h2o2_ppm: tuple[float, ...] = ()
    h2o2_ppm_b: tuple[float, ...] = ()
    h2o2_residual_ppm: tuple[float, ...] = ()
    rh_pct: tuple[float, ...] = ()
    rs_pct: tuple[float, ...] = ()
    temp_c: tuple[float, ...] = ()
    dp_pa: tuple[float, ...] = ()


@dataclass(frozen=True)
class VHPCycleResult:
    """Per-cycle record (Annex 1 §4.25 [ANNEX1-2022] [M]). ``passed`` is True only for a
    complete, in-limit cycle."""

    unit_id: str
    recipe_id: str
    recipe_version: int
    run_id: str
    operator: str
    start_time: float
    end_time: float
    phases: tuple[PhaseRecord, ...]
    injected_g: float
    dwell_time_s: float
    dwell_min_ppm: float | None
    dwell_max_ppm: float | None
    dwell_mean_ppm: float | None
    aeration_end_ppm: float | None
    max_rs_pct: float | None
    alarms: tuple[AlarmRecord, ...]
    passed: bool
    reasons: tuple[str, ...]
    series: VHPSeries = field(default_factory=VHPSeries)
    validated_for_release: bool = True
    """the recipe is validated for product release (else an engineering cycle)"""
    rebounds: int = 0
    """rebound holds that failed (residual back above the release limit with the loop stopped)"""
    aeration_s: float | None = None
    """from the start of aeration to the end of the passed rebound hold (s)"""

    @property
    def result(self) -> str:
        return "PASS" if self.passed else "FAIL"

    @property
    def releases_isolator(self) -> bool:
        """Only a PASS of a validated cycle releases the isolator for product."""
        return self.passed and self.validated_for_release

    def phase_times(self, phase: str) -> PhaseRecord | None:
        for rec in self.phases:
            if rec.phase == phase:
                return rec
        return None

    def to_dict(self) -> dict[str, Any]:
        d = json_safe(asdict(self))
        d["result"] = self.result
        return d


class VHPRun:
    """Mutable book-keeping of the running cycle."""

    def __init__(self, recipe: VHPCycleRecipe, operator: str, run_id: str, t: float) -> None:
        self.recipe = recipe
        self.operator = operator
        self.run_id = run_id
        self.start = t
        self.phases: list[list[Any]] = []
        self.alarms: list[AlarmRecord] = []
        self.reasons: list[str] = []
        self.failed = False
        self.injected_g = 0.0
        self.dwell_time = 0.0
        self.dwell_min = math.inf
        self.dwell_max = -math.inf
        self.dwell_int = 0.0
        self.low_since: float | None = None
        self.max_rs = -math.inf
        self.rebounds = 0
        self.rebound_at = -math.inf
        self.next_record = t
        self.series: dict[str, list[Any]] = {k: [] for k in VHPSeries.__dataclass_fields__}


class VHPCycleSupervisor:
    """Supervision of the running cycle (mixed into :class:`~.vhp.VHPUnitModel`)."""

    cfg: VHPUnitConfig
    enclosure: Enclosure
    faults: CheckedFaultHooks
    robot_safe: RobotSafe | None
    record_interval_s: float
    ppm_disagreement_max_ppm: float
    last_result: VHPCycleResult | None
    _ch: dict[str, SensorChannel]
    _t: float
    _phase: VHPPhase
    _phase_start: float
    _run: VHPRun | None
    _reservoir_g: float
    _hold_closed: bool
    _g_cmd: float
    _g_act: float
    _loop_on: bool
    _dryer_on: bool
    _rebound_since: float | None

    # ------------------------------------------------------------------ supervision
    def _measure(self, now: float) -> dict[str, float]:
        air = self.enclosure.air

        def ppm(name: str, rng: float) -> float:
            val = self._ch[name].read(air.h2o2_ppm, now, self.faults)
            return min(max(val, 0.0), rng) if math.isfinite(val) else val

        rs_true = relative_saturation_pct(air.temp_c, air.rh_pct, air.h2o2_ppm)
        return {
            "h2o2_ppm": ppm("h2o2_ppm", self.cfg.sensor_range_ppm),
            "h2o2_ppm_b": ppm("h2o2_ppm_b", self.cfg.sensor_range_ppm),
            "h2o2_residual_ppm": ppm("h2o2_residual_ppm", self.cfg.residual_sensor_range_ppm),
            "rh_pct": self._ch["rh_pct"].read(air.rh_pct, now, self.faults),
            "rs_pct": self._ch["rs_pct"].read(rs_true, now, self.faults),
            "temp_c": self._ch["temp_c"].read(air.temp_c, now, self.faults),
            "dp_pa": self._ch["dp_pa"].read(float(self.enclosure.dp_pa()), now, self.faults),
        }

    def _safety_faults(self, m: dict[str, float], recipe: VHPCycleRecipe) -> list[tuple[str, str]]:
        """Abort conditions checked in every active phase (engineering, from [QB-ROOM] [VAIS]
        [BSF]), except ΔP."""
        out: list[tuple[str, str]] = []
        if "e_stop" in self.faults:
            out.append(("E_STOP", "e-stop pressed"))
        if "power_loss" in self.faults:
            out.append(("POWER_LOSS", "loss of power"))
        bad = [k for k, val in m.items() if not math.isfinite(val)]
        if bad:
            out.append(("SENSOR_FAULT", f"sensor fault: no valid reading from {', '.join(bad)}"))
        a, b = m["h2o2_ppm"], m["h2o2_ppm_b"]
        if math.isfinite(a) and math.isfinite(b) and abs(a - b) > self.ppm_disagreement_max_ppm:
            out.append(
                (
                    "SENSOR_DISAGREEMENT",
                    f"redundant H2O2 sensors disagree: {a:.1f} vs {b:.1f} ppm "
                    f"(> {self.ppm_disagreement_max_ppm:.1f} ppm)",
                )
            )
        breaches = list(self.enclosure.breaches())
        if breaches:
            out.append(("ENCLOSURE_BREACH", "enclosure breach: " + "; ".join(breaches)))
        if self.robot_safe is not None:
            try:
                ok, why = self.robot_safe()
            except Exception as exc:  # an unreadable robot state is not a safe robot state
                ok, why = False, f"robot state unavailable ({exc})"
            if not ok:
                out.append(("ROBOT_NOT_SAFE", f"robot not parked/safe: {why}"))
        lim = recipe.limits
        t = m["temp_c"]
        if math.isfinite(t) and not lim.temp_min_c <= t <= lim.temp_max_c:
            out.append(
                ("TEMP_OUT_OF_RANGE", f"temperature {t:.1f} C outside [{lim.temp_min_c}, {lim.temp_max_c}] C")
            )
        return out

    def _dp_fault(self, m: dict[str, float], recipe: VHPCycleRecipe) -> tuple[str, str] | None:
        dp, lim = m["dp_pa"], recipe.limits
        if math.isfinite(dp) and not lim.dp_min_pa <= dp <= lim.dp_max_pa:
            return (
                "DP_OUT_OF_RANGE",
                f"enclosure dP {dp:.1f} Pa outside [{lim.dp_min_pa}, {lim.dp_max_pa}] Pa",
            )
        return None

    def _supervise(self, run: VHPRun, h: float) -> None:
        recipe = run.recipe
        now = self._t
        m = self._measure(now)
        self._record(run, m, now)
        elapsed = now - self._phase_start
        phase = self._phase

        if not run.failed:
            faults = self._safety_faults(m, recipe)
            dp = self._dp_fault(m, recipe)
            if phase == VHPPhase.PRECHECK:
                if recipe.precheck.require_leak_test and not self.enclosure.leak_test_passed():
                    faults.append(("LEAK_TEST_NOT_PASSED", "enclosure pressure-hold (leak) test not passed"))
                need = recipe.precheck.min_reservoir_g
                if self._reservoir_g < need:
                    faults.append(
                        ("RESERVOIR_LOW", f"H2O2 reservoir {self._reservoir_g:.0f} g < {need:.0f} g")
                    )
                if faults:
                    self._abort_many(faults, now)
                    return
                if dp is not None:  # dP may still be settling: wait up to the precheck timeout
                    if elapsed >= recipe.precheck.timeout_s:
                        self._abort(*dp, now)
                    return
                self._enter(VHPPhase.DEHUMIDIFY, now)
                return
            if dp is not None:
                faults.append(dp)
            if phase in GASSING_PHASES:
                rs = m["rs_pct"]
                if math.isfinite(rs):
                    run.max_rs = max(run.max_rs, rs)
                    if rs >= recipe.decontaminate.max_rs_pct:
                        faults.append(
                            (
                                "RS_LIMIT",
                                f"relative saturation {rs:.1f} % >= "
                                f"{recipe.decontaminate.max_rs_pct} % (condensation risk)",
                            )
                        )
            if faults:
                self._abort_many(faults, now)
                return

        ppm = m["h2o2_ppm"]
        if phase == VHPPhase.DEHUMIDIFY:
            if m["rh_pct"] <= recipe.dehumidify.target_rh_pct:
                self._enter(VHPPhase.CONDITION, now)
            elif elapsed >= recipe.dehumidify.timeout_s:
                self._abort(
                    "DEHUMIDIFY_TIMEOUT",
                    f"RH {m['rh_pct']:.1f} % did not reach "
                    f"{recipe.dehumidify.target_rh_pct} % within {recipe.dehumidify.timeout_s:.0f} s",
                    now,
                )
        elif phase == VHPPhase.CONDITION:
            if ppm >= recipe.condition.target_ppm:
                self._enter(VHPPhase.DECONTAMINATE, now)
            elif elapsed >= recipe.condition.timeout_s:
                self._abort(
                    "CONDITION_TIMEOUT",
                    f"concentration {ppm:.0f} ppm did not reach "
                    f"{recipe.condition.target_ppm} ppm within {recipe.condition.timeout_s:.0f} s",
                    now,
                )
        elif phase == VHPPhase.DECONTAMINATE:
            dc = recipe.decontaminate
            run.dwell_time += h
            run.dwell_min = min(run.dwell_min, ppm)
            run.dwell_max = max(run.dwell_max, ppm)
            run.dwell_int += ppm * h
            if ppm < dc.min_ppm:
                if run.low_since is None:
                    run.low_since = now - h
                if now - run.low_since > dc.low_tolerance_s:
                    self._abort(
                        "LOW_CONCENTRATION",
                        f"concentration {ppm:.0f} ppm below minimum {dc.min_ppm} ppm "
                        f"for more than {dc.low_tolerance_s:.0f} s",
                        now,
                    )
                    return
            else:
                run.low_since = None
            if elapsed >= dc.dwell_s:
                self._enter(VHPPhase.AERATE, now)
                self.enclosure.set_decon_status(DeconStatus.AERATING, run.run_id)
        elif phase in (VHPPhase.AERATE, VHPPhase.HOLD_CLOSED):
            residual = m["h2o2_residual_ppm"]  # NaN (sensor fault) is never "below the limit"
            below = residual <= recipe.aerate.release_ppm
            if self._rebound_since is None:
                if below and now - run.rebound_at >= recipe.aerate.reaerate_s - 1e-9:
                    self._rebound_since = now  # loop, dryer and exhaust stop from the next sub-step
            elif not below:
                self._rebound_since = None  # rebound: back to catalytic aeration for reaerate_s
                run.rebounds += 1
                run.rebound_at = now
            if self._rebound_since is not None and now - self._rebound_since >= recipe.aerate.hold_s - 1e-9:
                self._finish(residual, now)
            elif phase == VHPPhase.AERATE and elapsed >= recipe.aerate.timeout_s:
                self._hold_closed = True
                msg = (
                    f"aeration endpoint {recipe.aerate.release_ppm} ppm not reached within "
                    f"{recipe.aerate.timeout_s:.0f} s: hold closed"
                )
                run.alarms.append(AlarmRecord(now, "AERATION_TIMEOUT", msg))
                run.reasons.append(msg)
                run.failed = True
                self._enter(VHPPhase.HOLD_CLOSED, now)
                self.enclosure.set_decon_status(DeconStatus.NOT_DECONTAMINATED, run.run_id)

    def _record(self, run: VHPRun, m: dict[str, float], now: float) -> None:
        if now + 1e-9 < run.next_record:
            return
        run.next_record += self.record_interval_s * max(
            1, math.floor((now - run.next_record) / self.record_interval_s) + 1
        )
        s = run.series
        s["t"].append(now)
        s["phase"].append(self._phase.value)
        for k in ("h2o2_ppm", "h2o2_ppm_b", "h2o2_residual_ppm", "rh_pct", "rs_pct", "temp_c", "dp_pa"):
            s[k].append(m[k])

    # ------------------------------------------------------------------ transitions
    def _enter(self, phase: VHPPhase, now: float) -> None:
        run = self._run
        if run is not None:
            if run.phases and run.phases[-1][2] is None:
                run.phases[-1][2] = now
            if phase not in (VHPPhase.COMPLETE, VHPPhase.FAILED):
                run.phases.append([phase.value, now, None])
        self._phase = phase
        self._phase_start = now

    def _abort_many(self, faults: list[tuple[str, str]], now: float) -> None:
        run = self._run
        assert run is not None
        for code, text in faults[:-1]:
            run.alarms.append(AlarmRecord(now, code, text))
            run.reasons.append(text)
        self._abort(*faults[-1], now)

    def _abort(self, code: str, text: str, now: float) -> None:
        run = self._run
        assert run is not None
        run.alarms.append(AlarmRecord(now, code, text))
        run.reasons.append(text)
        run.failed = True
        self._g_cmd = self._g_act = 0.0
        self.enclosure.set_decon_status(DeconStatus.NOT_DECONTAMINATED, run.run_id)
        if self._phase != VHPPhase.AERATE:  # aeration always runs after an abort
            self._enter(VHPPhase.AERATE, now)  # (already aerating: keep its timer)

    def _finish(self, end_ppm: float, now: float) -> None:
        run = self._run
        assert run is not None
        passed = not run.failed
        validated = run.recipe.validated_for_release
        if passed and not validated:
            run.reasons.append(f"cycle {run.recipe.id} v{run.recipe.version} is not validated for product "
                               "release: the isolator is not released")
        aer = next((p for p in run.phases if p[0] == VHPPhase.AERATE.value), None)
        self._enter(VHPPhase.COMPLETE if passed else VHPPhase.FAILED, now)
        self.enclosure.set_decon_status(
            DeconStatus.DECONTAMINATED_RELEASED if passed and validated else DeconStatus.NOT_DECONTAMINATED,
            run.run_id,
        )
        self._g_cmd = self._g_act = 0.0
        self._loop_on = self._dryer_on = False
        self._rebound_since = None
        dwell = run.dwell_time > 0
        self.last_result = VHPCycleResult(
            unit_id=self.cfg.id,
            recipe_id=run.recipe.id,
            recipe_version=run.recipe.version,
            run_id=run.run_id,
            operator=run.operator,
            start_time=run.start,
            end_time=now,
            phases=tuple(PhaseRecord(p, s, e) for p, s, e in run.phases),
            injected_g=run.injected_g,
            dwell_time_s=run.dwell_time,
            dwell_min_ppm=run.dwell_min if dwell else None,
            dwell_max_ppm=run.dwell_max if dwell else None,
            dwell_mean_ppm=run.dwell_int / run.dwell_time if dwell else None,
            aeration_end_ppm=end_ppm,
            max_rs_pct=run.max_rs if math.isfinite(run.max_rs) else None,
            alarms=tuple(run.alarms),
            passed=passed,
            reasons=tuple(run.reasons),
            series=VHPSeries(**{k: tuple(v) for k, v in run.series.items()}),
            validated_for_release=validated,
            rebounds=run.rebounds,
            aeration_s=now - aer[1] if aer is not None else None,
        )
