"""VHP (vaporised hydrogen peroxide) bio-decontamination unit: deterministic process model.

The unit gasses an enclosure (the isolator) through this cycle (phases and typical values:
Annex 1 §4.25 [ANNEX1-2022] [M]; [QB-ROOM] [QB-ISO] [FC04] [BQ])::

    IDLE -> PRECHECK -> DEHUMIDIFY -> CONDITION -> DECONTAMINATE -> AERATE -> COMPLETE
                 \\ any abort rule -> AERATE (result FAIL) -> FAILED
    AERATE timeout -> HOLD_CLOSED (keeps aerating, doors stay locked) -> FAILED

Physics (the "two-pool model", engineering; deposition velocity [PDX21]),
C = air concentration (g/m^3), S = sorbed mass (g)::

    V dC/dt = G - (eta*Q_c*[loop] + Q_e + Q_leak) C - k_a A C + k_d S
      dS/dt = k_a A C - (k_d + k_s) S

integrated *exactly* over each sub-step (closed-form 2x2 matrix exponential with the
injection G held constant), so results do not depend on the caller's dt.

Design choices (documented, not physics):

* Catalytic loop: runs in DEHUMIDIFY and AERATE only (Bioquell Clarus C style: one loop
  with catalyst and dryer for conditioning and aeration, one without for ramp and dwell,
  [FC04]). During CONDITION and DECONTAMINATE the circulation loop has no
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
  Vaisala's RS expresses for the H2O2/H2O mixture ([VAIS]); the real mixture is
  non-ideal and condenses somewhat earlier, hence the recipe's margin (RS < 90 %).
* Dwell controller: proportional on the measured ppm, full injection at ``min_ppm`` and
  none at the set point (proportional band = set point - min), capped at
  ``max_injection_g_min``; the control decision is taken every sub-step.
* Redundant ppm sensors ``h2o2_ppm`` and ``h2o2_ppm_b``: disagreement beyond
  ``ppm_disagreement_max_ppm`` (default 5 % of the sensor range: two +-2 % FS sensors
  plus margin) is a sensor fault.
* The aeration endpoint is the *measured* concentration: every finite ppm sensor must
  read <= release_ppm ([QB-PB] [PATALERT]); it is never a timer.
* E-stop / power loss stop injection, loops and dryer; after the abort the unit aerates
  as soon as the e-stop / power fault is cleared (H2O2 is never left in the enclosure).

Time: ``step(dt)`` covers the interval that ends at ``clock.now()`` when the caller
advances the clock first (``clock.advance(dt); model.step(dt)``) and also works if the
caller steps first; event times are model time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

from pydantic import ValidationError

from ..config.devices import VHPCycleRecipe, VHPUnitConfig
from ..devices.codes import RefusalCode
from .clock import Clock
from .common import (
    Atmosphere,
    CommandRefused,
    DeconStatus,
    InvalidCommand,
    SensorChannel,
    SubSteppedModel,
    require_finite,
)
from .cycle import AlarmRecord, CheckedFaultHooks, PhaseRecord, json_safe
from .vhp_cycle import ACTIVE_PHASES, VHPCycleResult, VHPCycleSupervisor, VHPPhase, VHPRun, VHPSeries
from .vhp_physics import (
    PPM_TO_MG_M3,
    TwoPoolStep,
    g_m3_to_ppm,
    h2o2_p_sat_kpa,
    ppm_to_g_m3,
    relative_saturation_pct,
    water_sat_density_g_m3,
)

__all__ = [
    "PPM_TO_MG_M3",
    "AlarmRecord",
    "CheckedFaultHooks",
    "Enclosure",
    "PhaseRecord",
    "RobotSafe",
    "VHPCycleResult",
    "VHPPhase",
    "VHPSeries",
    "VHPUnitModel",
    "h2o2_p_sat_kpa",
    "json_safe",
    "relative_saturation_pct",
]

# --- numerical choices (not physics) ----------------------------------------------------
SUBSTEP_MAX_S = 0.5  # internal sub-step: control decisions and checks happen at this grid
DEFAULT_RECORD_INTERVAL_S = 10.0  # downsampled record: one point per 10 sim s (the cycle record)
DEFAULT_PPM_DISAGREEMENT_FRAC_FS = 0.05  # redundant ppm sensors: 2 x (+-2 % FS) + margin

KNOWN_FAULTS = {"injector_failure", "catalyst_failure", "leak", "dryer_failure", "e_stop", "power_loss"}
SENSOR_NAMES = ("h2o2_ppm", "h2o2_ppm_b", "h2o2_residual_ppm", "rh_pct", "rs_pct", "temp_c", "dp_pa")


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


class VHPUnitModel(VHPCycleSupervisor, SubSteppedModel):
    """Deterministic model of a VHP generator connected to an enclosure.

    Args:
        cfg: unit parameters (``config/cell.yaml`` section ``vhp_unit``).
        enclosure: the enclosure being gassed (see :class:`Enclosure`).
        clock: injected clock (sim time).
        robot_safe: optional callable -> (ok, reason): robot parked in its decon pose with
            drives off (IL-07). None: no robot.
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
        self._run: VHPRun | None = None
        self._runs_started = 0
        self._reservoir_g = cfg.reservoir_g  # solution mass in the reservoir (g)
        self._g_cmd = 0.0  # commanded H2O2 injection (g/s)
        self._g_act = 0.0  # actual H2O2 injection (g/s)
        self._loop_on = False
        self._dryer_on = False
        self._hold_closed = False
        self._g_mix = 0.0  # injected vapour reaching the enclosure's bulk air (g/s), after mixing
        self._rebound_since: float | None = None  # aeration: start of the rebound hold (loop stopped)
        self.last_result: VHPCycleResult | None = None
        self._solver = TwoPoolStep()
        # constant flows (SI)
        self._qc = cfg.catalyst_loop_m3_h / 3600.0
        self._qe = cfg.exhaust_m3_h / 3600.0
        self._kd = cfg.desorption_per_min / 60.0
        self._ks = cfg.surface_decomposition_per_min / 60.0
        self._q_circ = (cfg.circulation_m3_h or cfg.catalyst_loop_m3_h) / 3600.0

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
        if self._phase in ACTIVE_PHASES:
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
        self._run = VHPRun(recipe, operator, rid, now)
        self._hold_closed = False
        self._rebound_since = None
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
        if self._phase in ACTIVE_PHASES and self._run is not None:
            self._abort("OPERATOR_ABORT", f"operator abort by {user}: {reason}", self._now())

    def refill_reservoir(self, solution_g: float) -> None:
        """Add H2O2 solution to the reservoir (g). Refused while a cycle is active."""
        g = require_finite("solution_g", solution_g)
        if g <= 0:
            raise InvalidCommand("solution_g must be positive")
        if self._phase in ACTIVE_PHASES:
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
            "rebound_hold": self._rebound_since is not None,
            "cycle_active": self._phase in ACTIVE_PHASES,
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
        if run is None or self._phase not in ACTIVE_PHASES:
            # the unit is idle, but the H2O2 on the enclosure's surfaces is not: it keeps
            # desorbing into the air (rebound) and decomposing; nothing removes it but the
            # surface decomposition and leaks (the loop and the exhaust are off)
            self._g_cmd = self._g_act = 0.0
            self._loop_on = self._dryer_on = False
            self._integrate_h2o2(0.0, 0.0, h)
            self._t = t_next
            return
        recipe = run.recipe
        air = self.enclosure.air
        v = float(self.enclosure.volume_m3)
        stopped = self._stopped()
        aerating = self._phase in (VHPPhase.AERATE, VHPPhase.HOLD_CLOSED)
        rebound_hold = aerating and self._rebound_since is not None

        # --- actuators (the rebound hold stops loop, dryer and exhaust, as after release)
        self._loop_on = (self._phase == VHPPhase.DEHUMIDIFY or aerating) and not stopped and not rebound_hold
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
        q_ex = 0.0 if stopped or rebound_hold else self._qe
        q_ex += self._integrate_h2o2(g_act, q_ex, h)

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

    def _integrate_h2o2(self, g_act: float, q_ex: float, h: float) -> float:
        """Advance the two-pool H2O2 model over ``h`` with the injection ``g_act`` (g/s) leaving
        the vaporiser and the exhaust ``q_ex`` (m3/s); returns the leak flow (m3/s).

        Mixing: the vapour reaches the enclosure's bulk air through the circulation, a first-order
        lag with tau = V / Q_circ (well-mixed compartment, engineering [M]); the step uses the
        lag's exact mean over ``h``, so the vapour in transit is conserved."""
        air = self.enclosure.air
        leak = self.faults.active("leak")
        q_leak = float(leak.get("m3_h", 2.0)) / 3600.0 if leak is not None else 0.0
        if air.h2o2_ppm <= 0.0 and air.h2o2_surface_g <= 0.0 and g_act <= 0.0 and self._g_mix <= 0.0:
            return q_leak  # nothing to integrate (exact)
        v = float(self.enclosure.volume_m3)
        tau = v / self._q_circ
        x = math.exp(-h / tau)
        g_mean = g_act + (self._g_mix - g_act) * tau / h * (1.0 - x)
        self._g_mix = g_act + (self._g_mix - g_act) * x
        if self._g_mix < 1e-12 and g_act <= 0.0:
            self._g_mix = 0.0
        eta = self.cfg.catalyst_efficiency
        cat = self.faults.active("catalyst_failure")
        if cat is not None:
            eta *= float(cat.get("efficiency_factor", 0.1))
        q_loss = q_ex + q_leak + (eta * self._qc if self._loop_on else 0.0)
        ka_a = self.cfg.deposition_velocity_m_s * float(self.enclosure.internal_area_m2)
        c0 = ppm_to_g_m3(air.h2o2_ppm)
        c1, s1 = self._solver(
            c0, air.h2o2_surface_g, g_mean / v, (q_loss + ka_a) / v, self._kd / v, ka_a, self._kd + self._ks, h
        )
        air.h2o2_ppm = max(g_m3_to_ppm(c1), 0.0)
        air.h2o2_surface_g = max(s1, 0.0)
        return q_leak
