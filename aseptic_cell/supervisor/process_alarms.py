"""Process alarms the supervisor raises from the device signals (ISA-18.2 [ISA18.2]):
isolator pressure, particle sample flow, H2O2 above the release limit, robot protective
stop, and the loss of communication with a device.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from ..config import CellConfig
from ..interlocks import SignalTable

log = logging.getLogger(__name__)


class ProcessAlarms:
    """Raises and returns to normal the supervisor's process alarms.

    Args:
        cfg: the cell configuration (thresholds, alarm ids from the device ids).
        alarms: the :class:`~aseptic_cell.alarms.AlarmManager`.
        signal: the supervisor's signal reader (None = unknown or stale).
        audit: the journal's audit function (comm loss is recorded).
    """

    def __init__(self, cfg: CellConfig, alarms: Any, signal: Callable[[str], Any],
                 audit: Callable[[str, str, str, str, Mapping[str, Any]], None]) -> None:
        self.cfg = cfg
        self.alarms = alarms
        self.signal = signal
        self.audit = audit
        self.active: set[str] = set()
        """Process alarms raised and not yet returned to normal."""
        self.comm_lost: set[str] = set()
        """Device nodes whose communication is lost."""

    def raise_(self, alarm_id: str, message: str) -> None:
        try:
            self.alarms.raise_(alarm_id, message=message[:500])
        except Exception as exc:  # noqa: BLE001 - an unknown id must not stop supervision
            log.error("alarm %s: %r", alarm_id, exc)

    def watch_comm(self, node_devices: Mapping[str, str], signals: SignalTable) -> None:
        """COMM_LOSS alarm per device whose signals the port marked lost; cleared when back."""
        for node, dev in node_devices.items():
            lost = signals.comm_lost(dev)
            if lost and node not in self.comm_lost:
                self.comm_lost.add(node)
                self.raise_(f"{dev}_COMM_LOSS", f"communication with {dev} lost")
                self.audit("alarm", "system", f"{dev}.comm_lost", "communication lost", {})
            elif not lost and node in self.comm_lost:
                self.comm_lost.discard(node)
                try:
                    self.alarms.clear(f"{dev}_COMM_LOSS")
                except Exception as exc:  # noqa: BLE001 - not defined in this site's alarms.yaml
                    log.warning("clear %s_COMM_LOSS: %r", dev, exc)

    def evaluate(self) -> None:
        """Evaluated every tick: raised when the condition appears, cleared (return to normal)
        when it goes. An unknown signal does not clear an active alarm (unknown is not normal)."""
        lay = self.cfg.layout
        iso, arm = lay.isolator.id, lay.robot.id
        p = lay.isolator.pressure
        release = float(self.cfg.interlocks.parameters.get("h2o2_release_ppm", 1.0))
        dp = self.signal("isolator.dp_pa")
        ppm = self.signal("vhp.h2o2_ppm")
        active_cycle = self.signal("vhp.cycle_active")
        flow_ok = self.signal("isolator.particles.sample_flow_ok")
        pstop = self.signal("arm.protective_stop")
        conditions = {
            # (condition: True raise / False clear / None unknown, message)
            f"{iso}_DP_LOW": (None if dp is None else dp < p.alarm_low_pa,
                              f"isolator dP {dp} Pa below {p.alarm_low_pa} Pa"),
            f"{iso}_DP_HIGH": (None if dp is None else dp > p.alarm_high_pa,
                               f"isolator dP {dp} Pa above {p.alarm_high_pa} Pa"),
            f"{iso}_PART_SAMPLE_FLOW": (None if flow_ok is None else not flow_ok, "particle counter sample flow low"),
            f"{iso}_H2O2_ABOVE_RELEASE": (None if ppm is None or active_cycle is None else
                                          (ppm >= release and not active_cycle),
                                          f"H2O2 {ppm} ppm at or above the release limit {release} ppm"),
            f"{arm}_PROTECTIVE_STOP": (None if pstop is None else bool(pstop), "robot protective stop"),
        }
        for aid, (cond, message) in conditions.items():
            try:
                if cond and aid not in self.active:
                    self.alarms.raise_(aid, message=message)
                    self.active.add(aid)
                elif cond is False and aid in self.active:
                    self.alarms.clear(aid)
                    self.active.discard(aid)
            except KeyError:  # not defined in this site's alarms.yaml
                continue
            except Exception as exc:  # noqa: BLE001 - alarm handling must never stop supervision
                log.error("process alarm %s: %r", aid, exc)
