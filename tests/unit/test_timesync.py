"""Time synchronisation check (issue 15 item 8): the SNTP client against a local UDP responder
started here (a real socket) giving a large offset, a good one, bogus replies, and no server;
the supervisor hook raises CELL_TIME_SYNC, records a kind ``clock`` entry and returns the alarm
to normal when the clock is good again."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest

from aseptic_cell.config import default_config_dir, load_config
from aseptic_cell.records import BatchRecord
from aseptic_cell.supervisor.runner import InProcessRun
from aseptic_cell.supervisor.timesync import ALARM_ID, TimeSyncMonitor
from aseptic_cell.timesync import (
    NTP_EPOCH_OFFSET,
    SntpError,
    TimeSyncSettings,
    check_time_sync,
    load_time_sync_settings,
    sntp_query,
)

PORT = 48531  # this work's port range (48500-48599)
NO_SERVER_PORT = 48532
_PKT = struct.Struct("!BBbbII4sQQQQ")


def _ntp(t: float) -> int:
    return ((int(t) + NTP_EPOCH_OFFSET) << 32) | (int((t - int(t)) * (1 << 32)) & 0xFFFFFFFF)


class Responder:
    """A minimal SNTP server on 127.0.0.1:PORT whose clock runs ``offset`` s ahead of ours."""

    def __init__(self, port: int = PORT) -> None:
        self.offset = 0.0
        self.mode = "good"  # good | no_echo | kiss | unsynchronised
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.served = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                data, addr = self.sock.recvfrom(512)
            except (TimeoutError, OSError):
                continue
            t2 = time.time() + self.offset
            req = _PKT.unpack(data[:48])
            org = req[10] if self.mode != "no_echo" else req[10] ^ 1
            stratum, li = {"kiss": (0, 0), "unsynchronised": (16, 3)}.get(self.mode, (2, 0))
            reply = _PKT.pack((li << 6) | (4 << 3) | 4, stratum, 6, -20, 0, 0,
                              b"RATE" if self.mode == "kiss" else b"GPS\0", _ntp(t2), org, _ntp(t2),
                              _ntp(time.time() + self.offset))
            self.sock.sendto(reply, addr)
            self.served += 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture()
def server():
    r = Responder()
    yield r
    r.close()


def test_sntp_offset_measured_over_udp(server):
    server.offset = 3600.0
    r = sntp_query("127.0.0.1", PORT, 5.0)
    assert abs(r.offset_s - 3600.0) < 1.0 and r.stratum == 2 and r.delay_s >= -0.01
    server.offset = -42.5
    assert abs(sntp_query("127.0.0.1", PORT, 5.0).offset_s + 42.5) < 1.0


@pytest.mark.parametrize("mode, match", [("no_echo", "does not echo our request"), ("kiss", "kiss-o'-death 'RATE'"),
                                         ("unsynchronised", "not synchronised")])
def test_bogus_replies_are_refused(server, mode, match):
    server.mode = mode
    with pytest.raises(SntpError, match=match):
        sntp_query("127.0.0.1", PORT, 5.0)
    status = check_time_sync(TimeSyncSettings(server="127.0.0.1", port=PORT, timeout_s=5.0))
    assert status.state == "NO_SOURCE" and status.alarm


def test_settings_from_record_yaml_and_bad_values():
    s = load_time_sync_settings(default_config_dir())
    assert s.port == 123 and s.max_offset_s > 0 and s.interval_s > 0
    with pytest.raises(ValueError, match="unknown key"):
        TimeSyncSettings.from_mapping({"sever": "ntp"})
    with pytest.raises(ValueError, match="max_offset_s must be a finite number > 0"):
        TimeSyncSettings.from_mapping({"max_offset_s": 0})
    assert check_time_sync(TimeSyncSettings(server="", required=True)).state == "NOT_CONFIGURED"
    assert check_time_sync(TimeSyncSettings(server="", required=False)).state == "OK"


class _Clock:
    def now(self) -> float:
        return 0.0


def test_supervisor_hook_raises_records_and_clears_the_alarm(server, tmp_path):
    cfg = load_config(default_config_dir())
    rec = BatchRecord(tmp_path / "b.db", _Clock())
    run = InProcessRun(cfg, tick_s=1.0, record=rec)
    sup = run.sup
    assert sup.alarms.state(ALARM_ID).value == "NORMAL"
    mon = TimeSyncMonitor(TimeSyncSettings(server="127.0.0.1", port=PORT, max_offset_s=1.0, timeout_s=5.0))
    server.offset = 3600.0  # the host clock is an hour off
    st = mon.check_now(sup)
    assert st.state == "OFFSET" and "exceeds 1.0 s" in st.message
    assert sup.alarms.state(ALARM_ID).value == "UNACK"
    clock = [e for e in rec.entries() if e.kind == "clock"]
    assert len(clock) == 1 and clock[0].action == "clock.sync_offset" and abs(clock[0].payload["offset_s"] - 3600) < 1
    mon.check_now(sup)  # same state: not recorded again
    assert len([e for e in rec.entries() if e.kind == "clock"]) == 1
    # periodic path: the exchange runs on a worker thread, applied at the next poll
    server.offset = 0.0
    mon._next = 0.0
    assert mon.poll(sup) is None
    assert mon._worker is not None
    mon._worker.join(30)
    applied = mon.poll(sup)
    assert applied is not None and applied.state == "OK"
    assert sup.alarms.state(ALARM_ID).value in ("RTN_UNACK", "NORMAL")
    assert [e.action for e in rec.entries() if e.kind == "clock"] == ["clock.sync_offset", "clock.sync_ok"]
    rec.close()


def test_no_time_source_raises_the_alarm(tmp_path):
    cfg = load_config(default_config_dir())
    rec = BatchRecord(tmp_path / "b.db", _Clock())
    run = InProcessRun(cfg, tick_s=1.0, record=rec)
    mon = TimeSyncMonitor(TimeSyncSettings(server="127.0.0.1", port=NO_SERVER_PORT, timeout_s=0.5))
    st = mon.check_now(run.sup)  # nothing listens on that port
    assert st.state == "NO_SOURCE" and "127.0.0.1:48532" in st.message
    assert run.sup.alarms.state(ALARM_ID).value == "UNACK"
    entry = [e for e in rec.entries() if e.kind == "clock"][-1]
    assert entry.action == "clock.sync_no_source" and entry.payload["offset_s"] is None
    rec.close()
