"""Emulated device servers in the secure mode for a HIL bench on a shared network (issue 12 item 7),
and the fault-injection hooks off unless asked for. Real processes over TCP on loopback.

One emulator (ISO1, and VHP1 for the role check of the LADS program methods) with
``emulator.security.mode: sign_and_encrypt`` and ``--fault-methods``; one
in the default mode without the flag.
"""

from __future__ import annotations

import asyncio

import pytest
import yaml
from asyncua import Client, ua
from asyncua.ua.uaerrors import UaStatusCodeError

from aseptic_cell.devices.opcua_backend import OpcUaBackend
from aseptic_cell.opcua.config import load_opcua_config
from aseptic_cell.opcua.model import NS_URI, nid_fault, nid_folder, nid_method
from aseptic_cell.opcua.server.testing import client_for, make_client_identity, secure, trust

from .conftest import ROOT, TEST_CLIENT, Emulator, free_ports

pytestmark = [pytest.mark.hil, pytest.mark.timeout(150)]

PASSWORDS = {"sup1": "sup1-demo-2026", "eng1": "eng1-demo-2026", "op1": "op1-demo-2026"}


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("secure-emu")
    port, vhp_port = free_ports(2)
    pki = tmp / "pki"
    ident = make_client_identity(tmp / "client", "bridge", "urn:aseptic-cell:opcua:bridge")
    trust(pki, ident)
    data = {
        "devices": {"ISO1": {"endpoint": f"opc.tcp://127.0.0.1:{port}/aseptic/ISO1"},
                    "VHP1": {"endpoint": f"opc.tcp://127.0.0.1:{vhp_port}/aseptic/VHP1"}},
        "emulator": {
            "sim_speed": 200.0,
            "security": {"mode": "sign_and_encrypt", "pki_dir": str(pki),
                         "users_file": str(ROOT / "config" / "users.yaml")},
        },
        "client": dict(TEST_CLIENT, security={
            "mode": "sign_and_encrypt", "certificate": str(ident.cert), "private_key": str(ident.key),
            "user": "sup1", "password_env": "H6_TEST_DEVICE_PASSWORD",
        }),
    }
    (tmp / "opcua.yaml").write_text(yaml.safe_dump(data))
    emu = Emulator(tmp / "opcua.yaml", ["ISO1", "VHP1"], tmp / "emu.log").start()
    try:
        emu.wait_ready(180)
        yield {
            "tmp": tmp, "endpoint": data["devices"]["ISO1"]["endpoint"],
            "ident": ident, "server_cert": pki / "ISO1" / "own" / "cert.der",
            "vhp": {"endpoint": data["devices"]["VHP1"]["endpoint"], "ident": ident,
                    "server_cert": pki / "VHP1" / "own" / "cert.der"},
        }
    finally:
        emu.stop()


async def _secure_session(bench, user):
    c = client_for(bench["endpoint"], bench["ident"], bench["server_cert"], user=user, password=PASSWORDS[user])
    await secure(c)
    await c.connect()
    return c


async def _call(c, folder, method_nid, *args):
    ns = await c.get_namespace_index(NS_URI)
    try:
        return await c.get_node(ua.NodeId(nid_folder("ISO1", folder), ns)).call_method(
            ua.NodeId(method_nid, ns), *[ua.Variant(a, ua.VariantType.String) for a in args])
    except UaStatusCodeError as exc:
        return type(exc).__name__


def test_secure_mode_refuses_anonymous_none_channels_and_unknown_users(bench):
    async def anonymous():
        try:
            async with Client(bench["endpoint"], timeout=5) as c:
                await c.get_namespace_index(NS_URI)
        except Exception as exc:  # noqa: BLE001
            return type(exc).__name__
        return "CONNECTED"

    async def wrong_password():
        c = client_for(bench["endpoint"], bench["ident"], bench["server_cert"], user="mallory", password="guess-1234")
        await secure(c)
        try:
            await c.connect()
        except Exception as exc:  # noqa: BLE001
            return type(exc).__name__
        await c.disconnect()
        return "CONNECTED"

    async def endpoints():
        c = Client(bench["endpoint"], timeout=5)
        return await c.connect_and_get_server_endpoints()

    assert run(anonymous()) != "CONNECTED"
    assert run(wrong_password()) != "CONNECTED"
    eps = run(endpoints())
    assert {(e.SecurityMode, e.SecurityPolicyUri.rsplit("#", 1)[1]) for e in eps} == {
        (ua.MessageSecurityMode.SignAndEncrypt, "Basic256Sha256")}
    assert {t.TokenType for e in eps for t in e.UserIdentityTokens} == {ua.UserTokenType.UserName}


def test_secure_mode_method_roles(bench):
    async def go():
        op = await _secure_session(bench, "op1")  # operator: not in command_roles
        sup = await _secure_session(bench, "sup1")
        eng = await _secure_session(bench, "eng1")
        try:
            return (
                await _call(op, "Methods", nid_method("ISO1", "close_door"), '{"door": "A"}', "op1", "t"),
                await _call(sup, "Emulator", nid_fault("ISO1", "InjectFault"), "sensor:dp_pa", '{"mode": "nan"}'),
                await _call(eng, "Emulator", nid_fault("ISO1", "InjectFault"), "sensor:dp_pa", '{"mode": "nan"}'),
                await _call(eng, "Emulator", nid_fault("ISO1", "ClearFault"), ""),
            )
        finally:
            for c in (op, sup, eng):
                await c.disconnect()

    op_cmd, sup_fault, eng_fault, eng_clear = run(go())
    assert op_cmd == "BadUserAccessDenied"
    assert sup_fault == "BadUserAccessDenied"  # fault injection: engineer only
    assert eng_fault[0] is True and eng_clear[0] is True


def test_secure_mode_lads_program_methods_are_role_checked(bench):
    """LADS StartProgram/Abort on the VHP unit: the command roles only; the operator is the session's
    account (another name in Properties is refused); the result keeps it."""
    import struct

    from aseptic_cell.opcua.nodesets import NS

    async def go():
        op = await _secure_session(bench["vhp"], "op1")  # operator: not in command_roles
        sup = await _secure_session(bench["vhp"], "sup1")
        out = {}
        try:
            lads, own = (await sup.get_namespace_array()).index(NS["LADS"]), await sup.get_namespace_index(NS_URI)

            def kv(key, value):  # LADS KeyValueType, Default Binary (ns=LADS;i=5045)
                body = b"".join(struct.pack("<i", len(x.encode())) + x.encode() for x in (key, value))
                return ua.ExtensionObject(TypeId=ua.NodeId(5045, lads), Body=body)

            async def call(c, label, method, *args):
                fsm = c.get_node(ua.NodeId("VHP1/lads/Decon", own))
                fsm = await fsm.get_child([f"{lads}:FunctionalUnitState"])
                try:
                    out[label] = await fsm.call_method(f"{lads}:{method}", *args)
                except UaStatusCodeError as exc:
                    out[label] = type(exc).__name__
                out[label + ".state"] = (await (await fsm.get_child(["0:CurrentState"])).read_value()).Text

            none = ua.Variant([], ua.VariantType.ExtensionObject)
            other = ua.Variant([kv("Operator", "op1")], ua.VariantType.ExtensionObject)
            await call(op, "op_start", "StartProgram", "VHP-ISO-SHORT", none, "J", "T", none)
            await call(sup, "sup_start_as_other", "StartProgram", "VHP-ISO-SHORT", other, "J", "T", none)
            await call(sup, "sup_start", "StartProgram", "VHP-ISO-SHORT", none, "J", "T", none)
            await call(op, "op_abort", "Abort")
            await call(sup, "sup_abort", "Abort")
        finally:
            for c in (op, sup):
                await c.disconnect()
        return out

    out = run(go())
    assert out["op_start"] == "BadUserAccessDenied" and out["op_start.state"] == "Stopped"
    assert out["sup_start_as_other"] == "BadInvalidArgument" and out["sup_start_as_other.state"] == "Stopped"
    assert str(out["sup_start"]).startswith("VHP1-") and out["sup_start.state"] in ("Running", "Aborting")
    assert out["op_abort"] == "BadUserAccessDenied"
    assert out["sup_abort"] is None and out["sup_abort.state"] == "Aborting"  # aeration runs on


def test_bridge_backend_drives_the_device_over_sign_and_encrypt(bench, monkeypatch):
    monkeypatch.setenv("H6_TEST_DEVICE_PASSWORD", PASSWORDS["sup1"])
    cfg = load_opcua_config(bench["tmp"] / "opcua.yaml")
    b = OpcUaBackend(device_id="ISO1", kind="isolator", config=cfg)
    try:
        b.connect(30.0)
        assert b.connected() and b.latest() is not None
        out = b.command("close_door", {"door": "A"}, user="t")
        assert out.code in ("OK", "ALREADY"), out
    finally:
        b.close()
    # an unknown account (a wrong password for a real one would count towards its lock-out)
    monkeypatch.setenv("H6_TEST_DEVICE_PASSWORD", "wrong-password-1")
    cfg.client.security.user = "mallory"
    b = OpcUaBackend(device_id="ISO1", kind="isolator", config=cfg)
    try:
        with pytest.raises(Exception):  # noqa: B017 - any connection failure
            b.connect(3.0)
        assert not b.connected()
    finally:
        b.close()


def test_fault_methods_are_off_by_default():
    # (a server started without --fault-methods has no Emulator folder: tests/hil/test_companion_specs.py)
    assert load_opcua_config(ROOT / "config" / "opcua.yaml").emulator.expose_fault_methods is False
