"""The isolator's pass-through hatch: doors A (room side) / B (isolator side) with
inflatable seals, door travel and the dwell between the doors (IL-01).

Part of :class:`~.isolator.IsolatorModel` (a mixin).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..devices.codes import RefusalCode
from .common import CommandRefused, FaultHooks, InvalidCommand

if TYPE_CHECKING:
    from .isolator_pressure import LeakTestState


HATCH_DOORS = ("A", "B")
_ETERNITY = math.inf


def other_door(door: str) -> str:
    return "B" if door == "A" else "A"


@dataclass
class HatchDoor:
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


class IsolatorHatch:
    """The pass-through hatch: doors A (room) / B (isolator), seals, travel and dwell (IL-01)."""

    _doors: dict[str, HatchDoor]
    _hatch_decontaminated: bool
    _hatch_cycle: dict[str, Any] | None
    _hatch_runs: int
    hatch_decon_records: list[dict[str, Any]]
    _leak: LeakTestState
    _seal_lost: dict[str, bool]
    _t: float
    cfg: Any
    faults: FaultHooks

    if TYPE_CHECKING:

        def _check_breaches(self) -> None: ...

        def _door_event(self, what: str, t: float, at_end_of: float = 0.0) -> None: ...

        def _dp_in_band(self) -> bool: ...

        def _dp_measured(self) -> float: ...

    def _door(self, door: str) -> HatchDoor:
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
        other = self._doors[other_door(door)]
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
                f"{hid}: chamber not decontaminated since door A was last opened ([QB-PB])",
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

    # ------------------------------------------------------------------ chamber decontamination
    def _require_sealed(self, what: str) -> None:
        for d in self._doors.values():
            if not (d.closed and d.seal_inflated):
                raise CommandRefused(
                    RefusalCode.HATCH_NOT_SEALED,
                    f"{self.cfg.hatch.id}: {what} needs door {d.name} closed and sealed")

    def start_hatch_decon(self, user: str = "") -> dict[str, Any]:
        """Start the hatch chamber's decontamination cycle (both doors closed and sealed; it runs
        ``hatch.decon_cycle_s``; a door seal lost during it fails it). Its record
        (:attr:`hatch_decon_records`) is the only automatic way to a decontaminated chamber [QB-PB].

        Returns ``{"run_id": ...}``.
        """
        hid = self.cfg.hatch.id
        if self._hatch_cycle is not None:
            raise CommandRefused(RefusalCode.HATCH_DECON_RUNNING, f"{hid}: a chamber cycle is already running")
        self._require_sealed("a chamber decontamination cycle")
        self._hatch_runs += 1
        self._hatch_decontaminated = False
        self._hatch_cycle = {"run_id": f"{hid}-DC-{self._hatch_runs:04d}", "method": "cycle", "user": user,
                             "t_start": self._t, "t_end": None, "result": None, "reason": ""}
        return {"run_id": self._hatch_cycle["run_id"]}

    def record_hatch_wipe_down(self, user: str = "", reason: str = "") -> dict[str, Any]:
        """A manual sporicidal wipe-down of the chamber, recorded; only where the site allows it
        (``hatch.manual_wipe_down_allowed``; the supervisor also needs its own signed permission)."""
        hid = self.cfg.hatch.id
        if not getattr(self.cfg.hatch, "manual_wipe_down_allowed", False):
            raise CommandRefused(RefusalCode.HATCH_WIPE_DOWN_NOT_ALLOWED,
                                 f"{hid}: this site does not allow a manual wipe-down (cell.yaml hatch)")
        if not user or not reason:
            raise InvalidCommand("a wipe-down record needs the user and what was done (agent, lot, contact time)")
        if self._hatch_cycle is not None:
            raise CommandRefused(RefusalCode.HATCH_DECON_RUNNING, f"{hid}: a chamber cycle is running")
        self._require_sealed("a wipe-down record")
        self._hatch_runs += 1
        rec = {"run_id": f"{hid}-WD-{self._hatch_runs:04d}", "method": "manual_wipe_down", "user": user,
               "t_start": self._t, "t_end": self._t, "result": "PASS", "reason": reason}
        self.hatch_decon_records.append(rec)
        self._hatch_decontaminated = True
        return {"run_id": rec["run_id"]}

    def mark_hatch_decontaminated(self) -> None:
        """Test helper of the model only (not a catalogue command): the chamber as at the end of a
        passing cycle."""
        self._require_sealed("decontamination")
        self._hatch_decontaminated = True

    def _advance_hatch_decon(self, t1: float) -> None:
        c = self._hatch_cycle
        if c is None:
            return
        hc = self.cfg.hatch
        broken = [d.name for d in self._doors.values() if not (d.closed and d.seal_inflated)]
        done = t1 - c["t_start"] >= float(getattr(hc, "decon_cycle_s", 600.0))
        if not broken and not done:
            return
        c["t_end"] = t1
        c["result"] = "FAIL" if broken else "PASS"
        c["reason"] = f"door {', '.join(broken)} not closed and sealed during the cycle" if broken else ""
        self.hatch_decon_records.append(c)
        self._hatch_cycle = None
        self._hatch_decontaminated = not broken

    def hatch_decon_sensors(self) -> dict[str, Any]:
        last = self.hatch_decon_records[-1] if self.hatch_decon_records else None
        return {"hatch.decon_running": self._hatch_cycle is not None,
                "hatch.decon_last_result": last["result"] if last else "NONE",
                "hatch.decon_last_run_id": last["run_id"] if last else "",
                "hatch.decon_last_method": last["method"] if last else ""}

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

    def _advance_door(self, d: HatchDoor, t0: float, h: float) -> None:
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
        other = self._doors[other_door(door)]
        return max(0.0, self.cfg.hatch.dwell_s - (self._t - other.closed_at))
