"""The supervisor's periodic time-synchronisation hook (issue 15 item 8): ``CELL_TIME_SYNC``
raised while the clock's offset from the configured time source exceeds the limit, or the
source does not answer / is not configured; returned to normal when a check is good again.
Every change of state (and the first check) is recorded as a kind ``clock`` entry with the
offset [ECA-TS].

Use (supervisor node, every tick; the SNTP exchange runs on a worker thread, never in the tick)::

    monitor = TimeSyncMonitor(load_time_sync_settings(config_dir))
    ...
    monitor.poll(supervisor)          # each tick: applies a finished check, starts one when due

``check_now(supervisor)`` does one check synchronously (tests, start-up).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ..timesync import TimeSyncSettings, TimeSyncStatus, check_time_sync

ALARM_ID = "CELL_TIME_SYNC"


class TimeSyncMonitor:
    def __init__(self, settings: TimeSyncSettings, *, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._wall = wall
        self._mono = monotonic
        self._next = 0.0
        self._worker: threading.Thread | None = None
        self._result: TimeSyncStatus | None = None
        self._lock = threading.Lock()
        self.last: TimeSyncStatus | None = None
        self.raised = False

    # ------------------------------------------------------------------ periodic
    def poll(self, sup: Any) -> TimeSyncStatus | None:
        """Apply a finished check (alarm, record) and start the next one when ``interval_s`` has
        passed. Non-blocking; returns the status applied now, if any."""
        with self._lock:
            done, self._result = self._result, None
        applied = self.apply(sup, done) if done is not None else None
        if self._worker is None or not self._worker.is_alive():
            now = self._mono()
            if now >= self._next:
                self._next = now + self.settings.interval_s
                self._worker = threading.Thread(target=self._run, name="time-sync-check", daemon=True)
                self._worker.start()
        return applied

    def _run(self) -> None:
        status = check_time_sync(self.settings, clock=self._wall)
        with self._lock:
            self._result = status

    # ------------------------------------------------------------------ synchronous
    def check_now(self, sup: Any) -> TimeSyncStatus:
        return self.apply(sup, check_time_sync(self.settings, clock=self._wall))

    def apply(self, sup: Any, status: TimeSyncStatus) -> TimeSyncStatus:
        """Raise / return to normal ``CELL_TIME_SYNC`` and record a change of state."""
        changed = self.last is None or self.last.state != status.state
        if status.alarm and not self.raised:
            sup.process_alarms.raise_("CELL_TIME_SYNC", status.message)
            self.raised = True
        elif not status.alarm and self.raised:
            sup.alarms.clear(ALARM_ID)
            self.raised = False
        if changed:
            sup.journal.audit("clock", "system", f"clock.sync_{status.state.lower()}", status.message,
                              status.to_payload())
        self.last = status
        return status
