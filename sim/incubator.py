"""Multi-slot CO2 incubator: deterministic process model (issue 14 item 1).

Climate: temperature, CO2 and RH of the one chamber (a shared-chamber incubator: a door
opening disturbs every slot, INC-01). With the door closed each value returns to its set point
as a first-order lag whose time constant is the configured 95 % recovery time / 3 (a first
order settles to 95 % in 3 time constants); with the door open each relaxes towards the
isolator air with its own door-open time constant. The recovery times are the addendum's
(RH 8-10 min after a 30-s opening [BAKER-RH]; T and CO2 10 min planning defaults [M]).

Slots: each free, or assigned to one batch and its COI (COI-20); the controller refuses a
container of another COI, a release of an occupied slot, a load into an unassigned slot — the
same codes as the device layer's hard interlock (defence in depth). Every load/unload is one
door access of ``door_access_s`` (the door-event counter counts them).

Faults: ``heater_failure`` (T falls towards the isolator air), ``heater_runaway`` (T rises until
the independent over-temperature cut-out trips and cuts the heater; the cut-out stays latched),
``co2_supply_failure``, ``humidifier_failure``, ``door_stuck_open`` (the door does not close after
an access), ``slot_register_lost`` (the controller lost its slot register: every slot command is
refused, the slots report unknown), and the sensor faults ``sensor:<key>``.
"""

from __future__ import annotations

import math
from typing import Any

from ..devices.incubator.config import IncubatorConfig
from .clock import Clock
from .common import CommandRefused, FaultHooks, InvalidCommand, SensorChannel, first_order, read_sensors

KNOWN_FAULTS = {"heater_failure", "heater_runaway", "co2_supply_failure", "humidifier_failure", "door_stuck_open",
                "slot_register_lost"}
RUNAWAY_TARGET_C = 45.0  # where a stuck-on heater would drive the chamber (engineering, model only)
RUNAWAY_TAU_S = 1800.0
SUBSTEP_MAX_S = 1.0
"""Default bound of the integration sub-step (s; numerical choice). The climate's first-order
updates are exact for any step and a step is split at the door's closing time, so a caller may
raise the bound on an instance (``substep_max_s``) without changing the trajectory; only the
over-temperature cut-out of the ``heater_runaway`` fault is resolved to this grid."""


class IncubatorModel:
    def __init__(self, cfg: IncubatorConfig, clock: Clock, substep_max_s: float = SUBSTEP_MAX_S) -> None:
        if not (math.isfinite(substep_max_s) and substep_max_s > 0):
            raise ValueError(f"substep_max_s must be finite and > 0, got {substep_max_s!r}")
        self.cfg = cfg
        self.clock = clock
        self.substep_max_s = float(substep_max_s)
        self.faults = FaultHooks(KNOWN_FAULTS)
        self.temp_c = cfg.temp_setpoint_c
        self.co2_pct = cfg.co2_setpoint_pct
        self.rh_pct = cfg.rh_setpoint_pct
        self.door_open = False
        self._door_close_at = -math.inf
        self._door_opened_at = -math.inf
        self.door_events = 0
        self.overtemp_cutout = False
        self.slots: list[dict[str, str]] = [{"batch_id": "", "coi": "", "container_id": ""}
                                            for _ in range(cfg.slots)]
        self.events: list[dict[str, Any]] = []
        """door events (INC-01): start, end, slot, batch — every occupied slot's batch is listed"""
        self._channels: dict[str, SensorChannel] = {}
        self._held: dict[str, Any] = {}

    # ------------------------------------------------------------------ time
    def step(self, dt: float) -> None:
        """Advance by ``dt`` (the clock already advanced), in sub-steps of at most
        ``substep_max_s``, split at the door's closing time so it is seen at its time."""
        if not dt > 0:
            return
        t, end = self.clock.now() - dt, self.clock.now()
        while t < end - 1e-12:
            h = min(self.substep_max_s, end - t)
            if self.door_open and t < self._door_close_at < t + h and "door_stuck_open" not in self.faults:
                h = self._door_close_at - t
            t += h
            self._substep(h, t)

    def next_event(self) -> float:
        """Sim time of this model's next change a supervisor acts on, as far as the model can tell
        (``math.inf``: none foreseen): the door closing after an access; with the door closed, no
        fault and the climate out of its alarm limits, the time T, CO2 and RH are all back inside
        them on their first-order recovery (``incubator.in_spec`` true again), or, if sooner, 1 s
        past the alarm on-delay (``alarm_delay_s``, the on-delay of every incubator climate alarm)
        from now, so a watcher sees an excursion outlast its delay. With a fault injected the
        model does not predict (the current time: step it finely)."""
        now = self.clock.now()
        if self.faults.names():
            return now
        if self.door_open:
            return max(now, self._door_close_at)
        c = self.cfg
        back = -math.inf
        for x, sp, lo, hi, tau in (
                (self.temp_c, c.temp_setpoint_c, c.temp_alarm_low_c, c.temp_alarm_high_c, c.temp_recovery_s / 3.0),
                (self.co2_pct, c.co2_setpoint_pct, c.co2_alarm_low_pct, c.co2_alarm_high_pct, c.co2_recovery_s / 3.0),
                (self.rh_pct, c.rh_setpoint_pct, c.rh_alarm_low_pct, math.inf, c.rh_recovery_s / 3.0)):
            limit = lo if x < lo else hi if x > hi else None
            if limit is not None:
                # x(t) = sp + (x - sp) exp(-t / tau) reaches the limit after tau ln((x - sp) / (limit - sp))
                back = max(back, now + tau * math.log((x - sp) / (limit - sp)))
        if back == -math.inf:
            return math.inf
        return min(back, now + c.alarm_delay_s + 1.0)

    def _substep(self, dt: float, now: float) -> None:
        c = self.cfg
        if self.door_open:  # open over this substep (``step`` ends a substep at the closing time)
            self.temp_c = first_order(self.temp_c, c.ambient_temp_c, c.temp_open_tau_s, dt)
            self.co2_pct = first_order(self.co2_pct, c.ambient_co2_pct, c.co2_open_tau_s, dt)
            self.rh_pct = first_order(self.rh_pct, c.ambient_rh_pct, c.rh_open_tau_s, dt)
        else:
            if self.overtemp_cutout or "heater_failure" in self.faults:
                self.temp_c = first_order(self.temp_c, c.ambient_temp_c, c.heater_loss_tau_s, dt)
            elif "heater_runaway" in self.faults:
                self.temp_c = first_order(self.temp_c, RUNAWAY_TARGET_C, RUNAWAY_TAU_S, dt)
            else:
                self.temp_c = first_order(self.temp_c, c.temp_setpoint_c, c.temp_recovery_s / 3.0, dt)
            co2_target = c.ambient_co2_pct if "co2_supply_failure" in self.faults else c.co2_setpoint_pct
            co2_tau = c.heater_loss_tau_s if "co2_supply_failure" in self.faults else c.co2_recovery_s / 3.0
            self.co2_pct = first_order(self.co2_pct, co2_target, co2_tau, dt)
            rh_target = c.ambient_rh_pct if "humidifier_failure" in self.faults else c.rh_setpoint_pct
            rh_tau = c.heater_loss_tau_s if "humidifier_failure" in self.faults else c.rh_recovery_s / 3.0
            self.rh_pct = first_order(self.rh_pct, rh_target, rh_tau, dt)
        if self.temp_c >= c.overtemp_cutout_c and "heater_runaway" in self.faults:
            self.overtemp_cutout = True  # independent cut-out: latched until the unit is serviced
        if self.door_open and now >= self._door_close_at - 1e-9 and "door_stuck_open" not in self.faults:
            self.door_open = False
            if self.events:
                self.events[-1]["end"] = now

    # ------------------------------------------------------------------ observation
    def sensors(self) -> dict[str, Any]:
        raw: dict[str, Any] = {"temp_c": self.temp_c, "co2_pct": self.co2_pct, "rh_pct": self.rh_pct,
                               "door_open": self.door_open, "overtemp_cutout": self.overtemp_cutout,
                               "door_events": float(self.door_events)}
        lost = "slot_register_lost" in self.faults
        for i, s in enumerate(self.slots, start=1):
            for k in ("batch_id", "coi", "container_id"):
                raw[f"slot.{i}.{k}"] = None if lost else s[k]
        if not any(f.startswith("sensor:") for f in self.faults.names()):  # fast path: no sensor fault
            self._channels.clear()
            self._held.clear()
            return raw
        return read_sensors(raw, self.clock.now(), self.faults, self._channels, self._held)

    def status(self) -> dict[str, Any]:
        return {"faults": self.faults.names(), "door_open_since": (self._door_opened_at if self.door_open else None),
                "slots": self.cfg.slots}

    # ------------------------------------------------------------------ commands
    def _slot(self, slot: float) -> dict[str, str]:
        n = int(slot) if isinstance(slot, (int, float)) and math.isfinite(slot) and float(slot) == int(slot) else 0
        if not 1 <= n <= self.cfg.slots:
            raise CommandRefused("INC_SLOT_INVALID", f"slot must be a whole number 1..{self.cfg.slots}, got {slot!r}")
        if "slot_register_lost" in self.faults:
            raise CommandRefused("INC_SLOT_UNKNOWN", "the controller lost its slot register: slot commands refused "
                                                     "until the register is restored")
        return self.slots[n - 1]

    def _access(self, slot: int, what: str, container_id: str) -> int:
        now = self.clock.now()
        if not self.door_open:
            self._door_opened_at = now
        self.door_open = True
        self._door_close_at = max(self._door_close_at, now + self.cfg.door_access_s)
        self.door_events += 1
        self.events.append({"start": now, "end": None, "slot": slot, "action": what, "container_id": container_id,
                            "batches": sorted({s["batch_id"] for s in self.slots if s["container_id"]})})
        return self.door_events

    def assign_slot(self, slot: float, batch_id: str, coi: str) -> dict[str, Any]:
        s = self._slot(slot)
        if s["coi"] and (s["coi"] != coi or s["batch_id"] != batch_id):
            raise CommandRefused("INC_SLOT_ASSIGNED", f"slot {int(slot)} is assigned to batch {s['batch_id']} "
                                                      f"(COI {s['coi']})")
        s["batch_id"], s["coi"] = batch_id, coi
        return {"slot": int(slot)}

    def release_slot(self, slot: float) -> dict[str, Any]:
        s = self._slot(slot)
        if s["container_id"]:
            raise CommandRefused("INC_SLOT_OCCUPIED", f"slot {int(slot)} still holds container {s['container_id']}")
        s["batch_id"] = s["coi"] = ""
        return {"slot": int(slot)}

    def load(self, slot: float, container_id: str, coi: str) -> dict[str, Any]:
        s = self._slot(slot)
        if not s["coi"]:
            raise CommandRefused("INC_SLOT_NOT_ASSIGNED", f"slot {int(slot)} is not assigned to a batch")
        if s["coi"] != coi:
            raise CommandRefused("INC_COI_MISMATCH", f"slot {int(slot)} belongs to COI {s['coi']}; container "
                                                     f"{container_id} is of COI {coi} (COI-20)")
        if s["container_id"] == container_id:
            return {"slot": int(slot), "door_event": None}  # already there: idempotent, no door access
        if s["container_id"]:
            raise CommandRefused("INC_SLOT_OCCUPIED", f"slot {int(slot)} already holds container {s['container_id']}")
        for i, other in enumerate(self.slots, start=1):
            if other["container_id"] == container_id:
                raise InvalidCommand(f"container {container_id} is already in slot {i}")
        s["container_id"] = container_id
        return {"slot": int(slot), "door_event": self._access(int(slot), "load", container_id)}

    def unload(self, slot: float, container_id: str) -> dict[str, Any]:
        s = self._slot(slot)
        if s["container_id"] != container_id:
            raise CommandRefused("INC_CONTAINER_NOT_IN_SLOT", f"slot {int(slot)} holds "
                                 f"{s['container_id'] or 'nothing'}, not {container_id}")
        event = self._access(int(slot), "unload", container_id)
        s["container_id"] = ""
        return {"slot": int(slot), "door_event": event}

    def safe_state(self, reason: str = "") -> dict[str, Any]:
        """Close the door if it can; climate control runs on (incubation continues)."""
        if self.door_open and "door_stuck_open" not in self.faults:
            self._door_close_at = self.clock.now()
            self._substep(0.0, self.clock.now())
        return {}

    def execute(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        if name not in ("assign_slot", "release_slot", "load", "unload", "safe_state"):
            raise InvalidCommand(f"unknown incubator command {name!r}")
        out: dict[str, Any] = getattr(self, name)(**args)
        return out
