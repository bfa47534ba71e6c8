"""Signed requests: an HMAC-SHA256 envelope in a request's ``auth`` field, with replay protection.

``auth`` = ``<header>.<mac>``: header = base64url JSON ``{"v": 1, "p": principal, "t": wall
time, "n": nonce, ...claims}``; mac = HMAC-SHA256(principal's key, service name ‖ header ‖
a canonical JSON form of every other field of the request). So the MAC covers every field of the
request (user, reason, arguments, password) and the service it was sent to: a command signed
for ``/cell/vhp/command`` is refused by ``/cell/isolator/command``.

Replay protection: the time stamp must be within the trust list's window of the verifier's
clock and not before the verifier started (a command captured before a node restart is
refused after it), and a nonce is accepted once within the window.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .keys import SecurityError, TrustList, load_trust


class AuthRefused(Exception):
    """The request is not authenticated; ``reason`` says why (never echoing secrets)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Verified:
    principal: str
    claims: dict[str, Any]
    t: float


def _canon(v: Any) -> Any:
    """A JSON-able, deterministic form of a ROS message field (nested messages, arrays, floats
    by repr so NaN and -0.0 are distinct; CDR is not usable: its padding bytes are undefined)."""
    if hasattr(v, "get_fields_and_field_types"):
        return {k: _canon(getattr(v, k)) for k in v.get_fields_and_field_types()}
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    if isinstance(v, (str, int, bool)) or v is None:
        return v
    if hasattr(v, "__iter__"):  # list, tuple, array.array, numpy array
        return [_canon(x) for x in v]
    return repr(v)


def _body(msg: Any) -> bytes:
    """The request's canonical form with ``auth`` left out (every other field covered)."""
    body = {k: _canon(getattr(msg, k)) for k in msg.get_fields_and_field_types() if k != "auth"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _mac(key: bytes, target: str, header: str, body: bytes) -> str:
    h = hmac.new(key, target.encode("utf-8") + b"\0" + header.encode("ascii") + b"\0", hashlib.sha256)
    h.update(body)
    return h.hexdigest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Signs requests as one principal (its key from the security directory)."""

    def __init__(self, principal: str, trust: TrustList | None = None, *,
                 wall: Callable[[], float] = time.time) -> None:
        self.trust = trust if trust is not None else load_trust()
        self.principal = principal
        self._key = self.trust.key(principal)
        self._wall = wall

    def token(self, target: str, msg: Any, **claims: Any) -> str:
        return self.token_for(target, _body(msg), **claims)

    def token_for(self, target: str, body: bytes, **claims: Any) -> str:
        """The envelope of an arbitrary ``body`` (e.g. a JSON event) for ``target``."""
        head = {"v": 1, "p": self.principal, "t": round(self._wall(), 6), "n": secrets.token_hex(12), **claims}
        header = _b64(json.dumps(head, separators=(",", ":"), sort_keys=True).encode("utf-8"))
        return f"{header}.{_mac(self._key, target, header, body)}"

    def sign(self, target: str, msg: Any, **claims: Any) -> Any:
        """Set ``msg.auth`` for a request to ``target`` (service or action name); returns ``msg``."""
        msg.auth = self.token(target, msg, **claims)
        return msg


class Verifier:
    """Verifies envelopes for one receiving node: trust list, scopes, window, nonces.

    ``started`` (wall time): envelopes stamped earlier are refused (replay across a restart).
    """

    def __init__(self, trust: TrustList | None = None, *, wall: Callable[[], float] = time.time,
                 started: float | None = None, max_nonces: int = 100_000) -> None:
        self._trust_error = ""
        try:
            self.trust: TrustList | None = trust if trust is not None else load_trust()
        except SecurityError as exc:  # fail closed: every request is refused with the reason
            self.trust, self._trust_error = None, str(exc)
        self._wall = wall
        self.started = wall() if started is None else started
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._max = max_nonces
        self._lock = threading.Lock()

    def verify(self, target: str, msg: Any, scopes: Iterable[str]) -> Verified:
        """The principal that signed ``msg`` for ``target`` with one of ``scopes``.

        Raises:
            AuthRefused: missing, malformed, unknown principal, scope not allowed, bad MAC,
                outside the window or before this node started, nonce already used.
        """
        token = getattr(msg, "auth", "")
        if not isinstance(token, str) or not token:
            raise AuthRefused("unauthenticated request (no auth envelope): refused")
        return self.verify_token(target, token, _body(msg), scopes)

    def verify_token(self, target: str, token: Any, body: bytes, scopes: Iterable[str]) -> Verified:
        """As :meth:`verify`, for an envelope ``token`` over an arbitrary ``body``."""
        if self.trust is None:
            raise AuthRefused(f"no trust list on this node ({self._trust_error}): refused")
        if not isinstance(token, str) or not token:
            raise AuthRefused("unauthenticated request (no auth envelope): refused")
        header, _, mac = token.partition(".")
        try:
            head = json.loads(_unb64(header))
            principal, t, nonce = head["p"], float(head["t"]), head["n"]
            if head.get("v") != 1 or not isinstance(principal, str) or not isinstance(nonce, str):
                raise ValueError("bad header")
        except (ValueError, KeyError, TypeError):
            raise AuthRefused("malformed auth envelope: refused") from None
        allowed = tuple(scopes)
        if not any(self.trust.may(principal, s) for s in allowed):
            raise AuthRefused(f"principal {principal!r} is not trusted for {target} "
                              f"(needs scope {' or '.join(allowed)}): refused")
        try:
            key = self.trust.key(principal)
        except SecurityError as exc:
            raise AuthRefused(f"{exc}: refused") from None
        if not hmac.compare_digest(mac, _mac(key, target, header, body)):
            raise AuthRefused("auth envelope does not match the request (bad signature): refused")
        now = self._wall()
        window = self.trust.window_s
        if not (abs(now - t) <= window and t >= self.started - 0.001):
            raise AuthRefused(f"auth envelope outside the time window ({now - t:+.1f} s, window {window:g} s, "
                              "or signed before this node started): refused as a possible replay")
        with self._lock:
            while self._seen and (next(iter(self._seen.values())) < now - 2 * window
                                  or len(self._seen) >= self._max):
                self._seen.popitem(last=False)
            key_n = f"{principal}/{nonce}"
            if key_n in self._seen:
                raise AuthRefused("auth envelope already used (replay): refused")
            self._seen[key_n] = t
        claims = {k: v for k, v in head.items() if k not in ("v", "p", "t", "n")}
        return Verified(principal, claims, t)


def canonical_json(data: Any) -> bytes:
    """The signed form of a JSON object (keys sorted, no spaces): what an event's MAC covers."""
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")
