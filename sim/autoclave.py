"""Double-ended (pass-through) steam steriliser: deterministic process model.

Programs (``config/autoclave_programs.yaml``; EN 285 [EN285-2015], typical values [KIRK] [VDORN]):

* ``sterilise``: N x (vacuum pulse to ``vacuum_kpa``, steam pulse to ``pulse_high_kpa``) ->
  HEATUP -> PLATEAU (hold ``hold_s`` in [set point, set point + band]) -> EXHAUST to
  atmospheric -> DRYING under vacuum -> AIR_BREAK -> COMPLETE / FAILED.
* ``bowie_dick``: the same, empty chamber with a test pack; the pack-centre probe (the
  load probe) must stay within ``bowie_dick_max_delta_c`` of the chamber during the hold.
* ``leak_test``: LEAK_EVACUATE to ``vacuum_kpa`` -> LEAK_STABILISE -> LEAK_HOLD; leak rate =
  pressure rise per minute over the hold vs ``max_rate_kpa_min``.

Physics (documented simplifications):

* The chamber gas is steam (partial pressure p_s) plus non-condensable gas/air (p_air),
  P = p_s + p_air (Dalton). Where steam is present and condensing, the chamber is at the
  saturation temperature of the *steam partial pressure*: T = T_sat(p_s) (IAPWS-IF97,
  :mod:`.steam`). So air left in the chamber shows as a pressure above p_sat(T): the
  controller's saturated-steam consistency check |T_sat(P) - T| <= tolerance detects it
  (a failure alarm, Annex 1 §8.50 [ANNEX1-2022] [AUTOPLUS]). The tolerance is
  ``probe_disagreement_max_c`` (no dedicated config field yet).
* Vacuum pump, exhaust and air-break valves move P linearly at ``pump_rate_kpa_s``; steam
  admission at ``steam_fill_kpa_s``; pumping/venting removes steam and air in proportion.
* Heat-up and plateau: the controller moves the chamber temperature towards its target
  (set point + band/2) at most ``heat_rate_c_min`` up / ``cool_rate_c_min`` down; the steam
  partial pressure follows p_sat(T). Without active heating the chamber cools towards
  ambient at ``cool_rate_c_min`` (steam condenses when p_s > p_sat(T)).
* Air ingress through leaks (``base_leak_kpa_per_min`` + the ``leak`` fault's ``rate``
  kPa/min) while P < atmospheric: constant (choked) below the critical pressure ratio of
  air, then falling linearly to zero at atmospheric.
* Load probe: first-order lag of the chamber temperature (``load_probe_time_constant_s``).
  F0 is integrated from the *measured* load probe over the whole cycle ([FEDF0]).
* Bowie-Dick: during heat-up and hold the non-condensable gas of the chamber is swept into
  the test pack (time constant = load probe constant) and concentrated by V_chamber /
  V_pack; the pack centre sits at T_sat(P - p_air,pack), colder than the chamber.
* Two chamber probes: control (``chamber_t_c``) and independent monitoring
  (``chamber_t_mon_c``), Annex 1 §8.50 [ANNEX1-2022] [AUTOPLUS] redundancy; disagreement >
  tolerance aborts.
* Device interlocks (EN 285 §4.3.2 [EN285-2015]; [ENGN] [SPIRE]) use the true chamber
  state: they model the hard-wired pressure/temperature switches that are independent of
  the controller's sensors.
* When no cycle runs the chamber is vented to atmosphere (P held at atmospheric).
* After an abort the unit drives valves to a safe state and VENTS to atmospheric (phase
  VENTING) before the cycle is marked FAILED; a de-energised vent valve opens (fail-safe),
  so venting also happens on e-stop / power loss.

Time convention as :mod:`.vhp`: ``clock.advance(dt); model.step(dt)``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ..config.devices import AutoclaveConfig, AutoclaveProgram, AutoclavePrograms
from ..devices.codes import RefusalCode
from .autoclave_cycle import (
    IDLE_PHASES,
    SIDES,
    AutoclaveCycleSupervisor,
    AutoclavePhase,
    AutoclaveResult,
    AutoclaveRun,
    AutoclaveSeries,
)
from .clock import Clock
from .common import CommandRefused, InvalidCommand, SensorChannel, SubSteppedModel, require_finite
from .cycle import CheckedFaultHooks
from .steam import ATMOSPHERIC_KPA, IF97_P_MIN_KPA, p_sat_kpa, t_sat_c

__all__ = [
    "SIDES",
    "AutoclaveModel",
    "AutoclavePhase",
    "AutoclaveResult",
    "AutoclaveSeries",
    "DoorState",
]

# --- physical constants -------------------------------------------------------------------
GAMMA_AIR = 1.4  # ratio of specific heats of air (diatomic ideal gas)
# Critical (choked-flow) pressure ratio (2/(gamma+1))^(gamma/(gamma-1)) = 0.528 for air
CRITICAL_PRESSURE_RATIO_AIR = (2.0 / (GAMMA_AIR + 1.0)) ** (GAMMA_AIR / (GAMMA_AIR - 1.0))
# EN 285 standard test pack for the air-removal test: folded cotton sheets, about
# 250 mm x 300 mm x 220 mm, ~7 kg [M] (EN 285 §24 test pack) -> ~16.5 L.
DEFAULT_BD_PACK_VOLUME_L = 0.25 * 0.30 * 0.22 * 1000.0

# --- numerical / record choices (not physics) -----------------------------------------------
SUBSTEP_MAX_S = 0.25
DEFAULT_RECORD_INTERVAL_S = 5.0  # record time, chamber T and P, stages [EN285-2015 §6.5]

KNOWN_FAULTS = {"steam_failure", "leak", "steam_ncg", "seal_loss", "e_stop", "power_loss"}
SENSOR_NAMES = ("chamber_t_c", "chamber_t_mon_c", "chamber_p_kpa", "load_t_c")


class DoorState(enum.StrEnum):
    OPEN = "OPEN"
    CLOSING = "CLOSING"
    SEALING = "SEALING"  # closed and locked, gasket pressurising
    SEALED = "SEALED"  # closed, locked, gasket pressurised
    UNSEALING = "UNSEALING"  # gasket depressurising (still closed and locked)
    OPENING = "OPENING"


_CLOSED = {DoorState.SEALING, DoorState.SEALED, DoorState.UNSEALING}


@dataclass
class _Door:
    state: DoorState = DoorState.SEALED
    timer: float = 0.0


class AutoclaveModel(AutoclaveCycleSupervisor, SubSteppedModel):
    """Deterministic model of a double-ended pre-vacuum steam steriliser.

    Args:
        cfg: steriliser parameters (``config/cell.yaml`` section ``autoclave``).
        clock: injected clock (sim time).
        programs: the program catalogue, so programs can be started by id.
        record_interval_s: spacing of the downsampled cycle record.
        bd_pack_volume_l: free volume of the Bowie-Dick test pack (default: EN 285 pack).
    """

    substep_max_s = SUBSTEP_MAX_S

    def __init__(
        self,
        cfg: AutoclaveConfig,
        clock: Clock,
        programs: AutoclavePrograms | Iterable[AutoclaveProgram] | None = None,
        *,
        record_interval_s: float = DEFAULT_RECORD_INTERVAL_S,
        bd_pack_volume_l: float = DEFAULT_BD_PACK_VOLUME_L,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        progs = programs.programs if isinstance(programs, AutoclavePrograms) else list(programs or [])
        self.programs: dict[str, AutoclaveProgram] = {p.id: p for p in progs}
        self.record_interval_s = require_finite("record_interval_s", record_interval_s)
        self.bd_pack_volume_l = require_finite("bd_pack_volume_l", bd_pack_volume_l)
        if self.record_interval_s <= 0 or self.bd_pack_volume_l <= 0:
            raise InvalidCommand("record_interval_s and bd_pack_volume_l must be positive")
        self.faults = CheckedFaultHooks(
            known=set(KNOWN_FAULTS),
            numeric={"leak": {"rate": (0.0, 1e4)}, "steam_ncg": {"fraction": (0.0, 1.0)}},
            choices={"seal_loss": {"side": SIDES}},
        )
        self._ch = {name: SensorChannel(name) for name in SENSOR_NAMES}
        self._t = clock.now()
        # chamber state
        self._p_s = 0.0
        self._p_air = ATMOSPHERIC_KPA
        self._t_ch = cfg.ambient_temp_c
        self._t_load = cfg.ambient_temp_c
        self._p_air_pack = self._p_air
        self.doors = {side: _Door() for side in SIDES}
        # cycle
        self._phase = AutoclavePhase.IDLE
        self._phase_start = self._t
        self._run: AutoclaveRun | None = None
        self._runs_started = 0
        self.last_result: AutoclaveResult | None = None
        self._unload_released = False
        self._override: dict[str, Any] | None = None
        self._unload_opened = False
        self.override_log: list[dict[str, Any]] = []
        # time of the last PASS of each periodic test (EN 285 / ISO 17665 practice: Bowie-Dick
        # daily before the first load, vacuum leak test weekly [KIRK]; validity: cfg, [M])
        t0 = self._t if cfg.sim_tests_passed_at_start else None
        self.tests_passed_at: dict[str, float | None] = {"bowie_dick": t0, "leak_test": t0}

    # ------------------------------------------------------------------ commands
    def start_program(
        self,
        program: str | AutoclaveProgram,
        load_id: str,
        operator: str = "system",
        run_id: str | None = None,
    ) -> str:
        """Start a program (by id or object) on load ``load_id``; returns the run id.

        Raises:
            InvalidCommand: unknown program id, invalid program (NaN...), empty load id.
            CommandRefused: a cycle is running; a door not closed, locked and gasket
                pressurised ([SPIRE], IL-11); e-stop / power loss.
        """
        prog = self._resolve(program)
        if not isinstance(load_id, str) or not load_id.strip():
            raise InvalidCommand("load_id must be a non-empty string")
        if not isinstance(operator, str) or not operator.strip():
            raise InvalidCommand("operator must be a non-empty user id")
        if run_id is not None and (not isinstance(run_id, str) or not run_id.strip()):
            raise InvalidCommand("run_id must be a non-empty string")
        if self.cycle_running:
            raise CommandRefused(
                RefusalCode.AC_CYCLE_RUNNING,
                f"cycle {self._run.run_id if self._run else ''} in phase {self._phase.value}",
            )
        if self._stopped():
            raise CommandRefused(RefusalCode.AC_E_STOP, "e-stop or power loss active")
        if prog.kind == "sterilise":
            due = self.tests_due()
            if due:
                raise CommandRefused(RefusalCode.AC_TEST_NOT_CURRENT,
                                     f"{prog.id} needs current periodic tests: {'; '.join(due)}")
        for side in SIDES:
            if not self._door_sealed(side):
                raise CommandRefused(
                    RefusalCode.AC_DOOR_NOT_SEALED,
                    f"{side} door must be closed, locked and its gasket "
                    f"pressurised (state {self.doors[side].state.value}"
                    f"{', gasket pressure lost' if self._seal_lost(side) else ''})",
                )
        now = self._now()
        self._runs_started += 1
        rid = run_id or f"{self.cfg.id}-{self._runs_started:04d}"
        self._run = AutoclaveRun(prog, load_id, operator, rid, now)
        self._unload_released = False  # a new cycle replaces any earlier release
        self.last_result = None
        self._override = None
        load_t = self._meas()["load_t_c"]
        if math.isfinite(load_t):
            self._run.f0.add(now, load_t)
        if prog.kind == "leak_test":
            self._enter(AutoclavePhase.LEAK_EVACUATE, now)
        elif prog.prevacuum is not None and prog.prevacuum.pulses > 0:
            self._run.pulse = 1
            self._enter(AutoclavePhase.PULSE_VACUUM, now)
        else:
            self._enter(AutoclavePhase.HEATUP, now)
        return rid

    def abort(self, user: str, reason: str) -> None:
        """Operator abort: the cycle fails and the chamber is vented. No-op when idle."""
        if not isinstance(user, str) or not user.strip() or not isinstance(reason, str) or not reason.strip():
            raise InvalidCommand("abort needs a user and a reason")
        if (
            self._run is not None
            and self._phase not in IDLE_PHASES
            and self._phase != AutoclavePhase.VENTING
        ):
            self._abort([("OPERATOR_ABORT", f"operator abort by {user}: {reason}")], self._now())

    def close_door(self, side: str) -> None:
        """Close, lock and pressurise the gasket of a door (idempotent).

        Raises:
            InvalidCommand: unknown side.
            CommandRefused: the door is opening; e-stop / power loss.
        """
        door = self._door(side)
        if door.state in (DoorState.CLOSING, DoorState.SEALING, DoorState.SEALED):
            return
        if self._stopped():
            raise CommandRefused(RefusalCode.AC_E_STOP, "doors do not move during e-stop or power loss")
        if door.state != DoorState.OPEN:
            raise CommandRefused(
                RefusalCode.AC_DOOR_MOVING, f"{side} door is {door.state.value}; wait until it is open"
            )
        door.state, door.timer = DoorState.CLOSING, 0.0

    def open_door(self, side: str) -> None:
        """Depressurise the gasket, unlock and open a door (idempotent), if the interlocks allow.

        Raises:
            InvalidCommand: unknown side.
            CommandRefused: the failed interlock condition (EN 285 §4.3.2 [EN285-2015], IL-10, IL-11).
        """
        door = self._door(side)
        if door.state in (DoorState.OPEN, DoorState.OPENING, DoorState.UNSEALING):
            return
        if door.state != DoorState.SEALED:
            raise CommandRefused(
                RefusalCode.AC_DOOR_MOVING, f"{side} door is {door.state.value}; wait until it is sealed"
            )
        refusal = self.door_open_refusal(side)
        if refusal is not None:
            raise CommandRefused(*refusal)
        door.state, door.timer = DoorState.UNSEALING, 0.0

    def door_open_refusal(self, side: str) -> tuple[RefusalCode, str] | None:
        """(code, reason) why ``side`` may not open now, or None if it may."""
        self._door(side)
        other = "unload" if side == "load" else "load"
        if self._stopped():
            return (RefusalCode.AC_E_STOP, "doors stay locked during e-stop or power loss")
        gauge = self._p() - ATMOSPHERIC_KPA
        if abs(gauge) > self.cfg.door_open_max_gauge_kpa:
            return (
                RefusalCode.AC_PRESSURISED,
                f"chamber at {gauge:+.1f} kPa gauge; must be within "
                f"{self.cfg.door_open_max_gauge_kpa} kPa of atmospheric",
            )
        if self._t_ch >= self.cfg.door_open_max_temp_c:
            return (
                RefusalCode.AC_HOT,
                f"chamber at {self._t_ch:.1f} C; must be below {self.cfg.door_open_max_temp_c} C",
            )
        if self.cycle_running:
            return (RefusalCode.AC_CYCLE_RUNNING, f"a cycle is running (phase {self._phase.value})")
        if self.doors[other].state != DoorState.SEALED:
            return (
                RefusalCode.AC_OTHER_DOOR_OPEN,
                f"the {other} door is {self.doors[other].state.value}, not closed, locked "
                "and sealed: the two doors never open together",
            )
        if side == "unload" and not self._unload_released and self._override is None:
            last = self.last_result
            why = (
                "no cycle since the last unloading"
                if last is None
                else f"last cycle {last.run_id} ({last.program_id}, {last.program_kind}) was "
                f"{'a test cycle' if last.passed else 'not successful'}"
            )
            return (
                RefusalCode.AC_UNLOAD_NOT_RELEASED,
                f"clean-side door opens only after a complete, successful sterilisation cycle: {why}",
            )
        return None

    def override_unload(self, user: str, reason: str) -> None:
        """Authorised, logged override: allow the clean-side door to open once without a PASS.

        The caller (supervisor) checks the user's role and e-signature (IL-13); the model logs
        who, when and why. The other door interlocks still apply.

        Raises:
            InvalidCommand: empty user or reason.
            CommandRefused: a cycle is running.
        """
        if not isinstance(user, str) or not user.strip():
            raise InvalidCommand("override needs the authorising user")
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidCommand("override needs a reason")
        if self.cycle_running:
            raise CommandRefused(RefusalCode.AC_CYCLE_RUNNING, "no override while a cycle is running")
        entry = {
            "time": self._now(),
            "user": user,
            "reason": reason,
            "action": "override_unload",
            "last_run_id": self.last_result.run_id if self.last_result else None,
            "last_result": self.last_result.result if self.last_result else None,
        }
        self.override_log.append(entry)
        self._override = entry

    def tests_due(self) -> list[str]:
        """Why a sterilising program may not start: each periodic test (Bowie-Dick, vacuum leak
        test) without a PASS within its validity (``bowie_dick_valid_h``, ``leak_test_valid_h``)."""
        out = []
        now = self._now()
        for kind, valid_h, name in (("bowie_dick", self.cfg.bowie_dick_valid_h, "Bowie-Dick air-removal test"),
                                    ("leak_test", self.cfg.leak_test_valid_h, "vacuum leak test")):
            if valid_h is None:
                continue
            t = self.tests_passed_at.get(kind)
            if t is None:
                out.append(f"no {name} PASS on record")
            elif now - t > valid_h * 3600.0:
                out.append(f"last {name} PASS {(now - t) / 3600.0:.1f} h ago (valid {valid_h:g} h)")
        return out

    # ------------------------------------------------------------------ observation
    @property
    def phase(self) -> AutoclavePhase:
        return self._phase

    @property
    def cycle_running(self) -> bool:
        return self._phase not in IDLE_PHASES

    @property
    def unload_released(self) -> bool:
        return self._unload_released

    def sensors(self) -> dict[str, float | bool | str]:
        m = self._meas()
        out: dict[str, float | bool | str] = dict(m)
        out["f0_min"] = self._run.f0.f0_min if self._run else 0.0
        out["steam_supply_ok"] = "steam_failure" not in self.faults
        out["phase"] = self._phase.value
        out["pulse"] = self._run.pulse if self._run and self.cycle_running else 0
        out["cycle_running"] = self.cycle_running
        out["unload_released"] = self._unload_released
        out["unload_override"] = self._override is not None
        out["periodic_tests_current"] = not self.tests_due()
        for side in SIDES:
            st = self.doors[side].state
            out[f"{side}_door_state"] = st.value
            out[f"{side}_door_closed"] = st in _CLOSED
            out[f"{side}_door_locked"] = st in _CLOSED
            out[f"{side}_door_gasket_ok"] = st == DoorState.SEALED and not self._seal_lost(side)
            out[f"{side}_door_open"] = st == DoorState.OPEN
        return out

    def truth(self) -> dict[str, float]:
        return {
            "chamber_t_c": self._t_ch,
            "chamber_p_kpa": self._p(),
            "steam_kpa": self._p_s,
            "air_kpa": self._p_air,
            "load_t_c": self._t_load,
            "pack_air_kpa": self._p_air_pack,
            "f0_min": self._run.f0.f0_min if self._run else 0.0,
        }

    def status(self) -> dict[str, Any]:
        run = self._run
        return {
            "unit_id": self.cfg.id,
            "state": self._phase.value,
            "run_id": run.run_id if run else None,
            "program_id": run.program.id if run else None,
            "load_id": run.load_id if run else None,
            "failed": bool(run and run.failed),
            "reasons": list(run.reasons) if run else [],
            "phase_elapsed_s": self._now() - self._phase_start,
            "unload_released": self._unload_released,
            "unload_override": self._override is not None,
            "doors": {s: self.doors[s].state.value for s in SIDES},
            "faults": self.faults.names(),
        }

    # ------------------------------------------------------------------ stepping
    # ------------------------------------------------------------------ internals
    def _p(self) -> float:
        return self._p_s + self._p_air

    def _stopped(self) -> bool:
        return "e_stop" in self.faults or "power_loss" in self.faults

    def _door(self, side: str) -> _Door:
        if side not in self.doors:
            raise InvalidCommand(f"unknown door {side!r}; known: {list(SIDES)}")
        return self.doors[side]

    def _seal_lost(self, side: str) -> bool:
        f = self.faults.active("seal_loss")
        return f is not None and f.get("side", side) == side

    def _door_sealed(self, side: str) -> bool:
        return self.doors[side].state == DoorState.SEALED and not self._seal_lost(side)

    def _resolve(self, program: str | AutoclaveProgram) -> AutoclaveProgram:
        if isinstance(program, str):
            if program not in self.programs:
                raise InvalidCommand(f"unknown autoclave program {program!r}; known: {sorted(self.programs)}")
            program = self.programs[program]
        if not isinstance(program, AutoclaveProgram):
            raise InvalidCommand(f"program must be an id or AutoclaveProgram, got {type(program).__name__}")
        try:  # model_copy(update=...) bypasses validation: check again (NaN set points)
            return AutoclaveProgram.model_validate(program.model_dump())
        except ValidationError as exc:
            raise InvalidCommand(f"invalid program {program.id!r}: {exc}") from exc

    def _meas(self) -> dict[str, float]:
        now = self._t
        f = self.faults
        return {
            "chamber_t_c": self._ch["chamber_t_c"].read(self._t_ch, now, f),
            "chamber_t_mon_c": self._ch["chamber_t_mon_c"].read(self._t_ch, now, f),
            "chamber_p_kpa": self._ch["chamber_p_kpa"].read(self._p(), now, f),
            "load_t_c": self._ch["load_t_c"].read(self._t_load, now, f),
        }

    def _leak_in(self, h: float) -> None:
        p = self._p()
        if p >= ATMOSPHERIC_KPA:
            return
        rate = self.cfg.base_leak_kpa_per_min
        leak = self.faults.active("leak")
        if leak is not None:
            rate += float(leak.get("rate", 1.0))
        crit = CRITICAL_PRESSURE_RATIO_AIR * ATMOSPHERIC_KPA
        factor = 1.0 if p <= crit else (ATMOSPHERIC_KPA - p) / (ATMOSPHERIC_KPA - crit)
        self._p_air += min(rate / 60.0 * factor * h, ATMOSPHERIC_KPA - p)

    def _remove(self, dp: float) -> None:
        """Pump / exhaust ``dp`` kPa of mixture out (steam and air in proportion)."""
        p = self._p()
        if p <= 0 or dp <= 0:
            return
        k = max(p - dp, 0.0) / p
        self._p_s *= k
        self._p_air *= k

    def _add_steam(self, dp: float) -> None:
        if dp <= 0:
            return
        self._p_s += dp
        ncg = self.faults.active("steam_ncg")
        if ncg is not None:
            self._p_air += float(ncg.get("fraction", 0.05)) * dp

    def _move_doors(self, h: float) -> None:
        for side, door in self.doors.items():
            if door.state in (DoorState.OPEN, DoorState.SEALED):
                continue
            door.timer += h
            if door.state == DoorState.CLOSING and door.timer >= self.cfg.door_travel_s:
                door.state, door.timer = DoorState.SEALING, 0.0
                if side == "unload" and self._unload_opened:
                    # the released load has been taken out: a new cycle is needed
                    self._unload_released = False
                    self._override = None
                    self._unload_opened = False
            elif door.state == DoorState.SEALING and door.timer >= self.cfg.gasket_pressurise_s:
                door.state, door.timer = DoorState.SEALED, 0.0
            elif door.state == DoorState.UNSEALING and door.timer >= self.cfg.gasket_pressurise_s:
                door.state, door.timer = DoorState.OPENING, 0.0
            elif door.state == DoorState.OPENING and door.timer >= self.cfg.door_travel_s:
                door.state, door.timer = DoorState.OPEN, 0.0
                if side == "unload":
                    self._unload_opened = True
                else:
                    # the non-sterile side opened: whatever was released is no longer sterile
                    self._unload_released = False
                    self._override = None

    def _actuate(
        self, run: AutoclaveRun, phase: AutoclavePhase, h: float, pump: float, steam_ok: bool, stopped: bool
    ) -> bool:
        """Pump / steam / heating actions of the running phase; returns True while heating."""
        cfg = self.cfg
        t_old = self._t_ch
        heating = False
        if phase in (AutoclavePhase.PULSE_VACUUM, AutoclavePhase.LEAK_EVACUATE, AutoclavePhase.DRYING):
            if not stopped:
                target = (
                    run.leak_test.vacuum_kpa
                    if phase == AutoclavePhase.LEAK_EVACUATE
                    else run.drying.vacuum_kpa
                    if phase == AutoclavePhase.DRYING
                    else run.prevacuum.vacuum_kpa
                )
                self._remove(min(pump, self._p() - target))
        elif phase == AutoclavePhase.PULSE_PRESSURE:
            if steam_ok:
                self._add_steam(min(cfg.steam_fill_kpa_s * h, run.prevacuum.pulse_high_kpa - self._p()))
        elif phase in (AutoclavePhase.HEATUP, AutoclavePhase.PLATEAU):
            heating = True
            plateau = run.plateau
            target = plateau.setpoint_c + plateau.band_c / 2.0
            meas = self._ch["chamber_t_c"].read(self._t_ch, self._t, self.faults)
            err = target - meas if math.isfinite(meas) else 0.0
            up = cfg.heat_rate_c_min / 60.0 * h if steam_ok else 0.0
            self._t_ch += min(max(err, -cfg.cool_rate_c_min / 60.0 * h), up)
            if not steam_ok:
                self._t_ch = max(cfg.ambient_temp_c, t_old - cfg.cool_rate_c_min / 60.0 * h)
            p_s_new = p_sat_kpa(self._t_ch)
            if p_s_new >= self._p_s:
                self._add_steam(p_s_new - self._p_s)
            else:
                self._p_s = p_s_new  # condensation
        # LEAK_STABILISE / LEAK_HOLD: everything closed
        return heating

    def _substep(self, h: float) -> None:
        cfg = self.cfg
        self._move_doors(h)
        phase = self._phase
        run = self._run
        prog = run.program if run else None
        stopped = self._stopped()
        steam_ok = "steam_failure" not in self.faults and not stopped
        pump = cfg.pump_rate_kpa_s * h

        self._leak_in(h)  # first, so the pump / valves below end the sub-step on their targets

        # --- actuators by phase (EXHAUST / AIR_BREAK / VENTING act after the thermal update)
        heating = False
        if run is not None and self.cycle_running:
            heating = self._actuate(run, phase, h, pump, steam_ok, stopped)

        # --- chamber thermal state when not actively controlled
        if not heating:
            p_s = self._p_s
            if p_s > IF97_P_MIN_KPA and p_s > p_sat_kpa(self._t_ch):
                self._t_ch = t_sat_c(p_s)  # condensing steam heats the chamber to saturation
            else:
                self._t_ch = max(cfg.ambient_temp_c, self._t_ch - cfg.cool_rate_c_min / 60.0 * h)
                p_sat_now = p_sat_kpa(self._t_ch)
                if self._p_s > p_sat_now:  # cooling condenses steam
                    self._p_s = p_sat_now
        # --- valves that drive the pressure to a target: after the thermal update, so the
        # target is met exactly at the end of the sub-step
        if phase in (AutoclavePhase.EXHAUST, AutoclavePhase.AIR_BREAK, AutoclavePhase.VENTING):
            target = (
                prog.exhaust.target_kpa
                if phase != AutoclavePhase.VENTING and prog is not None and prog.exhaust is not None
                else ATMOSPHERIC_KPA
            )
            p = self._p()
            if p > target:
                self._remove(min(pump, p - target))
            else:
                self._p_air += min(pump, target - p)  # filtered air break
        elif not self.cycle_running:
            # idle chamber vented to atmosphere; an open door exchanges with the room
            if any(
                self.doors[s].state in (DoorState.OPEN, DoorState.OPENING, DoorState.CLOSING) for s in SIDES
            ):
                self._p_s = 0.0
            self._p_air = max(ATMOSPHERIC_KPA - self._p_s, 0.0)

        # --- load / test-pack probe
        tau = cfg.load_probe_time_constant_s
        target_load = self._t_ch
        if (
            prog is not None
            and prog.kind == "bowie_dick"
            and phase in (AutoclavePhase.HEATUP, AutoclavePhase.PLATEAU)
        ):
            # non-condensable gas is swept into the pack and concentrated there
            moved = self._p_air * (1.0 - math.exp(-h / tau))
            self._p_air -= moved
            self._p_air_pack += moved * cfg.chamber_volume_l / self.bd_pack_volume_l
            p_pack_steam = max(self._p() - self._p_air_pack, IF97_P_MIN_KPA)
            target_load = min(self._t_ch, t_sat_c(p_pack_steam))
        else:
            self._p_air_pack = self._p_air
        self._t_load = target_load + (self._t_load - target_load) * math.exp(-h / tau)

        self._t += h
        if run is not None and self.cycle_running:
            self._supervise(run, h)
