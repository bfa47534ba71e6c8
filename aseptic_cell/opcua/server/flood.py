"""Connection-flood guard of the cell OPC UA server (issue 12 item 6).

asyncua 2.1.0 accepts connections until ``max_connections`` and closes a connection that has not
activated a session after ``max_pending_activation_seconds``. Idle sockets reopened as fast as the
watchdog closes them therefore keep every slot busy and no new client gets in. The guard replaces
that admission rule:

* **Stages.** Each connection is ranked by how far it got: 0 nothing, 1 Hello received,
  2 secure channel open (Basic256Sha256/SignAndEncrypt with a trusted certificate), 3 session
  created, 4 session activated (authenticated).
* **Slots kept for authenticated sessions.** At most ``max_unauthenticated`` connections may be
  below stage 4 at once; the other ``max_connections - max_unauthenticated`` slots can only be held
  by authenticated sessions. An authenticated connection is never evicted.
* **Per-address limit.** At most ``max_unauthenticated_per_address`` unauthenticated connections
  from one IP address.
* **Eviction, not refusal.** When a limit is reached, the new connection is admitted and the
  unauthenticated connection that made the least progress (lowest stage; then the address holding
  most pending connections; then the oldest) is closed. An idle flood therefore only displaces
  itself: a real client sends Hello at once and reaches stage 2 within milliseconds, which a socket
  without a trusted certificate never can. Only if every slot is authenticated is a new connection
  refused.
* **Handshake deadlines.** Hello within ``hello_timeout_s`` of connecting, a secure channel within
  ``secure_channel_timeout_s``, an activated session within ``activation_timeout_s`` — and again
  within ``activation_timeout_s`` after a session is closed on a connection that stays open.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)

__all__ = ["FloodLimits", "FloodGuard", "GuardedConnection"]

STAGE_NAMES = ("connected", "hello", "secure-channel", "session-created", "authenticated")
AUTHENTICATED = 4


@dataclass(frozen=True)
class FloodLimits:
    max_connections: int = 160
    max_unauthenticated: int = 128
    max_unauthenticated_per_address: int = 16
    hello_timeout_s: float = 2.0
    secure_channel_timeout_s: float = 5.0
    activation_timeout_s: float = 10.0
    sweep_period_s: float = 0.25

    def __post_init__(self) -> None:
        if not 1 <= self.max_unauthenticated < self.max_connections:
            raise ValueError("max_unauthenticated must be at least 1 and below max_connections")
        if not 1 <= self.max_unauthenticated_per_address <= self.max_unauthenticated:
            raise ValueError("max_unauthenticated_per_address must be in 1..max_unauthenticated")
        if not 0 < self.hello_timeout_s <= self.secure_channel_timeout_s <= self.activation_timeout_s:
            raise ValueError("deadlines must satisfy 0 < hello <= secure channel <= activation")


class GuardedConnection(Protocol):
    """What the guard needs of a connection (``HardenedProtocol``)."""

    guard_address: str
    guard_opened: float
    guard_pending_since: float | None

    def guard_stage(self) -> int: ...

    def guard_close(self, why: str) -> None: ...


@dataclass
class FloodGuard:
    limits: FloodLimits
    clients: list[Any]
    clock: Callable[[], float] = time.monotonic
    counters: Counter[str] = field(default_factory=Counter)
    log_period_s: float = 10.0
    _last_log: float = float("-inf")
    _task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ admission
    def _pending(self) -> list[GuardedConnection]:
        return [c for c in self.clients if c.guard_stage() < AUTHENTICATED]

    def _victim(self, pending: list[GuardedConnection]) -> GuardedConnection:
        per_addr = Counter(c.guard_address for c in pending)
        return min(pending, key=lambda c: (c.guard_stage(), -per_addr[c.guard_address], c.guard_opened))

    def _evict(self, victim: GuardedConnection, why: str) -> None:
        self.counters[f"evicted_{STAGE_NAMES[victim.guard_stage()].replace('-', '_')}"] += 1
        self.counters["evicted"] += 1
        self._close(victim, why)

    def _close(self, c: GuardedConnection, why: str) -> None:
        if c in self.clients:  # free the slot now; connection_lost runs on the next loop turn
            self.clients.remove(c)
        c.guard_close(why)
        now = self.clock()
        if now - self._last_log >= self.log_period_s:  # a flood must not flood the log too
            self._last_log = now
            log.warning("OPC UA connection from %s closed: %s (guard counters: %s)", c.guard_address, why,
                        dict(self.counters))

    def admit(self, address: str) -> bool:
        """Make room for a new connection from ``address``; False = refuse it (all slots authenticated)."""
        lim = self.limits
        pending = self._pending()
        same = [c for c in pending if c.guard_address == address]
        if len(same) >= lim.max_unauthenticated_per_address:
            self._evict(self._victim(same), f"per-address limit ({lim.max_unauthenticated_per_address})")
            pending = self._pending()
        if len(pending) >= lim.max_unauthenticated:
            self._evict(self._victim(pending), f"unauthenticated slots full ({lim.max_unauthenticated})")
            pending = self._pending()
        if len(self.clients) >= lim.max_connections:
            if not pending:
                self.counters["refused_full"] += 1
                log.warning("OPC UA connection from %s refused: all %d slots authenticated", address,
                            lim.max_connections)
                return False
            self._evict(self._victim(pending), f"all {lim.max_connections} connections in use")
        self.counters["admitted"] += 1
        return True

    # ------------------------------------------------------------------ deadlines
    def sweep(self) -> None:
        lim, now = self.limits, self.clock()
        for c in list(self.clients):
            stage = c.guard_stage()
            if stage >= AUTHENTICATED:
                c.guard_pending_since = None
                continue
            if c.guard_pending_since is None:  # a session was closed on an open connection
                c.guard_pending_since = now
            age = now - c.guard_pending_since
            first = c.guard_pending_since == c.guard_opened
            if first and stage < 1 and age > lim.hello_timeout_s:
                why, key = f"no Hello within {lim.hello_timeout_s:g} s", "deadline_hello"
            elif first and stage < 2 and age > lim.secure_channel_timeout_s:
                why, key = f"no secure channel within {lim.secure_channel_timeout_s:g} s", "deadline_channel"
            elif age > lim.activation_timeout_s:
                why, key = f"no activated session within {lim.activation_timeout_s:g} s", "deadline_activation"
            else:
                continue
            self.counters[key] += 1
            self._close(c, why)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.limits.sweep_period_s)
            try:
                self.sweep()
            except Exception:  # noqa: BLE001 - the guard must outlive a bad connection object
                log.exception("connection guard sweep failed")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
