"""The isolator's rapid transfer ports: alpha door, beta container docking and locking
(IL-02: the alpha door opens only with a docked, locked beta; IL-03: the beta stays locked
while the alpha door is open).

Part of :class:`~.isolator.IsolatorModel` (a mixin).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..devices.codes import RefusalCode
from .common import CommandRefused, FaultHooks, InvalidCommand

if TYPE_CHECKING:
    from .isolator_pressure import LeakTestState



@dataclass
class RTPState:
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


class IsolatorRTPs:
    """Rapid transfer ports: alpha door, beta docking and locking (IL-02, IL-03)."""

    _leak: LeakTestState
    _rtp_ids: list[str]
    _rtps: dict[str, RTPState]
    _t: float
    faults: FaultHooks

    if TYPE_CHECKING:

        def _check_breaches(self) -> None: ...

        def _door_event(self, what: str, t: float, at_end_of: float = 0.0) -> None: ...

    def _rtp(self, rtp: str) -> RTPState:
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
                "(beta contents are pre-sterilised [MC-RTP] [M])",
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

    def _advance_rtp(self, r: RTPState, t0: float, h: float) -> None:
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
