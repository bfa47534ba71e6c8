"""Request limits of the HMI (issue 12 item 5), an ASGI middleware in front of everything:

* **body size**: a request whose ``Content-Length`` exceeds the limit (``max_login_body_bytes``
  for ``POST /api/login``, ``max_body_bytes`` for every other endpoint) is answered ``413``
  before a byte of its body is read, and the connection is closed; a body without a length
  (chunked) is counted while the app reads it and cut off at the limit. The server reads at
  most its flow-control buffer (64 KiB in uvicorn) of a refused body.
* **rate per source** (client address): token buckets, one for log-ins
  (``login_rate_per_min``, burst ``login_burst``) and one for every other ``/api`` request
  (``api_rate_per_s``, burst ``api_burst``); over the limit: ``429`` with ``Retry-After``.

IEC 62443-3-3 SR 7.1 (denial-of-service protection) [IEC62443-3-3].
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .errors import HmiError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class TokenBuckets:
    """Per-key token buckets (bounded: the least recently used keys are dropped)."""

    def __init__(self, rate_per_s: float, burst: float, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.max_keys, self._clock = rate_per_s, burst, max_keys, clock
        self._b: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 if a token was taken, else the seconds until one is available."""
        now = self._clock()
        with self._lock:
            tokens, last = self._b.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._b[key] = (tokens, now)
            while len(self._b) > self.max_keys:
                self._b.popitem(last=False)
        return wait


class RequestLimits:
    def __init__(self, app: App, *, max_body_bytes: int, max_login_body_bytes: int, login_rate_per_min: float,
                 login_burst: int, api_rate_per_s: float, api_burst: int) -> None:
        self.app = app
        self.max_body, self.max_login = max_body_bytes, max_login_body_bytes
        self.login = TokenBuckets(login_rate_per_min / 60.0, login_burst)
        self.api = TokenBuckets(api_rate_per_s, api_burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope.get("path", ""), scope.get("method", "")
        is_login = method == "POST" and path == "/api/login"
        limit = self.max_login if is_login else self.max_body
        source = (scope.get("client") or ("?",))[0]
        if path.startswith("/api/"):
            wait = (self.login if is_login else self.api).take(str(source))
            if wait > 0:
                await _refuse(send, HmiError("RATE_LIMITED", f"too many requests from this address; retry in "
                                             f"{math.ceil(wait)} s"), {"retry-after": str(math.ceil(wait))})
                return
        length = _content_length(scope)
        if length is not None and length > limit:
            await _refuse(send, _too_large(limit), {"connection": "close"})
            return
        seen = 0
        started = refused = False

        async def counted() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:  # answer now; the app sees a disconnect and stops reading
                    refused = True
                    if not started:
                        await _refuse(send, _too_large(limit), {"connection": "close"})
                    return {"type": "http.disconnect"}
            return msg

        async def tracked(msg: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 went out instead
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, counted, tracked)
        except Exception:
            if not refused:
                raise


def _too_large(limit: int) -> HmiError:
    return HmiError("BODY_TOO_LARGE", f"request body larger than {limit} bytes: refused")


def _content_length(scope: Scope) -> int | None:
    for k, v in scope.get("headers", ()):
        if k == b"content-length":
            try:
                return int(v)
            except ValueError:
                return 2**62  # malformed: treated as too large
    return None


async def _refuse(send: Send, err: HmiError, headers: dict[str, str]) -> None:
    body = json.dumps(err.body()).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    hdrs += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": err.status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})
