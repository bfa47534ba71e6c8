"""The isolator's pressure: ΔP to the room under fan control and the enclosure leak test.

Part of :class:`~.isolator.IsolatorModel` (a mixin; the model composes it with the hatch,
RTPs, glove ports and particle counter). Model assumptions in :mod:`.isolator`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..devices.codes import RefusalCode
from .common import CommandRefused, DeconStatus, FaultHooks, SensorChannel

P_ATM_PA = 101_325.0
"""Standard atmospheric pressure (ISO 2533 standard atmosphere)."""

DEFAULT_LEAK_FAULT_RATE_PER_H = 5.0
"""Extra hourly leak rate of a ``leak`` fault injected without parameters: a gross leak
(torn gasket; lambda = 0.56 /s at 250 Pa) that pulls ΔP to about 15 Pa, below any sensible
alarm_low. Fault-injection convenience, not a process value."""


@dataclass
class LeakTestState:
    running: bool = False
    p_pa: float = 0.0
    started_at: float = 0.0
    record: dict[str, Any] | None = None
    valid: bool = False  # last result PASS and no breach since


@dataclass
class DpAlarmState:
    out_since: float | None = None  # time ΔP (measured) left the band
    kind: str = ""  # "", "low", "high"
    active: bool = False


class IsolatorPressure:
    """ΔP to the room (fan loop, enclosure leak, door dips, alarm) and the enclosure leak test."""

    _alarm: DpAlarmState
    _decon_status: DeconStatus
    _dip: float
    _dp_base: float
    _dp_channel: SensorChannel
    _leak: LeakTestState
    _t: float
    cfg: Any
    clock: Any
    events: list[dict[str, Any]]
    faults: FaultHooks

    if TYPE_CHECKING:

        def breaches(self) -> list[str]: ...

    def _leak_lambda(self) -> float:
        """Decay rate constant (1/s) of the gauge pressure through the enclosure leak."""
        rate = self.cfg.pressure.leak_rate_per_h
        f = self.faults.active("leak")
        if f is not None:
            if "factor" not in f and "rate_per_h" not in f:
                rate += DEFAULT_LEAK_FAULT_RATE_PER_H
            else:
                rate = rate * float(f.get("factor", 1.0)) + float(f.get("rate_per_h", 0.0))
        return rate * P_ATM_PA / (3600.0 * self.cfg.leak_test.test_pressure_pa)

    def _update_dp_alarm(self) -> None:
        p = self.cfg.pressure
        a = self._alarm
        if self._leak.running:  # test mode: the monitoring band does not apply
            a.out_since, a.kind, a.active = None, "", False
            return
        dp = self._dp_channel.read(self.dp_pa(), self._t, self.faults)
        if p.alarm_low_pa <= dp <= p.alarm_high_pa:
            a.out_since, a.kind, a.active = None, "", False
            return
        kind = "high" if dp > p.alarm_high_pa else "low"  # NaN counts as low (fail safe)
        if a.out_since is None or kind != a.kind:
            a.out_since, a.kind = self._t, kind
        a.active = self._t - a.out_since > p.alarm_delay_s - 1e-9

    def _dp_measured(self) -> float:
        return self._dp_channel.read(self.dp_pa(), self._t, self.faults)

    def _dp_in_band(self) -> bool:
        p = self.cfg.pressure
        dp = self._dp_measured()
        return p.alarm_low_pa <= dp <= p.alarm_high_pa

    def dp_pa(self) -> float:
        """True ΔP to the room (Pa)."""
        return self._dp_base - self._dip

    def start_leak_test(self) -> None:
        """Start the enclosure pressure-hold test (the VHP pre-check; pressure decay,
        ISO 10648-2 [ISO10648-2]). Idempotent.

        Raises:
            CommandRefused: the enclosure is not sealed (LEAK_TEST_NOT_SEALED) or a VHP
                cycle is running (DECON_CYCLE_ACTIVE).
        """
        if self._leak.running:
            return
        b = self.breaches()
        if b:
            raise CommandRefused(RefusalCode.LEAK_TEST_NOT_SEALED, "enclosure not sealed: " + "; ".join(b))
        if self._decon_status in (DeconStatus.CYCLE_RUNNING, DeconStatus.AERATING):
            raise CommandRefused(
                RefusalCode.DECON_CYCLE_ACTIVE, f"decon status is {self._decon_status.value}"
            )
        lt = self.cfg.leak_test
        self._leak.running = True
        self._leak.valid = False
        self._leak.p_pa = lt.test_pressure_pa
        self._leak.started_at = self._t
        self._dp_base = lt.test_pressure_pa
        self._dip = 0.0

    def leak_test_record(self) -> dict[str, Any] | None:
        return None if self._leak.record is None else dict(self._leak.record)

    def _finish_leak_test(self, aborted_by: str = "") -> None:
        lt = self.cfg.leak_test
        decay = lt.test_pressure_pa - self._leak.p_pa
        if aborted_by:
            result = "FAIL"
        else:
            result = "PASS" if decay <= lt.max_decay_pa else "FAIL"
        now = self.clock.now()
        self._leak.record = {
            "test_pressure_pa": lt.test_pressure_pa,
            "hold_s": self._t - self._leak.started_at,
            "p_end_pa": self._leak.p_pa,
            "decay_pa": decay,
            "limit_pa": lt.max_decay_pa,
            "result": result,
            "aborted_by": aborted_by,
            "timestamp": now,
        }
        self._leak.running = False
        self._leak.valid = result == "PASS"
        self._dp_base = self._leak.p_pa  # vent back to the set point under fan control
        self.events.append({"t": now, "event": f"leak test {result}", "decay_pa": decay})

    def leak_test_passed(self) -> bool:
        """True only after a PASS of the enclosure leak test with no breach since."""
        return self._leak.valid and not self._leak.running
