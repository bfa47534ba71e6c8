"""HMI login sessions: in-memory, with an idle time-out and a per-session CSRF token.

The idle time-out is ``hmi.yaml`` ``session_idle_timeout_s`` (default 900 s = 15 min [M]):
a session unused that long is gone, so any further request - a signed action too - answers
401 SESSION_EXPIRED and needs a new log-in (21 CFR 11.10(d), Annex 11 §12.1; the e-signature's
own re-authentication, §11.200, is unchanged and comes on top).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import HmiError


@dataclass
class Session:
    token: str
    user: str
    full_name: str
    role: str
    csrf: str
    created: float
    last_seen: float
    meta: dict[str, Any] = field(default_factory=dict)


class Sessions:
    """In-memory sessions with an idle time-out (a restart logs everybody out)."""

    def __init__(self, idle_timeout_s: float, max_sessions: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock  # injectable: tests move it past the time-out instead of sleeping
        self.idle_timeout_s = idle_timeout_s
        self.max_sessions = max_sessions
        self._lock = threading.Lock()
        self._by_token: dict[str, Session] = {}

    def create(self, user: str, full_name: str, role: str) -> Session:
        now = self.clock()
        with self._lock:
            self._expire(now)
            if len(self._by_token) >= self.max_sessions:
                raise HmiError(
                    "TOO_MANY_SESSIONS", f"{self.max_sessions} sessions open; log out elsewhere first"
                )
            s = Session(secrets.token_urlsafe(32), user, full_name, role, secrets.token_urlsafe(32), now, now)
            self._by_token[s.token] = s
            return s

    def _expire(self, now: float) -> None:
        for tok in [t for t, s in self._by_token.items() if now - s.last_seen > self.idle_timeout_s]:
            del self._by_token[tok]

    def get(self, token: str | None, *, touch: bool = True) -> Session:
        """The live session of ``token``.

        Raises:
            HmiError: NOT_AUTHENTICATED (no/unknown cookie) or SESSION_EXPIRED (idle too long).
        """
        if not token:
            raise HmiError("NOT_AUTHENTICATED", "no session: log in first")
        now = self.clock()
        with self._lock:
            s = self._by_token.get(token)
            if s is None:
                raise HmiError("NOT_AUTHENTICATED", "unknown or ended session: log in again")
            if now - s.last_seen > self.idle_timeout_s:
                del self._by_token[token]
                raise HmiError("SESSION_EXPIRED", f"session idle for more than {self.idle_timeout_s:.0f} s")
            if touch:
                s.last_seen = now
            return s

    def drop(self, token: str | None) -> None:
        with self._lock:
            self._by_token.pop(token or "", None)
