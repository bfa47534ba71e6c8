"""Time synchronisation check (issue 15 item 8): the offset of this host's clock from the
configured time source, or its absence. Record time stamps are only as good as the clock: clocks
synchronised to a trusted master, clock changes detected [ECA-TS]; Annex 11 §9 / Part 11
§11.10(e) time-stamped audit trails [ANNEX11-2011] [CFR11].

A small SNTP client (RFC 4330 [RFC4330]; NTPv4 packet format, RFC 5905 §7.3 [RFC5905]) over
UDP: one request (mode 3, version 4, our transmit time), the reply checked (mode 4, the
originate time stamp echoes ours, stratum 1-15, not a kiss-o'-death, leap indicator not 3 =
unsynchronised), then::

    offset = ((T2 - T1) + (T3 - T4)) / 2        delay = (T4 - T1) - (T3 - T2)

(T1 our send, T2 server receive, T3 server send, T4 our receive; RFC 4330 §5).

Settings: ``config/record.yaml`` ``time_sync:`` (:class:`TimeSyncSettings`). The supervisor's
periodic hook that raises ``CELL_TIME_SYNC`` and records the result is
:class:`aseptic_cell.supervisor.timesync.TimeSyncMonitor`.
"""

from __future__ import annotations

import os
import secrets
import socket
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01 [RFC5905 §6]
_PACKET = struct.Struct("!BBbbII4sQQQQ")  # 48 bytes [RFC5905 §7.3]


class SntpError(Exception):
    """No usable answer from the time source (timeout, unreachable, malformed or unsynchronised)."""


@dataclass(frozen=True)
class SntpResult:
    server: str
    offset_s: float
    """Server time minus our clock (positive: our clock is behind)."""
    delay_s: float
    stratum: int


def _to_ntp(t: float) -> int:
    secs = int(t) + NTP_EPOCH_OFFSET
    frac = int((t - int(t)) * (1 << 32)) & 0xFFFFFFFF
    return (secs << 32) | frac


def _from_ntp(v: int) -> float:
    return (v >> 32) - NTP_EPOCH_OFFSET + (v & 0xFFFFFFFF) / float(1 << 32)


def sntp_query(host: str, port: int = 123, timeout_s: float = 2.0, *,
               clock: Callable[[], float] = time.time) -> SntpResult:
    """One SNTP exchange with ``host:port``. Raises :class:`SntpError`."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise SntpError(f"time source {host}:{port}: cannot resolve: {exc}") from None
    family, _, _, _, addr = infos[0]
    # our transmit time stamp carries random low bits: the reply must echo it exactly
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout_s)
        t1 = clock()
        xmt = (_to_ntp(t1) & ~0xFFFF) | secrets.randbits(16)
        request = _PACKET.pack((0 << 6) | (4 << 3) | 3, 0, 0, 0, 0, 0, b"\0\0\0\0", 0, 0, 0, xmt)
        try:
            s.sendto(request, addr)
            deadline = time.monotonic() + timeout_s
            while True:
                data, frm = s.recvfrom(512)
                t4 = clock()
                if frm[:2] == addr[:2] and len(data) >= _PACKET.size:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError
        except TimeoutError:
            raise SntpError(f"time source {host}:{port}: no answer within {timeout_s} s") from None
        except OSError as exc:
            raise SntpError(f"time source {host}:{port}: {exc}") from None
    li_vn_mode, stratum, _poll, _prec, _rd, _rdisp, refid, _ref, org, rec, xmt_srv = _PACKET.unpack(
        data[:_PACKET.size])
    mode, li = li_vn_mode & 0x7, li_vn_mode >> 6
    if mode != 4:
        raise SntpError(f"time source {host}:{port}: reply mode {mode}, expected 4 (server)")
    if org != xmt:
        raise SntpError(f"time source {host}:{port}: reply does not echo our request (bogus or stale packet)")
    if stratum == 0:
        raise SntpError(f"time source {host}:{port}: kiss-o'-death {refid.decode('ascii', 'replace')!r}")
    if stratum > 15 or li == 3:
        raise SntpError(f"time source {host}:{port}: server not synchronised (stratum {stratum}, leap {li})")
    t2, t3 = _from_ntp(rec), _from_ntp(xmt_srv)
    t1 = _from_ntp(xmt)
    offset = ((t2 - t1) + (t3 - t4)) / 2.0
    delay = (t4 - t1) - (t3 - t2)
    return SntpResult(f"{host}:{port}", offset, delay, stratum)


# ----------------------------------------------------------------------------- settings and check
@dataclass(frozen=True)
class TimeSyncSettings:
    server: str = ""
    """Host name or address of the site's NTP server; empty: no time source configured."""
    port: int = 123
    max_offset_s: float = 1.0
    timeout_s: float = 2.0
    interval_s: float = 600.0
    required: bool = True
    """An empty ``server`` is itself an alarm when required."""

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any] | None) -> TimeSyncSettings:
        d = dict(d or {})
        unknown = sorted(set(d) - {"server", "port", "max_offset_s", "timeout_s", "interval_s", "required"})
        if unknown:
            raise ValueError(f"time_sync: unknown key(s) {', '.join(unknown)}")
        out = cls(str(d.get("server", "") or ""), int(d.get("port", 123)), float(d.get("max_offset_s", 1.0)),
                  float(d.get("timeout_s", 2.0)), float(d.get("interval_s", 600.0)), bool(d.get("required", True)))
        for name in ("max_offset_s", "timeout_s", "interval_s"):
            v = getattr(out, name)
            if not v > 0 or v == float("inf"):
                raise ValueError(f"time_sync.{name} must be a finite number > 0, got {v}")
        if not 0 < out.port < 65536:
            raise ValueError(f"time_sync.port must be 1-65535, got {out.port}")
        return out


def load_time_sync_settings(config_dir: str | os.PathLike[str]) -> TimeSyncSettings:
    """``time_sync:`` of ``<config_dir>/record.yaml`` (defaults when absent)."""
    p = Path(config_dir) / "record.yaml"
    doc = yaml.safe_load(p.read_text(encoding="utf-8")) if p.is_file() else {}
    return TimeSyncSettings.from_mapping((doc or {}).get("time_sync"))


@dataclass(frozen=True)
class TimeSyncStatus:
    state: str
    """``OK``, ``OFFSET`` (beyond max_offset_s), ``NO_SOURCE`` (configured source not answering),
    ``NOT_CONFIGURED`` (no server configured)."""
    message: str
    offset_s: float | None = None
    delay_s: float | None = None
    server: str = ""

    @property
    def alarm(self) -> bool:
        return self.state != "OK"

    def to_payload(self) -> dict[str, Any]:
        return {"state": self.state, "offset_s": self.offset_s, "delay_s": self.delay_s, "server": self.server,
                "message": self.message}


def check_time_sync(settings: TimeSyncSettings, *, clock: Callable[[], float] = time.time) -> TimeSyncStatus:
    """One check against the configured source (blocking up to ``timeout_s``)."""
    if not settings.server:
        state = "NOT_CONFIGURED" if settings.required else "OK"
        return TimeSyncStatus(state, "no time source configured (record.yaml time_sync.server)")
    try:
        r = sntp_query(settings.server, settings.port, settings.timeout_s, clock=clock)
    except SntpError as exc:
        return TimeSyncStatus("NO_SOURCE", f"clock not checked: {exc}", server=f"{settings.server}:{settings.port}")
    if abs(r.offset_s) > settings.max_offset_s:
        return TimeSyncStatus("OFFSET", f"clock offset {r.offset_s:+.3f} s from {r.server} exceeds "
                              f"{settings.max_offset_s} s", r.offset_s, r.delay_s, r.server)
    return TimeSyncStatus("OK", f"clock offset {r.offset_s:+.3f} s from {r.server} (stratum {r.stratum})",
                          r.offset_s, r.delay_s, r.server)
