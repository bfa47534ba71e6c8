"""Hardware-in-the-loop: device nodes (``hardware: opcua``, separate processes) driving the
emulated devices (``python -m aseptic_cell.opcua.emulator``, separate processes) over real
TCP on loopback.

Functional: the device interlocks (hatch IL-01, RTP IL-02/03, autoclave clean-side door only
after a PASS, IL-11), a VHP and an autoclave cycle action end to end.
Faults: emulator killed + restarted, frozen (SIGSTOP), values stale behind a delaying or
black-holing TCP proxy, NaN and out-of-range sensor values. Each communication fault must end
in the safe state (node latched, commands refused) with an alarm <dev>_COMM_LOSS, no
auto-resume when the device returns, recovery only on the operator's ``recover``, and an
intact batch record (the events recorded into a hash-chained BatchRecord that verifies).
"""

from __future__ import annotations

import json
import math
import signal
import time

import pytest

from .conftest import Emulator, emulator_call

pytestmark = [pytest.mark.hil]


def _alarm_raised(h, alarm_id: str) -> bool:
    return any(a.alarm_id == alarm_id and a.state == "ACTIVE" for a in h.alarms())


def _wait_refused(h, node: str, call, code: str, timeout_s: float = 15.0):
    deadline = time.monotonic() + timeout_s
    while True:
        r = call()
        if not r.accepted and r.code == code:
            return r
        if time.monotonic() > deadline:
            raise AssertionError(f"{node}: expected refusal {code}, got {r}")
        time.sleep(0.2)


def _comm_fault_then_recover(h, *, node: str, device: str, probe, undo, batch: str) -> list[str]:
    """Shared tail of every communication fault: safe state, alarm, no auto-resume, operator recovery."""
    c = h.client
    c.wait_state(node, lambda s: not s.comm_ok, 20.0, f"{node} comm lost")
    c.wait_for(lambda: _alarm_raised(h, f"{device}_COMM_LOSS"), 10.0, f"alarm COMM_LOSS_{device}")
    st = c.state(node)
    assert "latched" in st.lifecycle_state
    refused = probe()
    assert not refused.accepted and refused.code == "LATCHED", refused
    assert not c.recover(node, user="op1", reason="too early").accepted  # no fresh data: refused
    undo()
    c.wait_state(node, lambda s: s.comm_ok, 60.0, f"{node} comm restored")
    time.sleep(1.0)
    st = c.state(node)
    assert "latched" in st.lifecycle_state, "auto-resume after communication came back"
    again = probe()
    assert not again.accepted and again.code == "LATCHED", again
    rec = c.recover(node, user="op1", reason=f"{batch}: link checked by engineering")
    assert rec.accepted, rec
    c.wait_state(node, lambda s: "latched" not in s.lifecycle_state, 5.0, f"{node} unlatched")
    kinds = h.verify_record(batch)
    assert "trip" in kinds and "alarm" in kinds and "refusal" in kinds, kinds
    evs = [e["event"] for e in h.events() if e.get("node") == node]
    assert (
        evs.index("comm_lost") < evs.index("latched") <= evs.index("comm_restored") < evs.index("recovered")
    ), evs
    return kinds


def _run_cycle(h, node: str, program: str, batch: str, timeout_s: float) -> tuple[str, dict | None]:
    """Run a cycle action; (verdict, report). On a loaded machine the goal response may come after
    the client's 10 s: the action still runs, so fall back on the node's ``cycle_result`` event."""
    mark = len(h.client.events)
    try:
        res = h.client.run_cycle(node, program, batch_id=batch, timeout_s=timeout_s)
        return res.result, json.loads(res.json_report or "{}") if res.json_report else None
    except TimeoutError:
        found: list[dict] = []

        def done() -> bool:
            found[:] = [
                e
                for e in h.client.events[mark:]
                if e.get("event") == "cycle_result" and e.get("node") == node
            ]
            return bool(found)

        h.client.wait_for(done, timeout_s, f"{node} cycle_result event")
        return found[-1]["result"], None


# ======================================================================= functional
@pytest.mark.timeout(90)
def test_isolator_hatch_and_rtp_interlocks_over_opcua(hil):
    c, h = hil.client, hil
    h.mark()
    assert c.door("isolator", "hatch_a", "open", user="op1").accepted
    c.wait_state("isolator", lambda s: s.hatch_door_a_open, 20.0, "hatch door A open")
    r = c.door("isolator", "hatch_b", "open", user="op1")
    assert not r.accepted and r.code.startswith("HATCH_"), r  # IL-01: never both hatch doors
    assert c.door("isolator", "hatch_a", "close", user="op1").accepted
    c.wait_state(
        "isolator", lambda s: not s.hatch_door_a_open and s.hatch_seal_a_inflated, 20.0, "hatch A sealed"
    )

    rtp = h.cfg.layout.isolator.rtps[0].id
    r = c.port(rtp, "open_alpha", user="op1")
    assert not r.accepted and r.code == "RTP_NO_BETA", r  # IL-02
    assert c.port(rtp, "dock_beta", beta_id="BETA-HIL", sterile="sterile", user="op1").accepted
    assert c.port(rtp, "lock_beta", user="op1").accepted
    c.wait_state("isolator", lambda s: s.rtps[0].beta_locked, 20.0, "beta locked")
    assert c.port(rtp, "open_alpha", user="op1").accepted
    c.wait_state("isolator", lambda s: s.rtps[0].alpha_open, 20.0, "alpha open")
    r = c.port(rtp, "undock_beta", user="op1")
    assert not r.accepted and r.code == "RTP_ALPHA_OPEN", r  # IL-03
    assert c.port(rtp, "close_alpha", user="op1").accepted
    c.wait_state("isolator", lambda s: not s.rtps[0].alpha_open, 20.0, "alpha closed")
    assert c.port(rtp, "unlock_beta", user="op1").accepted
    c.wait_state("isolator", lambda s: not s.rtps[0].beta_locked, 20.0, "beta unlocked")
    assert c.port(rtp, "undock_beta", user="op1").accepted
    c.wait_state("isolator", lambda s: not s.rtps[0].beta_docked, 20.0, "beta undocked")
    kinds = h.verify_record("HIL-IL")
    assert kinds.count("refusal") >= 3


@pytest.mark.timeout(120)
def test_autoclave_unload_only_after_pass_and_vhp_cycle_action(hil):
    c, h = hil.client, hil
    h.mark()
    r = c.door("autoclave", "autoclave_unload", "open", user="op1")
    assert not r.accepted and r.code == "AC_UNLOAD_NOT_RELEASED", r  # IL-10
    # VHP cycle action end to end over OPC UA: start → run → result (fails its pre-checks:
    # no enclosure leak test and no robot in this cell — the device's own verdict, carried back)
    verdict, report = _run_cycle(h, "vhp", "VHP-ISO-SHORT", "HIL-B1", 60.0)
    assert verdict == "FAIL", report
    assert report is None or any("leak" in r for r in report.get("reasons", [])), report
    verdict, report = _run_cycle(h, "autoclave", "P134-3", "HIL-B1", 80.0)
    assert verdict == "PASS", report
    c.wait_state("autoclave", lambda s: s.sterile_load_available, 10.0, "unload released")
    deadline = time.monotonic() + 30.0
    while True:  # the chamber must also be cool and vented (IL-11) before the door releases
        r = c.door("autoclave", "autoclave_unload", "open", user="op1", reason="transfer in")
        if r.accepted or time.monotonic() > deadline:
            break
        assert r.code in ("AC_HOT", "AC_PRESSURISED"), r
        time.sleep(0.3)
    assert r.accepted, r
    c.wait_state("autoclave", lambda s: s.door_unload_open, 20.0, "unload door open")
    r = c.door("autoclave", "autoclave_load", "open", user="op1")
    assert not r.accepted and r.code == "AC_OTHER_DOOR_OPEN", r
    assert c.door("autoclave", "autoclave_unload", "close", user="op1").accepted
    c.wait_state("autoclave", lambda s: s.door_unload_gasket_ok, 30.0, "unload door sealed")
    kinds = h.verify_record("HIL-B1")
    assert kinds.count("cycle_result") == 2


# ======================================================================= sensor faults
@pytest.mark.timeout(60)
def test_nan_and_out_of_range_values_are_unsafe(hil):
    """NaN travels as NaN (Double) through OPC UA and the backend into the node; the signal
    mapping makes it unknown (None = unsafe) and the device interlocks refuse; an out-of-range
    reading refuses the same way. (A bad value is not a lost link: no COMM_LOSS latch.)"""
    from std_msgs.msg import String

    c, h = hil.client, hil
    h.mark()
    signals: list[dict] = []
    sub = c.node.create_subscription(
        String, "/cell/isolator/signals", lambda m: signals.append(json.loads(m.data)), 10
    )
    key = "hatch.dwell_remaining_s"
    ok, code, *_ = emulator_call(
        h.endpoints["ISO1"], "ISO1", "InjectFault", f"sensor:{key}", '{"mode": "nan"}'
    )
    assert ok, code
    try:
        c.wait_state("isolator", lambda s: math.isnan(s.hatch_dwell_remaining_s), 10.0, "NaN in the state")
        c.wait_for(
            lambda: signals and signals[-1]["signals"]["isolator.hatch.dwell_elapsed_s"] is None,
            10.0,
            "signal isolator.hatch.dwell_elapsed_s unknown",
        )
        assert signals[-1]["comm_ok"]
        r = c.door("isolator", "hatch_a", "open", user="op1")
        assert not r.accepted and r.code == "HATCH_DWELL", r
        assert c.state("isolator").comm_ok  # a bad value is not a lost link
    finally:
        emulator_call(h.endpoints["ISO1"], "ISO1", "ClearFault", f"sensor:{key}")
    c.wait_state("isolator", lambda s: s.hatch_dwell_remaining_s == 0.0, 10.0, "dwell reading back")
    c.wait_for(
        lambda: signals[-1]["signals"]["isolator.hatch.dwell_elapsed_s"] is not None, 10.0, "signal back"
    )
    c.node.destroy_subscription(sub)

    ok, *_ = emulator_call(
        h.endpoints["AC1"], "AC1", "InjectFault", "sensor:chamber_t_c", '{"mode": "offset", "offset": 500.0}'
    )
    assert ok
    try:
        c.wait_state("autoclave", lambda s: s.chamber_t_c > 400.0, 10.0, "out-of-range chamber T")
        r = c.door("autoclave", "autoclave_load", "open", user="op1")
        assert not r.accepted and r.code == "AC_HOT", r
    finally:
        emulator_call(h.endpoints["AC1"], "AC1", "ClearFault", "sensor:chamber_t_c")
    c.wait_state("autoclave", lambda s: s.chamber_t_c < 100.0, 10.0, "chamber T back")
    h.verify_record("HIL-SENSOR")


# ======================================================================= communication faults
def _wait(cond, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.mark.timeout(120)
def test_emulator_killed_then_restarted(hil):
    """Also the backend's own contract (``h.raw``: an OpcUaBackend of this process on the same
    emulator): COMM_LOST while down; after the restart a new session whose values were re-read
    (the restarted device has its hatch closed again; nothing kept from before)."""
    h, c = hil, hil.client
    h.mark()
    assert c.door("isolator", "hatch_a", "open", user="op1").accepted
    c.wait_state("isolator", lambda s: s.hatch_door_a_open, 20.0, "hatch door A open before the kill")
    _wait(lambda: h.raw.latest().values["hatch.door_A"] == "open", 10.0, "raw backend sees door A open")
    sessions = h.raw.sessions
    emu = h.emulators["ISO1"]
    emu.kill()

    def restart() -> None:
        _wait(lambda: not h.raw.connected(), 10.0, "raw backend: dead server detected")
        out = h.raw.command("close_door", {"door": "A"}, user="t")
        assert not out.accepted and out.code == "COMM_LOST", out
        h.emulators["ISO1"] = Emulator(emu.yaml, emu.devices, emu.log).start().wait_ready()

    _comm_fault_then_recover(
        h,
        node="isolator",
        device="ISO1",
        batch="HIL-KILL",
        undo=restart,
        probe=lambda: h.client.door("isolator", "hatch_a", "open", user="op1"),
    )
    _wait(lambda: h.raw.connected() and h.raw.sessions > sessions, 30.0, "raw backend reconnected")
    assert h.raw.latest().values["hatch.door_A"] == "closed" and h.raw.latest().age_s() < 1.0
    assert not c.state("isolator").hatch_door_a_open  # the node re-read too: nothing jumps back


@pytest.mark.timeout(90)
def test_emulator_frozen(hil):
    """Also the backend's contract on a frozen server: a command times out (TIMEOUT) or finds the
    link already down (COMM_LOST); ``received_wall`` stops, so the readings age."""
    h = hil
    h.mark()
    emu = h.emulators["ISO1"]
    sessions = h.raw.sessions
    emu.signal(signal.SIGSTOP)

    def check_then_thaw() -> None:
        _wait(lambda: not h.raw.connected(), 10.0, "raw backend: frozen server detected")
        wall = h.raw.latest().received_wall
        time.sleep(0.5)
        assert h.raw.latest().received_wall == wall and h.raw.latest().age_s() > 0.5
        assert h.raw.command("close_door", {"door": "A"}, user="t").code == "COMM_LOST"
        emu.signal(signal.SIGCONT)

    try:
        out = h.raw.command("close_door", {"door": "A"}, user="t", timeout_s=0.5)
        assert not out.accepted and out.code in ("TIMEOUT", "COMM_LOST"), out
        _comm_fault_then_recover(
            h,
            node="isolator",
            device="ISO1",
            batch="HIL-FREEZE",
            undo=check_then_thaw,
            probe=lambda: h.client.door("isolator", "hatch_a", "open", user="op1"),
        )
    finally:
        emu.signal(signal.SIGCONT)
    _wait(lambda: h.raw.connected() and h.raw.sessions > sessions, 30.0, "raw backend reconnected")


@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode", ["delay", "drop"])
def test_link_delayed_or_dropped(hil, mode):
    """Stale values behind a slow link (3 s per direction) or a black-holed one: same safe end."""
    h = hil
    h.mark()
    h.proxy.set_mode(mode, delay_s=3.0)
    try:
        _comm_fault_then_recover(
            h,
            node="autoclave",
            device="AC1",
            batch=f"HIL-{mode.upper()}",
            undo=lambda: h.proxy.set_mode("pass"),
            probe=lambda: h.client.door("autoclave", "autoclave_load", "open", user="op1"),
        )
    finally:
        h.proxy.set_mode("pass")


# ======================================================================= device-level server rules
@pytest.mark.timeout(60)
def test_device_server_access_rules(hil):
    """No default admin (any user name refused), variables read-only for the anonymous role."""
    import asyncio

    from asyncua import Client, ua
    from asyncua.ua.uaerrors import UaStatusCodeError

    from aseptic_cell.opcua.model import NS_URI, nid_reading

    url = hil.endpoints["VHP1"]

    async def admin() -> str:
        cl = Client(url.replace("opc.tcp://", "opc.tcp://admin:whatever@"), timeout=10)
        try:
            await cl.connect()
        except UaStatusCodeError as exc:
            return type(exc).__name__
        await cl.disconnect()
        return "accepted"

    async def write_as_anonymous() -> str:
        async with Client(url, timeout=10) as cl:
            ns = await cl.get_namespace_index(NS_URI)
            node = cl.get_node(ua.NodeId(nid_reading("VHP1", "cycle_active"), ns))
            try:
                await node.write_value(ua.DataValue(ua.Variant(True, ua.VariantType.Boolean)))
            except UaStatusCodeError as exc:
                return type(exc).__name__
            return "written"

    assert asyncio.run(admin()) in ("BadIdentityTokenRejected", "BadUserAccessDenied")
    assert asyncio.run(write_as_anonymous()) in ("BadUserAccessDenied", "BadNotWritable")


def test_opcua_yaml_cross_checks():
    from aseptic_cell.config import default_config_dir, load_config
    from aseptic_cell.opcua.config import (
        OpcUaConfigError,
        check_against_cell,
        load_opcua_config,
        parse_opcua_config,
    )

    cell = load_config(default_config_dir())
    shipped = load_opcua_config(config_dir=default_config_dir())
    assert check_against_cell(shipped, cell) == []
    bad = parse_opcua_config(
        {
            "devices": {
                "ISO1": {"endpoint": "opc.tcp://127.0.0.1:48410/x", "kind": "vhp"},
                "AC1": {"endpoint": "opc.tcp://127.0.0.1:48410/y"},
                "XX9": {"endpoint": "opc.tcp://10.0.0.5:48411/z"},
            }
        }
    )
    problems = "\n".join(check_against_cell(bad, cell))
    assert "devices.ISO1.kind" in problems and "already used by ISO1" in problems
    assert "XX9: not a device" in problems and "not loopback" in problems
    with pytest.raises(OpcUaConfigError, match="endpoint"):
        parse_opcua_config({"devices": {"ISO1": {"endpoint": "http://nope"}}})
    with pytest.raises(OpcUaConfigError, match="client.backoff_max_s"):
        parse_opcua_config({"devices": {}, "client": {"backoff_max_s": math.inf}})
