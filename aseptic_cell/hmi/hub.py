"""Fan-out of cell state to browsers (HABITS 13, ARCHITECTURE rule 4).

The producer (the ROS thread) calls :meth:`Hub.publish_state` / :meth:`Hub.publish_event`.
Both only store the message and schedule a wake-up on the web server's event loop
(``call_soon_threadsafe``): they never wait for a browser, never raise into the caller.

Each browser has a :class:`ClientQueue`:

* state is coalesced: one slot holding the latest snapshot (a slow browser skips
  intermediate states, it never sees an old one after a new one);
* events (alarms, refusals, commands) go into a bounded deque, drop-oldest, with a count of
  what was dropped, reported to the browser;
* one sender task per browser; a send that takes longer than ``send_timeout_s`` closes that
  browser's connection (it reconnects and gets the current state in its ``hello``).

A stalled or dead browser therefore costs the producer nothing and the other browsers
nothing but the memory of one bounded queue.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("aseptic_cell.hmi.hub")


class ClientQueue:
    """One browser's pending messages (latest state + bounded events)."""

    def __init__(self, maxlen: int, name: str = "") -> None:
        self.name = name
        self.state: str | None = None
        self.events: deque[str] = deque(maxlen=maxlen)
        self.dropped_events = 0
        self.skipped_states = 0
        self.sent = 0
        self.wake = asyncio.Event()
        self.closed = False

    def put_state(self, text: str) -> None:
        if self.state is not None:
            self.skipped_states += 1
        self.state = text
        self.wake.set()

    def put_event(self, text: str) -> None:
        if len(self.events) == self.events.maxlen:
            self.dropped_events += 1
        self.events.append(text)
        self.wake.set()

    def take(self) -> list[str]:
        out = list(self.events)
        self.events.clear()
        if self.dropped_events:
            out.insert(0, json.dumps({"type": "dropped", "events": self.dropped_events}))
            self.dropped_events = 0
        if self.state is not None:
            out.append(self.state)
            self.state = None
        return out


class Hub:
    """Latest state + fan-out. Thread-safe producers, asyncio consumers."""

    def __init__(self, *, queue_len: int = 256, send_timeout_s: float = 5.0) -> None:
        self.queue_len = queue_len
        self.send_timeout_s = send_timeout_s
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: set[ClientQueue] = set()
        self._latest: str | None = None
        self._seq = 0
        self.disconnected_slow = 0

    # ------------------------------------------------------------------ producer side (any thread)
    def attach_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def publish_state(self, snapshot: dict[str, Any]) -> None:
        """Store the newest snapshot and wake every browser. Never blocks, never raises."""
        try:
            with self._lock:
                self._seq += 1
                text = json.dumps(
                    {"type": "state", "seq": self._seq, "wall": time.time(), "data": snapshot},
                    allow_nan=False,
                    default=str,
                )
                self._latest = text
            self._schedule(self._fan_state, text)
        except Exception:  # noqa: BLE001 - observation never becomes control
            log.exception("could not publish a state snapshot")

    def publish_event(self, event: dict[str, Any]) -> None:
        try:
            text = json.dumps(
                {"type": "event", "wall": time.time(), "data": event}, allow_nan=False, default=str
            )
            self._schedule(self._fan_event, text)
        except Exception:  # noqa: BLE001
            log.exception("could not publish an event")

    def _schedule(self, fn: Callable[[str], None], text: str) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(fn, text)
        except RuntimeError:  # loop closing
            pass

    # ------------------------------------------------------------------ loop side
    def _fan_state(self, text: str) -> None:
        for c in list(self._clients):
            c.put_state(text)

    def _fan_event(self, text: str) -> None:
        for c in list(self._clients):
            c.put_event(text)

    @property
    def latest(self) -> str | None:
        with self._lock:
            return self._latest

    @property
    def clients(self) -> int:
        return len(self._clients)

    def register(self, name: str = "") -> ClientQueue:
        c = ClientQueue(self.queue_len, name)
        self._clients.add(c)
        latest = self.latest
        if latest is not None:
            c.put_state(latest)  # a (re)connecting browser gets the current state at once
        return c

    def unregister(self, c: ClientQueue) -> None:
        c.closed = True
        self._clients.discard(c)

    async def pump(self, c: ClientQueue, send: Callable[[str], Awaitable[None]]) -> None:
        """Send ``c``'s messages until the connection fails or is too slow (returns then)."""
        while not c.closed:
            await c.wake.wait()
            c.wake.clear()
            for text in c.take():
                try:
                    await asyncio.wait_for(send(text), self.send_timeout_s)
                except TimeoutError:
                    self.disconnected_slow += 1
                    log.warning(
                        "browser %s too slow (> %.1f s for one message): disconnected",
                        c.name,
                        self.send_timeout_s,
                    )
                    return
                c.sent += 1
