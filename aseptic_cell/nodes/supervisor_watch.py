"""The lifecycle manager's watchdog of the supervisor (issue 12: "SUPERVISOR LOST").

The supervisor publishes ``/cell/batch/status`` on every tick (10 Hz). Once the lifecycle
manager has heard it, a silence longer than ``supervisor_timeout_s`` (wall) means the batch
executive is gone (killed, crashed, frozen): no interlock engine above the devices, no record of
what happens next. The watchdog then, at once and independently of the supervisor:

* publishes ``CELL_SUPERVISOR_LOST`` (priority high, ACTIVE) on ``/cell/alarms`` with the text
  "SUPERVISOR LOST: ..." naming the batch and phase it last reported — the HMI and the OPC UA
  cell server show the nodes' alarms while the supervisor's own list is stale;
* sends every managed device node its ``safe_state`` (arm first, then the process units: VHP
  abort with aeration, autoclave abort and vent, isolator safe state); each node latches, and
  nothing moves again without an explicit recovery.

When status messages come again the alarm returns to normal on this topic (RTN: the supervisor
answers again) — the batch does not resume: the restarted supervisor finds the interrupted batch
in its record and holds it until a signed restart (``aseptic_cell/supervisor/interrupted.py``).
A supervisor never heard (a graph without one) is not watched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

ALARM_ID = "CELL_SUPERVISOR_LOST"
STATUS_TOPIC = "/cell/batch/status"
SAFE_ORDER = ("arm", "vhp", "autoclave", "isolator")
"""Stop motion first, then the process units (as the supervisor's own trip does)."""


class SupervisorWatch:
    """Watches ``/cell/batch/status`` for the lifecycle manager (``node``).

    Args:
        node: the lifecycle manager (its ``_publish_alarm``, ``_command_safe_state``, ``nodes``).
        timeout_s: wall seconds of silence after which the supervisor is lost.
        alarm: ``alarm(alarm_id, source, state, message)``.
        make_safe: ``make_safe(node_name, reason)`` sends that node its safe_state.
    """

    def __init__(self, node: Any, timeout_s: float, alarm: Callable[[str, str, str, str], None],
                 make_safe: Callable[[str, str], None]) -> None:
        from cell_interfaces.msg import BatchStatus

        self.timeout_s = float(timeout_s)
        self._alarm = alarm
        self._make_safe = make_safe
        self._names: list[str] = list(getattr(node, "order", []))
        self.last_heard: float | None = None
        self.lost_at: float | None = None
        self.last: dict[str, str] = {}
        self.losses = 0
        node.create_subscription(BatchStatus, STATUS_TOPIC, self._on_status, 10)

    def _on_status(self, msg: Any) -> None:
        self.last_heard = time.monotonic()
        self.last = {"batch_id": str(msg.batch_id), "state": str(msg.state), "phase": str(msg.phase)}
        if self.lost_at is not None:
            self.lost_at = None
            self._alarm(ALARM_ID, "supervisor", "RTN",
                        "supervisor answering again; an interrupted batch stays Held until a signed restart")

    def rearm(self, now: float) -> None:
        """After the manager's own stall: the supervisor gets a fresh timeout from ``now``."""
        if self.last_heard is not None and self.lost_at is None:
            self.last_heard = max(self.last_heard, now)

    def check(self, now: float | None = None) -> bool:
        """Called on the manager's 20 Hz tick; True when the supervisor was found lost now."""
        now = time.monotonic() if now is None else now
        if self.last_heard is None or self.lost_at is not None or now - self.last_heard <= self.timeout_s:
            return False
        self.lost_at = now
        self.losses += 1
        batch = self.last.get("batch_id") or "none"
        where = f"batch {batch} {self.last.get('state', '?')}" + (
            f" in phase {self.last['phase']}" if self.last.get("phase") else "")
        why = (f"SUPERVISOR LOST: no {STATUS_TOPIC} for {now - self.last_heard:.1f} s "
               f"(timeout {self.timeout_s:g} s; {where}); every device sent to its safe state")
        self._alarm(ALARM_ID, "supervisor", "ACTIVE", why)
        for name in SAFE_ORDER + tuple(n for n in self._names if n not in SAFE_ORDER):
            if name in self._names:
                self._make_safe(name, why)
        return True

    def status(self) -> dict[str, Any]:
        age = None if self.last_heard is None else round(time.monotonic() - self.last_heard, 2)
        return {"heard": self.last_heard is not None, "lost": self.lost_at is not None, "silent_s": age,
                "losses": self.losses, "last": dict(self.last)}
