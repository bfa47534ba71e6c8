"""Per-cell keys and the trust list (the security directory).

Layout of the directory (created by :func:`init_security_dir`, ``python -m aseptic_cell.security
init``; the demo set-up runs it, a site runs it once per cell and distributes the keys)::

    trust.yaml            principals, their scopes, the replay window
    keys/<principal>.key  32 random bytes, hex; mode 0600, directory 0700
    auth.db               the shared, persistent log-in guard (aseptic_cell.auth.lockout)

Scopes: ``event`` (a device node's own events on ``/cell/events``; the supervisor records
only verified ones), ``device`` (any device command and a device recovery: the supervisor),
``safe_state`` (only the ``safe_state`` command: the lifecycle manager), ``operator``
(the supervisor's operator services, on behalf of a user the front end authenticated:
HMI, OPC UA server, CLI). Deny by default: a principal or a scope not in the list is refused.
"""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SECURITY_ENV = "ASEPTIC_CELL_SECURITY_DIR"
"""Environment variable naming the security directory (default :func:`default_security_dir`)."""

PRINCIPALS: dict[str, tuple[str, ...]] = {
    "supervisor": ("device",),
    "lifecycle_manager": ("safe_state",),
    "hmi": ("operator",),
    "opcua_server": ("operator",),
    "cli": ("operator",),
    # each device node signs the events it publishes on /cell/events (the record's device entries)
    "isolator": ("event",),
    "vhp": ("event",),
    "autoclave": ("event",),
    "arm": ("event",),
    # the process equipment's nodes (issue 14), one process hosting the six
    **{k: ("event",) for k in ("incubator", "welder", "sealer", "centrifuge", "counter", "scanner")},
}
"""The demo cell's principals and their scopes (the trust list written by init)."""

FRONT_ENDS = ("hmi", "opcua_server", "cli")

DEFAULT_WINDOW_S = 10.0
"""Accepted clock difference between signer and verifier (one host: one clock)."""


class SecurityError(RuntimeError):
    """The security directory is missing, unreadable or invalid (fail closed)."""


@dataclass
class TrustList:
    """Principals a verifier trusts, their scopes and keys (read lazily, cached)."""

    directory: Path
    scopes: dict[str, tuple[str, ...]]
    window_s: float = DEFAULT_WINDOW_S
    cell_id: str = ""
    _keys: dict[str, bytes] = field(default_factory=dict, repr=False)

    def key(self, principal: str) -> bytes:
        """The key of ``principal``.

        Raises:
            SecurityError: unknown principal or missing/unreadable/short key file.
        """
        if principal not in self.scopes:
            raise SecurityError(f"principal {principal!r} is not in the trust list")
        k = self._keys.get(principal)
        if k is None:
            path = self.directory / "keys" / f"{principal}.key"
            try:
                k = bytes.fromhex(path.read_text(encoding="ascii").strip())
            except (OSError, ValueError) as exc:
                raise SecurityError(f"key of {principal!r} unreadable ({path}): {exc}") from None
            if len(k) < 32:
                raise SecurityError(f"key of {principal!r} is shorter than 32 bytes")
            self._keys[principal] = k
        return k

    def may(self, principal: str, scope: str) -> bool:
        return scope in self.scopes.get(principal, ())


def default_security_dir() -> Path:
    """``$ASEPTIC_CELL_SECURITY_DIR``, else ``<venv>/var/aseptic_cell/security`` (never in git)."""
    env = os.environ.get(SECURITY_ENV, "").strip()
    if env:
        return Path(env)
    return Path(sys.prefix) / "var" / "aseptic_cell" / "security"


def load_trust(directory: str | Path | None = None) -> TrustList:
    """Read ``trust.yaml`` of the security directory.

    Raises:
        SecurityError: missing or invalid (every node then refuses what needs it: fail closed).
    """
    d = Path(directory) if directory else default_security_dir()
    path = d / "trust.yaml"
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SecurityError(f"no valid trust list at {path} ({exc}); run `python -m aseptic_cell.security "
                            f"init {d}` (make venv does this for the demo)") from None
    if not isinstance(data, dict) or not isinstance(data.get("principals"), dict):
        raise SecurityError(f"{path}: 'principals' mapping missing")
    scopes: dict[str, tuple[str, ...]] = {}
    for name, entry in data["principals"].items():
        raw = entry.get("scopes") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
            raise SecurityError(f"{path}: principal {name!r}: 'scopes' must be a list of names")
        scopes[name] = tuple(raw)
    window = data.get("window_s", DEFAULT_WINDOW_S)
    if not isinstance(window, (int, float)) or not 0 < float(window) <= 300:
        raise SecurityError(f"{path}: window_s must be a number in (0, 300]")
    return TrustList(d, scopes, float(window), str(data.get("cell_id", "")))


def init_security_dir(directory: str | Path | None = None, *,
                      principals: dict[str, tuple[str, ...]] | None = None) -> Path:
    """Create the trust list and a key per principal where missing (idempotent: existing
    keys and scopes are kept; principals added to :data:`PRINCIPALS` since are added; revoke
    one by giving it no scopes). Returns the directory."""
    d = Path(directory) if directory else default_security_dir()
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    (d / "keys").mkdir(exist_ok=True)
    os.chmod(d / "keys", 0o700)
    wanted = dict(PRINCIPALS if principals is None else principals)
    trust = d / "trust.yaml"
    if trust.is_file():
        old = load_trust(d)
        cell_id, window = old.cell_id, old.window_s
        wanted = {**old.scopes, **wanted} if principals is not None else {**PRINCIPALS, **old.scopes}
    else:
        cell_id, window = secrets.token_hex(8), DEFAULT_WINDOW_S
    for name in wanted:
        kp = d / "keys" / f"{name}.key"
        if not kp.is_file():
            fd = os.open(kp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(secrets.token_hex(32) + "\n")
    body = {"cell_id": cell_id, "window_s": window,
            "principals": {n: {"scopes": list(s)} for n, s in wanted.items()}}
    tmp = trust.with_suffix(".tmp")
    tmp.write_text("# aseptic_cell trust list (issue 12): who may send what. Made by\n"
                   "# `python -m aseptic_cell.security init`; keys in keys/, never in git.\n"
                   + yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    os.chmod(tmp, 0o600)
    tmp.replace(trust)
    return d
