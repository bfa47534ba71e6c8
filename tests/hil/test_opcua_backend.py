"""The OPC UA backend's own contract against a real emulator process (no ROS): readings with
``t``, commands and device refusals, TIMEOUT on a frozen server, COMM_LOST when down, stale
``received_wall``, reconnect with a full re-read; the device-level server's access rules; the
opcua.yaml cross checks."""

from __future__ import annotations

import asyncio
import math
import signal
import time

import pytest

from .conftest import Emulator, free_ports, write_opcua_yaml

pytestmark = [pytest.mark.hil]


def _wait(cond, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.mark.timeout(150)
def test_backend_contract_against_the_emulator(tmp_path):
    from aseptic_cell.devices.backend import DeviceBackend, make_backend

    (port,) = free_ports(1)
    yml = write_opcua_yaml(tmp_path / "opcua.yaml", {"ISO1": port})
    emu = Emulator(yml, ["ISO1"], tmp_path / "emu.log").start().wait_ready()
    b = make_backend("opcua", device_id="ISO1", kind="isolator", config_path=str(yml))
    assert isinstance(b, DeviceBackend)
    try:
        b.connect(60.0)
        r = b.latest()
        assert b.connected() and r is not None and r.values["t"] == r.device_time
        assert isinstance(r.values["status.faults"], list)  # Records come back decoded
        t0 = r.device_time
        _wait(lambda: b.latest().device_time > t0, 5.0, "SimTime advancing")
        assert b.latest().age_s() < 1.0

        assert b.command("open_door", {"door": "A"}, user="t").accepted
        out = b.command("open_door", {"door": "B"}, user="t")  # the device's own interlock
        assert not out.accepted and out.code.startswith("HATCH_"), out
        _wait(lambda: b.latest().values["hatch.door_A"] == "open", 10.0, "door A open")

        emu.signal(signal.SIGSTOP)  # frozen: the socket stays open, nothing answers
        try:
            out = b.command("close_door", {"door": "A"}, user="t", timeout_s=0.5)
            assert not out.accepted and out.code in ("TIMEOUT", "COMM_LOST"), out
            _wait(lambda: not b.connected(), 10.0, "frozen server detected")
            wall = b.latest().received_wall
            time.sleep(0.5)
            assert b.latest().received_wall == wall and b.latest().age_s() > 0.5  # readings stop
            out = b.command("close_door", {"door": "A"}, user="t")
            assert not out.accepted and out.code == "COMM_LOST", out
        finally:
            emu.signal(signal.SIGCONT)
        sessions = b.sessions
        _wait(lambda: b.connected() and b.sessions > sessions, 20.0, "reconnect after SIGCONT")

        emu.kill()
        _wait(lambda: not b.connected(), 10.0, "dead server detected")
        assert b.command("close_door", {"door": "A"}).code == "COMM_LOST"
        emu = Emulator(yml, ["ISO1"], tmp_path / "emu.log").start().wait_ready()
        sessions = b.sessions
        _wait(lambda: b.connected() and b.sessions > sessions, 30.0, "reconnect after restart")
        # the restarted device starts with its doors closed: the values were re-read, not kept
        assert b.latest().values["hatch.door_A"] == "closed"
        assert b.latest().age_s() < 1.0
    finally:
        b.close()
        emu.stop()
    assert not b.connected()


@pytest.mark.timeout(90)
def test_device_server_access_rules(tmp_path):
    """No default admin (any user name refused), variables read-only for the anonymous role."""
    from asyncua import Client, ua
    from asyncua.ua.uaerrors import UaStatusCodeError

    from aseptic_cell.opcua.model import NS_URI, nid_reading

    (port,) = free_ports(1)
    yml = write_opcua_yaml(tmp_path / "opcua.yaml", {"AC1": port})
    emu = Emulator(yml, ["AC1"], tmp_path / "emu.log").start().wait_ready()
    url = f"opc.tcp://127.0.0.1:{port}/aseptic/AC1"

    async def admin() -> str:
        c = Client(url.replace("opc.tcp://", "opc.tcp://admin:whatever@"), timeout=5)
        try:
            await c.connect()
        except UaStatusCodeError as exc:
            return type(exc).__name__
        await c.disconnect()
        return "accepted"

    async def write_as_anonymous() -> str:
        async with Client(url, timeout=5) as c:
            ns = await c.get_namespace_index(NS_URI)
            node = c.get_node(ua.NodeId(nid_reading("AC1", "unload_released"), ns))
            try:
                await node.write_value(ua.DataValue(ua.Variant(True, ua.VariantType.Boolean)))
            except UaStatusCodeError as exc:
                return type(exc).__name__
            return "written"

    try:
        assert asyncio.run(admin()) in ("BadIdentityTokenRejected", "BadUserAccessDenied")
        assert asyncio.run(write_as_anonymous()) in ("BadUserAccessDenied", "BadNotWritable")
    finally:
        emu.stop()


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
