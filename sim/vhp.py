"""VHP (vaporised hydrogen peroxide) bio-decontamination unit: deterministic process model.

The unit gasses an enclosure (the isolator) through the cycle of domain spec §2.1::

    IDLE -> PRECHECK -> DEHUMIDIFY -> CONDITION -> DECONTAMINATE -> AERATE -> COMPLETE
                 \\ any abort rule (spec §2.2) -> AERATE (result FAIL) -> FAILED
    AERATE timeout -> HOLD_CLOSED (keeps aerating, doors stay locked) -> FAILED

Physics (spec §2.3, "two-pool model"), C = air concentration (g/m^3), S = sorbed mass (g)::

    V dC/dt = G - (eta*Q_c*[loop] + Q_e + Q_leak) C - k_a A C + k_d S
      dS/dt = k_a A C - (k_d + k_s) S

integrated *exactly* over each sub-step (closed-form 2x2 matrix exponential with the
injection G held constant), so results do not depend on the caller's dt.

Design choices (documented, not physics):

* Catalytic loop: runs in DEHUMIDIFY and AERATE only (Bioquell Clarus C style: one loop
  with catalyst and dryer for conditioning and aeration, one without for ramp and dwell,
  spec §2.1 [FC04]). During CONDITION and DECONTAMINATE the circulation loop has no
  catalyst, so it adds no loss term. The exhaust Q_e runs through the whole cycle (the
  bleed that holds the enclosure over-pressure); its make-up air comes through the unit's
  dryer, so the exhaust also removes water vapour.
* Water vapour: the injected solution carries (1 - w)/w g of water per g of H2O2; that
  water raises RH. The dryer lowers RH at ``dryer_rate_pct_min`` towards the recipe's
  target while it runs (DEHUMIDIFY, AERATE). Water sorption on surfaces and the water
  made by decomposition are neglected (both small against the injected water).
* Relative saturation: ideal-mixture (Raoult) dew-point criterion
  RS = p_w/p_ws(T) + p_h/p_hs(T); condensation of an ideal binary mixture starts when
  the sum reaches 1 (dew-point condition sum(y_i P / P_i^sat) = 1, e.g. Smith, Van Ness &
  Abbott, *Introduction to Chemical Engineering Thermodynamics*, ch. 10). This is what
  Vaisala's RS expresses for the H2O2/H2O mixture (spec §2.2 [VAIS]); the real mixture is
  non-ideal and condenses somewhat earlier, hence the recipe's margin (RS < 90 %).
* Dwell controller: proportional on the measured ppm, full injection at ``min_ppm`` and
  none at the set point (proportional band = set point - min), capped at
  ``max_injection_g_min``; the control decision is taken every sub-step.
* Redundant ppm sensors ``h2o2_ppm`` and ``h2o2_ppm_b``: disagreement beyond
  ``ppm_disagreement_max_ppm`` (default 5 % of the sensor range: two +-2 % FS sensors
  plus margin) is a sensor fault.
* The aeration endpoint is the *measured* concentration: every finite ppm sensor must
  read <= release_ppm (spec §2.1 phase 4); it is never a timer.
* E-stop / power loss stop injection, loops and dryer; after the abort the unit aerates
  as soon as the e-stop / power fault is cleared (H2O2 is never left in the enclosure).

Time: ``step(dt)`` covers the interval that ends at ``clock.now()`` when the caller
advances the clock first (``clock.advance(dt); model.step(dt)``) and also works if the
caller steps first; event times are model time.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

from ..config.devices import VHPCycleRecipe, VHPUnitConfig
from ..devices.codes import RefusalCode
from .clock import Clock
from .common import (
    Atmosphere,
    CommandRefused,
    DeconStatus,
    FaultHooks,
    InvalidCommand,
    SensorChannel,
    SubSteppedModel,
    require_finite,
)
from .steam import ATMOSPHERIC_KPA, KELVIN_OFFSET, p_sat_kpa

# --- physical constants -------------------------------------------------------------------
PPM_TO_MG_M3 = 1.39  # 1 ppm H2O2 = 1.39 mg/m^3 (25 C, 1 atm); 1 mg/L ~ 720 ppm [V] [EPA-SUM] (spec §2.3)
M_H2O_G_MOL = 18.015  # molar mass of water (IUPAC standard atomic weights)
R_J_MOL_K = 8.314462618  # molar gas constant (CODATA 2018, exact)
MMHG_KPA = ATMOSPHERIC_KPA / 760.0  # 1 mmHg = 101.325/760 kPa (definition)
# Vapour pressure of pure H2O2: log10(p/mmHg) = A - B/T - C log10(T) + D T, T in K.
# Schumb, Satterfield & Wentworth, "Hydrogen Peroxide", ACS Monograph 128 (1955), as used
# by Manatt & Manatt, Chem. Eur. J. 10 (2004) 6540 [M]; it reproduces the extrapolated
# normal boiling point 150.2 C [BQ] (checked in the tests).
_H2O2_VP = (44.5760, 4025.3, 12.996, 0.0046055)

# --- numerical choices (not physics) ----------------------------------------------------
SUBSTEP_MAX_S = 0.5  # internal sub-step: control decisions and checks happen at this grid
DEFAULT_RECORD_INTERVAL_S = 10.0  # downsampled record: one point per 10 sim s (spec §1.4 record)
DEFAULT_PPM_DISAGREEMENT_FRAC_FS = 0.05  # redundant ppm sensors: 2 x (+-2 % FS) + margin

KNOWN_FAULTS = {"injector_failure", "catalyst_failure", "leak", "dryer_failure", "e_stop", "power_loss"}
SENSOR_NAMES = ("h2o2_ppm", "h2o2_ppm_b", "rh_pct", "rs_pct", "temp_c", "dp_pa")


def h2o2_p_sat_kpa(temp_c: float) -> float:
    """Saturation vapour pressure of pure H2O2 (kPa) at ``temp_c`` ([M], see ``_H2O2_VP``)."""
    t_k = float(temp_c) + KELVIN_OFFSET
    a, b, c, d = _H2O2_VP
    return 10.0 ** (a - b / t_k - c * math.log10(t_k) + d * t_k) * MMHG_KPA


def relative_saturation_pct(temp_c: float, rh_pct: float, h2o2_ppm: float) -> float:
    """Relative saturation (%) of the H2O/H2O2 vapour mixture, ideal-mixture approximation.

    RS = 100 * (p_w / p_ws(T) + p_h / p_hs(T)), with p_w / p_ws(T) = RH / 100 and
    p_h = ppm * 1e-6 * p_atm (see the module docstring for the basis).
    """
    p_h = h2o2_ppm * 1e-6 * ATMOSPHERIC_KPA
    return rh_pct + 100.0 * p_h / h2o2_p_sat_kpa(temp_c)


def water_sat_density_g_m3(temp_c: float) -> float:
    """Saturated water-vapour density (g/m^3), ideal gas: rho = p_ws M / (R T)."""
    t_k = temp_c + KELVIN_OFFSET
    return p_sat_kpa(temp_c) * 1000.0 * M_H2O_G_MOL / (R_J_MOL_K * t_k)


def ppm_to_g_m3(ppm: float) -> float:
    return ppm * PPM_TO_MG_M3 / 1000.0


def g_m3_to_ppm(c_g_m3: float) -> float:
    return c_g_m3 * 1000.0 / PPM_TO_MG_M3


class _TwoPoolStep:
    """Exact step of x' = A x + [g, 0] for the two-pool model, x = (C, S).

    A = [[-a, kd/V], [kaA, -(kd+ks)]] has real, distinct eigenvalues whenever k_a A and
    k_d are positive (off-diagonal product > 0). e^{Ah} and its integral are written with
    the two eigenvalues (Sylvester's formula); coefficients are cached per (A, h).
    """

    def __init__(self) -> None:
        self._key: tuple[float, ...] | None = None
        self._coef: tuple[float, ...] = ()

    def __call__(
        self, c: float, s: float, g_per_v: float, a: float, kd_v: float, ka_a: float, kk: float, h: float
    ) -> tuple[float, float]:
        key = (a, kd_v, ka_a, kk, h)
        if key != self._key:
            self._key = key
            self._coef = self._coefficients(a, kd_v, ka_a, kk, h)
        e00, e01, e10, e11, i0, i1 = self._coef
        return (e00 * c + e01 * s + i0 * g_per_v, e10 * c + e11 * s + i1 * g_per_v)

    @staticmethod
    def _coefficients(a: float, kd_v: float, ka_a: float, kk: float, h: float) -> tuple[float, ...]:
        a00, a01, a10, a11 = -a, kd_v, ka_a, -kk
        tr = a00 + a11
        disc = (a00 - a11) ** 2 + 4.0 * a01 * a10
        sq = math.sqrt(disc)

        def integral(lam: float) -> float:  # int_0^h e^{lam s} ds
            z = lam * h
            return h * (math.expm1(z) / z if abs(z) > 1e-12 else 1.0)

        if sq < 1e-15 * max(1.0, abs(tr)):
            # repeated eigenvalue (not reachable with positive k_a, k_d; kept for safety)
            lam = tr / 2.0
            el = math.exp(lam * h)
            e00, e01, e10, e11 = (
                el * (1 + (a00 - lam) * h),
                el * a01 * h,
                el * a10 * h,
                el * (1 + (a11 - lam) * h),
            )
            i_l = integral(lam)
            # int s e^{lam s} ds over [0, h]
            j = (h * el - i_l) / lam if abs(lam) > 1e-15 else h * h / 2.0
            return (e00, e01, e10, e11, i_l + (a00 - lam) * j, a10 * j)
        l1, l2 = (tr + sq) / 2.0, (tr - sq) / 2.0
        x1, x2 = math.exp(l1 * h), math.exp(l2 * h)
        d = l1 - l2
        c0, c1 = (l1 * x2 - l2 * x1) / d, (x1 - x2) / d
        j1, j2 = integral(l1), integral(l2)
        k0, k1 = (l1 * j2 - l2 * j1) / d, (j1 - j2) / d
        return (c0 + c1 * a00, c1 * a01, c1 * a10, c0 + c1 * a11, k0 + k1 * a00, k1 * a10)


# --------------------------------------------------------------------------- interfaces
class Enclosure(Protocol):
    """What the VHP unit needs from the enclosure it gasses (the isolator model)."""

    air: Atmosphere
    volume_m3: float
    internal_area_m2: float

    def dp_pa(self) -> float:
        """True enclosure pressure differential to the room (Pa)."""
        ...

    def breaches(self) -> list[str]:
        """Reasons the enclosure is not sealed (open door/port, glove in use...); empty if sealed."""
        ...

    def leak_test_passed(self) -> bool:
        """Pressure-hold test passed recently."""
        ...

    def set_decon_status(self, status: DeconStatus, run_id: str | None) -> None: ...


RobotSafe = Callable[[], tuple[bool, str]]


class CheckedFaultHooks(FaultHooks):
    """:class:`FaultHooks` that rejects bad fault parameters (NaN, out of range) with
    :class:`InvalidCommand` before anything changes, so a fault can never push NaN into
    the physics.

    Args:
        known: device fault names.
        numeric: {fault: {param: (min, max)}} for numeric parameters.
        choices: {fault: {param: allowed values}} for string parameters.
    """

    _SENSOR_NUMERIC = ("offset", "rate", "value")

    def __init__(
        self,
        known: set[str],
        numeric: dict[str, dict[str, tuple[float, float]]] | None = None,
        choices: dict[str, dict[str, tuple[str, ...]]] | None = None,
    ) -> None:
        super().__init__(known=known)
        self._numeric = numeric or {}
        self._choices = choices or {}

    def inject(self, name: str, **params: Any) -> None:
        checked = dict(params)
        if name.startswith("sensor:"):
            for key in self._SENSOR_NUMERIC:
                if key in checked:
                    checked[key] = require_finite(f"{name}.{key}", checked[key])
        for key, (lo, hi) in self._numeric.get(name, {}).items():
            if key in checked:
                val = require_finite(f"{name}.{key}", checked[key])
                if not lo <= val <= hi:
                    raise InvalidCommand(f"fault {name}: {key}={val} outside [{lo}, {hi}]")
                checked[key] = val
        for key, allowed in self._choices.get(name, {}).items():
            if key in checked and checked[key] not in allowed:
                raise InvalidCommand(f"fault {name}: {key}={checked[key]!r} not one of {list(allowed)}")
        super().inject(name, **checked)


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


_ACTIVE = {
    VHPPhase.PRECHECK,
    VHPPhase.DEHUMIDIFY,
    VHPPhase.CONDITION,
    VHPPhase.DECONTAMINATE,
    VHPPhase.AERATE,
    VHPPhase.HOLD_CLOSED,
}
_GASSING = {VHPPhase.CONDITION, VHPPhase.DECONTAMINATE}


def json_safe(value: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, tuples -> lists, enums -> values."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


@dataclass(frozen=True)
class PhaseRecord:
    phase: str
    start: float
    end: float | None


@dataclass(frozen=True)
class AlarmRecord:
    time: float
    code: str
    text: str


@dataclass(frozen=True)
class VHPSeries:
    """Downsampled cycle record (measured values, as the unit reports them)."""

    t: tuple[float, ...] = ()
    phase: tuple[str, ...] = ()
    h2o2_ppm: tuple[float, ...] = ()
    h2o2_ppm_b: tuple[float, ...] = ()
    rh_pct: tuple[float, ...] = ()
    rs_pct: tuple[float, ...] = ()
    temp_c: tuple[float, ...] = ()
    dp_pa: tuple[float, ...] = ()


@dataclass(frozen=True)
class VHPCycleResult:
    """Per-cycle record of spec §1.4. ``passed`` is True only for a complete, in-limit cycle."""

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

    @property
    def result(self) -> str:
        return "PASS" if self.passed else "FAIL"

    def phase_times(self, phase: str) -> PhaseRecord | None:
        for rec in self.phases:
            if rec.phase == phase:
                return rec
        return None

    def to_dict(self) -> dict[str, Any]:
        d = json_safe(asdict(self))
        d["result"] = self.result
        return d


class _Run:
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
        self.next_record = t
        self.series: dict[str, list[Any]] = {k: [] for k in VHPSeries.__dataclass_fields__}


class VHPUnitModel(SubSteppedModel):
    """Deterministic model of a VHP generator connected to an enclosure.

    Args:
        cfg: unit parameters (``config/cell.yaml`` section ``vhp_unit``).
        enclosure: the enclosure being gassed (see :class:`Enclosure`).
        clock: injected clock (sim time).
        robot_safe: optional callable -> (ok, reason): robot parked in its decon pose with
            drives off (spec §4.3). None: no robot.
        record_interval_s: spacing of the downsampled cycle record.
        ppm_disagreement_max_ppm: redundant ppm sensor tolerance (default 5 % of range).
    """

    substep_max_s = SUBSTEP_MAX_S

    def __init__(
        self,
        cfg: VHPUnitConfig,
        enclosure: Enclosure,
        clock: Clock,
        robot_safe: RobotSafe | None = None,
        *,
        record_interval_s: float = DEFAULT_RECORD_INTERVAL_S,
        ppm_disagreement_max_ppm: float | None = None,
    ) -> None:
        self.cfg = cfg
        self.enclosure = enclosure
        self.clock = clock
        self.robot_safe = robot_safe
        self.record_interval_s = require_finite("record_interval_s", record_interval_s)
        if self.record_interval_s <= 0:
            raise InvalidCommand("record_interval_s must be positive")
        tol = (
            cfg.sensor_range_ppm * DEFAULT_PPM_DISAGREEMENT_FRAC_FS
            if ppm_disagreement_max_ppm is None
            else require_finite("ppm_disagreement_max_ppm", ppm_disagreement_max_ppm)
        )
        self.ppm_disagreement_max_ppm = tol
        self.faults = CheckedFaultHooks(
            known=set(KNOWN_FAULTS),
            numeric={"leak": {"m3_h": (0.0, 1e4)}, "catalyst_failure": {"efficiency_factor": (0.0, 1.0)}},
        )
        self._ch = {name: SensorChannel(name) for name in SENSOR_NAMES}
        self._t = clock.now()
        self._phase = VHPPhase.IDLE
        self._phase_start = self._t
        self._run: _Run | None = None
        self._runs_started = 0
        self._reservoir_g = cfg.reservoir_g  # solution mass in the reservoir (g)
        self._g_cmd = 0.0  # commanded H2O2 injection (g/s)
        self._g_act = 0.0  # actual H2O2 injection (g/s)
        self._loop_on = False
        self._dryer_on = False
        self._hold_closed = False
        self.last_result: VHPCycleResult | None = None
        self._solver = _TwoPoolStep()
        # constant flows (SI)
        self._qc = cfg.catalyst_loop_m3_h / 3600.0
        self._qe = cfg.exhaust_m3_h / 3600.0
        self._kd = cfg.desorption_per_min / 60.0
        self._ks = cfg.surface_decomposition_per_min / 60.0

    # ------------------------------------------------------------------ commands
    def start_cycle(self, recipe: VHPCycleRecipe, operator: str, run_id: str | None = None) -> str:
        """Start a cycle; returns the run id.

        Raises:
            InvalidCommand: not a valid recipe (re-validated: NaN set points are rejected),
                empty operator.
            CommandRefused: a cycle is active, or e-stop / power loss is active.
        """
        if not isinstance(recipe, VHPCycleRecipe):
            raise InvalidCommand(f"recipe must be a VHPCycleRecipe, got {type(recipe).__name__}")
        try:  # model_copy(update=...) bypasses validation: check again
            recipe = VHPCycleRecipe.model_validate(recipe.model_dump())
        except ValidationError as exc:
            raise InvalidCommand(f"invalid recipe {recipe.id!r}: {exc}") from exc
        if not isinstance(operator, str) or not operator.strip():
            raise InvalidCommand("operator must be a non-empty user id")
        if run_id is not None and (not isinstance(run_id, str) or not run_id.strip()):
            raise InvalidCommand("run_id must be a non-empty string")
        if self._phase in _ACTIVE:
            raise CommandRefused(
                RefusalCode.VHP_CYCLE_ACTIVE,
                f"cycle {self._run.run_id if self._run else ''} is "
                f"in phase {self._phase.value}; abort or wait for it to finish",
            )
        if self._stopped():
            raise CommandRefused(RefusalCode.VHP_E_STOP, "e-stop or power loss active")
        now = self._now()
        self._runs_started += 1
        rid = run_id or f"{self.cfg.id}-{self._runs_started:04d}"
        self._run = _Run(recipe, operator, rid, now)
        self._hold_closed = False
        self.last_result = None
        self._enter(VHPPhase.PRECHECK, now)
        self.enclosure.set_decon_status(DeconStatus.CYCLE_RUNNING, rid)
        return rid

    def start_aeration(self, recipe: VHPCycleRecipe, operator: str, run_id: str | None = None) -> str:
        """Aeration only (e.g. after an interrupted cycle): catalytic loop, dryer and exhaust run
        until the measured endpoint ``recipe.aerate.release_ppm``. Never releases the enclosure:
        the result is FAIL ("aeration only") and the status stays NOT_DECONTAMINATED.

        Raises:
            InvalidCommand / CommandRefused: as :meth:`start_cycle`.
        """
        rid = self.start_cycle(recipe, operator, run_id)
        run = self._run
        assert run is not None
        run.failed = True
        run.reasons.append("aeration-only run: not a decontamination cycle")
        run.phases.clear()
        self._enter(VHPPhase.AERATE, run.start)
        self.enclosure.set_decon_status(DeconStatus.NOT_DECONTAMINATED, rid)
        return rid

    def abort(self, user: str, reason: str) -> None:
        """Operator abort: the cycle fails, injection stops, aeration runs to the endpoint.

        Idempotent outside an active cycle (nothing happens).
        """
        if not isinstance(user, str) or not user.strip() or not isinstance(reason, str) or not reason.strip():
            raise InvalidCommand("abort needs a user and a reason")
        if self._phase in _ACTIVE and self._run is not None:
            self._abort("OPERATOR_ABORT", f"operator abort by {user}: {reason}", self._now())

    def refill_reservoir(self, solution_g: float) -> None:
        """Add H2O2 solution to the reservoir (g). Refused while a cycle is active."""
        g = require_finite("solution_g", solution_g)
        if g <= 0:
            raise InvalidCommand("solution_g must be positive")
        if self._phase in _ACTIVE:
            raise CommandRefused(RefusalCode.VHP_CYCLE_ACTIVE, "cannot refill while a cycle is active")
        self._reservoir_g += g

    # ------------------------------------------------------------------ observation
    def sensors(self) -> dict[str, float | bool | str]:
        """What the unit reports (through its sensor channels, so sensor faults apply)."""
        m = self._measure(self._now())
        return {
            **m,
            "reservoir_g": self._reservoir_g,
            "injection_g_min": self._g_act * 60.0,
            "injection_cmd_g_min": self._g_cmd * 60.0,
            "injected_g": self._run.injected_g if self._run else 0.0,
            "phase": self._phase.value,
            "catalyst_loop_on": self._loop_on,
            "dryer_on": self._dryer_on,
            "cycle_active": self._phase in _ACTIVE,
            "hold_closed": self._hold_closed,
        }

    def truth(self) -> dict[str, float]:
        air = self.enclosure.air
        return {
            "h2o2_ppm": air.h2o2_ppm,
            "h2o2_surface_g": air.h2o2_surface_g,
            "rh_pct": air.rh_pct,
            "rs_pct": relative_saturation_pct(air.temp_c, air.rh_pct, air.h2o2_ppm),
            "temp_c": air.temp_c,
            "injection_g_s": self._g_act,
            "injected_g": self._run.injected_g if self._run else 0.0,
            "reservoir_g": self._reservoir_g,
        }

    def status(self) -> dict[str, Any]:
        run = self._run
        return {
            "unit_id": self.cfg.id,
            "state": self._phase.value,
            "run_id": run.run_id if run else None,
            "recipe_id": run.recipe.id if run else None,
            "failed": bool(run and run.failed),
            "reasons": list(run.reasons) if run else [],
            "hold_closed": self._hold_closed,
            "phase_elapsed_s": self._now() - self._phase_start,
            "faults": self.faults.names(),
        }

    @property
    def phase(self) -> VHPPhase:
        return self._phase

    # ------------------------------------------------------------------ stepping
    def _stopped(self) -> bool:
        return "e_stop" in self.faults or "power_loss" in self.faults

    def _substep(self, h: float) -> None:
        t_next = self._t + h
        run = self._run
        if run is None or self._phase not in _ACTIVE:
            self._g_cmd = self._g_act = 0.0
            self._loop_on = self._dryer_on = False
            self._t = t_next
            return
        recipe = run.recipe
        air = self.enclosure.air
        v = float(self.enclosure.volume_m3)
        area = float(self.enclosure.internal_area_m2)
        stopped = self._stopped()
        aerating = self._phase in (VHPPhase.AERATE, VHPPhase.HOLD_CLOSED)

        # --- actuators
        self._loop_on = (self._phase == VHPPhase.DEHUMIDIFY or aerating) and not stopped
        self._dryer_on = self._loop_on and "dryer_failure" not in self.faults
        g_cmd = 0.0
        if not stopped and not run.failed:
            g_max = self.cfg.max_injection_g_min / 60.0
            if self._phase == VHPPhase.CONDITION:
                g_cmd = min(recipe.condition.injection_g_min / 60.0, g_max)
            elif self._phase == VHPPhase.DECONTAMINATE:
                ppm = self._ch["h2o2_ppm"].read(air.h2o2_ppm, self._t, self.faults)
                sp, lo = recipe.decontaminate.setpoint_ppm, recipe.decontaminate.min_ppm
                band = max(sp - lo, 1e-9)
                if math.isfinite(ppm):
                    g_cmd = min(max(g_max * (sp - ppm) / band, 0.0), g_max)
        g_act = 0.0 if "injector_failure" in self.faults else g_cmd
        g_act = min(g_act, self._reservoir_g * self.cfg.solution_w_w / h)
        self._g_cmd, self._g_act = g_cmd, g_act

        # --- two-pool H2O2 model (exact over h)
        eta = self.cfg.catalyst_efficiency
        cat = self.faults.active("catalyst_failure")
        if cat is not None:
            eta *= float(cat.get("efficiency_factor", 0.1))
        leak = self.faults.active("leak")
        q_leak = float(leak.get("m3_h", 2.0)) / 3600.0 if leak is not None else 0.0
        q_ex = (0.0 if stopped else self._qe) + q_leak
        q_loss = q_ex + (eta * self._qc if self._loop_on else 0.0)
        ka_a = self.cfg.deposition_velocity_m_s * area
        c0 = ppm_to_g_m3(air.h2o2_ppm)
        c1, s1 = self._solver(
            c0, air.h2o2_surface_g, g_act / v, (q_loss + ka_a) / v, self._kd / v, ka_a, self._kd + self._ks, h
        )
        air.h2o2_ppm = max(g_m3_to_ppm(c1), 0.0)
        air.h2o2_surface_g = max(s1, 0.0)

        # --- water vapour (g/m^3): injected water in, exhaust out (dry make-up), dryer
        w_sat = water_sat_density_g_m3(air.temp_c)
        w = air.rh_pct / 100.0 * w_sat
        water_g_s = g_act * (1.0 - self.cfg.solution_w_w) / self.cfg.solution_w_w
        k_w = q_ex / v
        if k_w > 0:
            w_inf = water_g_s / (v * k_w)
            w = w_inf + (w - w_inf) * math.exp(-k_w * h)
        else:
            w += water_g_s / v * h
        rh = w / w_sat * 100.0
        if self._dryer_on:
            target = recipe.dehumidify.target_rh_pct
            if rh > target:
                rh = max(target, rh - self.cfg.dryer_rate_pct_min / 60.0 * h)
        air.rh_pct = min(max(rh, 0.0), 100.0)

        run.injected_g += g_act * h
        self._reservoir_g = max(0.0, self._reservoir_g - g_act * h / self.cfg.solution_w_w)
        self._t = t_next
        self._supervise(run, h)

    # ------------------------------------------------------------------ supervision
    def _measure(self, now: float) -> dict[str, float]:
        air = self.enclosure.air
        rng = self.cfg.sensor_range_ppm

        def ppm(name: str) -> float:
            val = self._ch[name].read(air.h2o2_ppm, now, self.faults)
            return min(max(val, 0.0), rng) if math.isfinite(val) else val

        rs_true = relative_saturation_pct(air.temp_c, air.rh_pct, air.h2o2_ppm)
        return {
            "h2o2_ppm": ppm("h2o2_ppm"),
            "h2o2_ppm_b": ppm("h2o2_ppm_b"),
            "rh_pct": self._ch["rh_pct"].read(air.rh_pct, now, self.faults),
            "rs_pct": self._ch["rs_pct"].read(rs_true, now, self.faults),
            "temp_c": self._ch["temp_c"].read(air.temp_c, now, self.faults),
            "dp_pa": self._ch["dp_pa"].read(float(self.enclosure.dp_pa()), now, self.faults),
        }

    def _safety_faults(self, m: dict[str, float], recipe: VHPCycleRecipe) -> list[tuple[str, str]]:
        """Abort conditions checked in every active phase (spec §2.2), except ΔP."""
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

    def _supervise(self, run: _Run, h: float) -> None:
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
            if phase in _GASSING:
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
            readings = [m[k] for k in ("h2o2_ppm", "h2o2_ppm_b") if math.isfinite(m[k])]
            if readings and max(readings) <= recipe.aerate.release_ppm:
                self._finish(max(readings), now)
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

    def _record(self, run: _Run, m: dict[str, float], now: float) -> None:
        if now + 1e-9 < run.next_record:
            return
        run.next_record += self.record_interval_s * max(
            1, math.floor((now - run.next_record) / self.record_interval_s) + 1
        )
        s = run.series
        s["t"].append(now)
        s["phase"].append(self._phase.value)
        for k in ("h2o2_ppm", "h2o2_ppm_b", "rh_pct", "rs_pct", "temp_c", "dp_pa"):
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
        self._enter(VHPPhase.COMPLETE if passed else VHPPhase.FAILED, now)
        self.enclosure.set_decon_status(
            DeconStatus.DECONTAMINATED_RELEASED if passed else DeconStatus.NOT_DECONTAMINATED, run.run_id
        )
        self._g_cmd = self._g_act = 0.0
        self._loop_on = self._dryer_on = False
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
        )
