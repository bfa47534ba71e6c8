"""The isolator's glove ports: in use / extended on the rack, glove replacement, and the
pressure-decay integrity test with its record (Annex 1 §4.24; ISO 14644-7 Annex E.5). A
port whose last test FAILED is blocked (IL-05).

Part of :class:`~.isolator.IsolatorModel` (a mixin).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..devices.codes import RefusalCode
from .common import CommandRefused, FaultHooks, InvalidCommand
from .isolator_pressure import P_ATM_PA

if TYPE_CHECKING:
    from .isolator_pressure import LeakTestState


AIR_DENSITY_KG_M3 = 1.204
"""Dry air at 20 degC and 101.325 kPa (ISO 2533 / ideal gas, R_air = 287.05 J/(kg K))."""

ORIFICE_DISCHARGE_COEFFICIENT = 0.61
"""Sharp-edged orifice discharge coefficient, textbook value for thin-plate orifices
(ISO 5167-2 orifice plates have C ~ 0.6)."""

DEFAULT_GLOVE_HOLE_UM = 100.0
"""Default hole diameter of a ``glove_breach:<port>`` fault: the hole size automated
glove testers find (about 100 um) [V] [SPR24]. With the glove as a flexible volume
(``glove_compliance_l_per_kpa``) the model's pressure-decay test detects holes from ~90 um
(1 kPa, 60 s stabilisation, 300 s test, 30 Pa limit); a 15 um hole passes."""


@dataclass
class GlovePort:
    id: str
    glove_lot: str
    fitted: str
    in_use: bool = False
    extended: bool = False
    test: dict[str, Any] | None = None  # running test
    last_test: dict[str, Any] | None = None  # last completed test record


class IsolatorGloves:
    """Glove ports: use, rack (extended), replacement and the pressure-decay integrity test."""

    _glove_ids: list[str]
    _gloves: dict[str, GlovePort]
    _leak: LeakTestState
    cfg: Any
    clock: Any
    events: list[dict[str, Any]]
    faults: FaultHooks
    interventions: list[dict[str, Any]]

    if TYPE_CHECKING:

        def _breach(self, reason: str) -> None: ...

        def _check_breaches(self) -> None: ...

        def note_intervention(self, kind: str, port: str | None = None) -> None: ...

    def _glove(self, port: str) -> GlovePort:
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
                f"{port}: last integrity test FAILED; port blocked (Annex 1 §4.24 [ANNEX1-2022] [M], IL-05)",
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

    def gloves_extended(self) -> bool:
        """True when every glove is extended on its rack (VHP precheck, IL-07)."""
        return all(g.extended for g in self._gloves.values())

    def _glove_capacitance_m3_pa(self) -> float:
        """Pneumatic capacitance of the test volume, dV_air/dp (m3/Pa): the gas compressibility
        of the volume behind the glove (V / p_atm, isothermal) plus the glove's own compliance (a
        pressurised glove and sleeve balloon: most of the air that leaks out shrinks the glove
        instead of lowering the pressure). A rigid model (compliance 0) is ~40 x too sensitive."""
        gt = self.cfg.glove_test
        return gt.glove_volume_l * 1e-3 / P_ATM_PA + gt.glove_compliance_l_per_kpa * 1e-6

    def _glove_hole_k(self, port: str) -> float:
        """Orifice constant k (Pa^0.5/s) in dp/dt = -k sqrt(p) for a breached glove, else 0:
        orifice flow Q = Cd A sqrt(2 p / rho) out of the capacitance C, dp/dt = -Q / C."""
        f = self.faults.active(f"glove_breach:{port}")
        if f is None:
            return 0.0
        d_m = float(f.get("hole_um", DEFAULT_GLOVE_HOLE_UM)) * 1e-6
        area = math.pi * d_m * d_m / 4.0
        q_per_sqrt_pa = ORIFICE_DISCHARGE_COEFFICIENT * area * math.sqrt(2.0 / AIR_DENSITY_KG_M3)
        return q_per_sqrt_pa / self._glove_capacitance_m3_pa()

    def _glove_lambda(self) -> float:
        """Intact-glove loss rate constant (1/s): the enclosure hourly leak rate at the test
        pressure, as a flow out of the rigid volume (lambda_rigid p V / p_atm), over the capacitance."""
        gt = self.cfg.glove_test
        lam_rigid = self.cfg.pressure.leak_rate_per_h * P_ATM_PA / (3600.0 * gt.test_pressure_pa)
        return lam_rigid * (gt.glove_volume_l * 1e-3 / P_ATM_PA) / self._glove_capacitance_m3_pa()

    def _advance_glove_test(self, g: GlovePort, h: float) -> None:
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

    def _finish_glove_test(self, g: GlovePort) -> None:
        gt = self.cfg.glove_test
        test = g.test
        assert test is not None
        drop = test["p_start_pa"] - test["p_pa"]
        result = "PASS" if drop <= gt.max_drop_pa else "FAIL"
        now = self.clock.now()
        g.last_test = {
            # what to record for each glove test: Annex 1 §4.24 [ANNEX1-2022] [M]
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
