"""The bridge reads the standard model (issue 18 item 6, must show 3): the OPC UA device backend finds
its nodes by browse paths configured in opcua.yaml ``mapping``, never by NodeIds.

* the emulated isolator, VHP unit and autoclave (in-process asyncua servers over a real SimCell, a real
  backend over TCP) are driven through the ``lads`` layout: LADSDeviceType -> FunctionalUnitSet -> each
  functional unit -> FunctionSet; the readings are exactly the device's, commands reach the device;
* a second, minimal LADS server of "another vendor" built here (standard LADS types, its own names and
  layout: device under DI's DeviceSet, LADS sensor-function objects, clock and command method elsewhere)
  is driven with configuration only; a layout that does not fit is refused with the path that failed.
(The existing HIL tests, tests/hil/test_opcua_hil.py and the node-opcua device server of
tests/hil/test_interop_node_opcua.py, run the device nodes on the same default mapping.)
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from asyncua import Server, ua

from aseptic_cell.devices.backend import BackendError
from aseptic_cell.devices.opcua_backend import OpcUaBackend
from aseptic_cell.opcua.config import BrowseMapping, OpcUaConfigError, load_opcua_config, parse_opcua_config

from .conftest import ROOT

MY_PORTS = range(46000, 46200)  # this test module's OPC UA ports


def free_ports(n: int) -> list[int]:
    import random
    import socket

    out: list[int] = []
    for p in random.sample(list(MY_PORTS), len(MY_PORTS)):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
        out.append(p)
        if len(out) == n:
            return out
    raise RuntimeError("no free ports in 46000-46199")

pytestmark = [pytest.mark.hil, pytest.mark.timeout(240)]

FAST = {"publishing_interval_ms": 50.0, "health_period_s": 0.5, "silence_timeout_s": 30.0}


def test_config_file_mapping_is_the_built_in_default():
    cfg = load_opcua_config(ROOT / "config" / "opcua.yaml")
    assert cfg.mapping == BrowseMapping()
    assert [n for n, _ in cfg.mapping.for_device("vhp")] == ["lads", "project"]
    assert [n for n, _ in cfg.mapping.for_device("arm")] == ["project"]


@pytest.mark.parametrize(("mapping", "devices", "expect"), [
    ({"layouts": {"x": {"device": ["DeviceSet"], "clock": ["dev:T"], "readings": [["dev:P"]]}}}, {},
     "path element 'DeviceSet' is not '<alias>:<BrowseName>'"),
    ({"layouts": {"x": {"device": ["vendor:D"], "clock": ["dev:T"], "readings": [["dev:P"]]}}}, {},
     "namespace alias 'vendor'"),
    ({"kinds": {"vhp": ["nope"]}}, {}, "mapping.kinds.vhp: unknown layouts ['nope']"),
    ({"namespaces": {"0": "urn:other"}}, {}, "alias '0' is the OPC UA namespace"),
    ({}, {"layouts": ["vendor"]}, "devices.VHP1.layouts: unknown layouts ['vendor']"),
])
def test_mapping_errors_are_precise(mapping, devices, expect):
    data = {"devices": {"VHP1": {"endpoint": "opc.tcp://127.0.0.1:46010/x", **devices}}, "mapping": mapping}
    with pytest.raises(OpcUaConfigError) as e:
        parse_opcua_config(data)
    assert expect in str(e.value)


def _backend(cfg: Any, dev: str, kind: str) -> OpcUaBackend:
    return OpcUaBackend(device_id=dev, kind=kind, config=cfg, **FAST)


async def _wait(pred: Any, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {what}")
        await asyncio.sleep(0.05)


async def _emulated_cell(ports: list[int]) -> dict[str, Any]:
    from aseptic_cell.config import load_config
    from aseptic_cell.opcua.emulator import EmulatedWorld

    devs = {"ISO1": "isolator", "VHP1": "vhp", "AC1": "autoclave"}
    ocfg = parse_opcua_config({
        "devices": {d: {"endpoint": f"opc.tcp://127.0.0.1:{p}/aseptic/{d}"} for d, p in zip(devs, ports, strict=True)}
    })
    world = EmulatedWorld(load_config(ROOT / "config"), ocfg, list(devs))
    await world.start()  # builds every address space, then listens
    out: dict[str, Any] = {}
    backends: list[OpcUaBackend] = []
    try:
        for dev, kind in devs.items():
            b = _backend(ocfg, dev, kind)
            backends.append(b)
            await asyncio.to_thread(b.connect, 60.0)
            r = b.latest()
            assert r is not None
            want = {k: v for k, v in world.readings(dev).items() if k != "t"}
            got = {k: v for k, v in r.values.items() if k != "t"}
            out[dev] = {"layout": b.layout, "keys": (set(got), set(want)),
                        "same": all(got[k] == v or (isinstance(v, float) and v != v and got[k] != got[k])
                                    or not isinstance(v, (bool, int, float, str)) for k, v in want.items())}
        iso, vhp, ac = backends
        out["ISO1"]["safe_state"] = await asyncio.to_thread(iso.command, "safe_state", {}, user="op1", reason="t")
        out["VHP1"]["bad_cycle"] = await asyncio.to_thread(
            vhp.command, "start_cycle", {"cycle_id": "NO-SUCH-CYCLE", "operator": "op1"}, user="op1", reason="t")
        out["VHP1"]["unknown"] = await asyncio.to_thread(vhp.command, "fly", {}, user="op1")
        before = (ac.latest().values.get("load_door_state"))  # type: ignore[union-attr]
        out["AC1"]["open"] = await asyncio.to_thread(ac.command, "open_door", {"side": "load"}, user="op1", reason="t")
        for _ in range(120):  # 60 sim s: the door moves; the new value arrives by subscription
            world.cell.step(0.5)
        await world.publish()
        await _wait(lambda: ac.latest().values.get("load_door_state") != before, "load door state")  # type: ignore[union-attr]
        out["AC1"]["door"] = (before, ac.latest().values.get("load_door_state"))  # type: ignore[union-attr]
    finally:
        for b in backends:
            await asyncio.to_thread(b.close)
        await world.stop()
    return out


def test_bridge_drives_isolator_vhp_and_autoclave_through_the_lads_model():
    out = asyncio.run(asyncio.wait_for(_emulated_cell(free_ports(3)), 200))
    for dev in ("ISO1", "VHP1", "AC1"):
        got, want = out[dev]["keys"]
        assert out[dev]["layout"] == "lads", out[dev]["layout"]
        assert got == want, (dev, got ^ want)  # every reading of the device, through FunctionSet
        assert out[dev]["same"], dev
    assert out["ISO1"]["safe_state"].accepted, out["ISO1"]["safe_state"]
    bad = out["VHP1"]["bad_cycle"]
    assert not bad.accepted and bad.code == "INVALID" and "NO-SUCH-CYCLE" in bad.reason, bad
    unknown = out["VHP1"]["unknown"]
    assert not unknown.accepted and unknown.code == "INVALID" and "no method for 'fly'" in unknown.reason
    assert out["AC1"]["open"].accepted, out["AC1"]["open"]
    assert out["AC1"]["door"][0] != out["AC1"]["door"][1]


# ---------------------------------------------------------------- another vendor's LADS server
VENDOR_NS = "urn:example-vendor:vx"
VENDOR_MAPPING = {
    "namespaces": {"DI": "http://opcfoundation.org/UA/DI/", "LADS": "http://opcfoundation.org/UA/LADS/",
                   "vx": VENDOR_NS},
    "layouts": {"vx": {
        "device": ["DI:DeviceSet", "vx:VX-200 {device}"],
        "clock": ["vx:Diagnostics", "vx:OperatingSeconds"],
        "readings": [["LADS:FunctionalUnitSet", "*", "LADS:FunctionSet"]],
        "commands": {"abort": ["vx:Service", "vx:AbortCycle"]},
        "rename": {"H2O2Concentration": "h2o2_ppm", "ChamberSealed": "hold_closed"},
    }},
}


async def _vendor_server(port: int) -> tuple[Server, dict[str, Any]]:
    from aseptic_cell.opcua.companion import (
        LADS_DEVICE_TYPE,
        LADS_FUNCTION_SET_TYPE,
        LADS_FUNCTIONAL_UNIT_TYPE,
        add_typed_object,
    )
    from aseptic_cell.opcua.emulator import IN_ARGS, OUT_ARGS
    from aseptic_cell.opcua.nodesets import load_companion_specs

    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/vx")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    spec = await load_companion_specs(server)
    vx, lads = await server.register_namespace(VENDOR_NS), spec.ns["LADS"]
    state: dict[str, Any] = {"calls": []}

    def nid(s: str) -> ua.NodeId:
        return ua.NodeId(s, vx)  # type: ignore[arg-type]

    devset = server.get_node(ua.NodeId(5001, spec.ns["DI"]))  # type: ignore[arg-type]
    dev = await add_typed_object(server, devset, nid("dev"), ua.QualifiedName("VX-200 VHP9", vx),
                                 ua.NodeId(LADS_DEVICE_TYPE, lads))  # type: ignore[arg-type]
    fus = await dev.get_child([f"{lads}:FunctionalUnitSet"])
    unit = await add_typed_object(server, fus, nid("gen"), ua.QualifiedName("Generator", vx),
                                  ua.NodeId(LADS_FUNCTIONAL_UNIT_TYPE, lads))  # type: ignore[arg-type]
    fset = await add_typed_object(server, unit, nid("gen/fs"), ua.QualifiedName("FunctionSet", lads),
                                  ua.NodeId(LADS_FUNCTION_SET_TYPE, lads))  # type: ignore[arg-type]
    for name, tid, value in (("H2O2Concentration", 1016, 412.0), ("ChamberSealed", 1031, True)):
        fn = await add_typed_object(server, fset, nid(f"fn/{name}"), ua.QualifiedName(name, vx),
                                    ua.NodeId(tid, lads))  # type: ignore[arg-type]
        sv = await fn.get_child([f"{lads}:SensorValue"])
        await sv.write_value(ua.Variant(value, ua.VariantType.Double if isinstance(value, float)
                                        else ua.VariantType.Boolean))
        state[name] = sv
    state["phase"] = await fset.add_variable(nid("phase"), ua.QualifiedName("phase", vx), "IDLE")
    diag = await dev.add_object(nid("diag"), ua.QualifiedName("Diagnostics", vx))
    state["clock"] = await diag.add_variable(nid("clock"), ua.QualifiedName("OperatingSeconds", vx), 100.0)
    service = await dev.add_object(nid("svc"), ua.QualifiedName("Service", vx))

    async def abort(parent: ua.NodeId, *args: Any) -> list[ua.Variant]:
        state["calls"].append([a.Value if isinstance(a, ua.Variant) else a for a in args])
        return [ua.Variant(True, ua.VariantType.Boolean), ua.Variant("OK", ua.VariantType.String),
                ua.Variant("", ua.VariantType.String), ua.Variant('{"aborted": true}', ua.VariantType.String)]

    await service.add_method(nid("svc/abort"), ua.QualifiedName("AbortCycle", vx), abort, IN_ARGS, OUT_ARGS)
    await server.start()
    return server, state


async def _drive_vendor(port: int) -> dict[str, Any]:
    server, state = await _vendor_server(port)
    endpoint = f"opc.tcp://127.0.0.1:{port}/vx"
    out: dict[str, Any] = {}
    try:
        cfg = parse_opcua_config({"devices": {"VHP9": {"endpoint": endpoint, "layouts": ["vx"]}},
                                  "mapping": VENDOR_MAPPING, "client": FAST})
        b = _backend(cfg, "VHP9", "vhp")
        try:
            await asyncio.to_thread(b.connect, 60.0)
            out["layout"] = b.layout
            out["first"] = dict(b.latest().values)  # type: ignore[union-attr]
            await state["H2O2Concentration"].write_value(ua.Variant(655.5, ua.VariantType.Double))
            await state["clock"].write_value(ua.Variant(101.0, ua.VariantType.Double))
            await _wait(lambda: b.latest().values.get("h2o2_ppm") == 655.5, "new concentration")  # type: ignore[union-attr]
            out["second"] = dict(b.latest().values)  # type: ignore[union-attr]
            out["abort"] = await asyncio.to_thread(b.command, "abort", {"reason": "test"}, user="op1", reason="r")
            out["start"] = await asyncio.to_thread(b.command, "start_cycle", {"cycle_id": "X"}, user="op1")
            out["calls"] = list(state["calls"])
        finally:
            await asyncio.to_thread(b.close)
        # the same server with a layout that does not fit: refused, with the path that failed
        wrong = json.loads(json.dumps(VENDOR_MAPPING))
        wrong["layouts"]["vx"]["clock"] = ["vx:Diagnostics", "vx:Uptime"]
        cfg2 = parse_opcua_config({"devices": {"VHP9": {"endpoint": endpoint, "layouts": ["vx"]}},
                                   "mapping": wrong, "client": FAST})
        b2 = _backend(cfg2, "VHP9", "vhp")
        try:
            await asyncio.to_thread(b2.connect, 2.0)
        except BackendError as exc:
            out["refused"] = str(exc)
        finally:
            await asyncio.to_thread(b2.close)
        # the project layout alone on a vendor server: no namespace of ours, refused
        cfg3 = parse_opcua_config({"devices": {"VHP9": {"endpoint": endpoint, "layouts": ["project"]}},
                                   "client": FAST})
        b3 = _backend(cfg3, "VHP9", "vhp")
        try:
            await asyncio.to_thread(b3.connect, 2.0)
        except BackendError as exc:
            out["refused_project"] = str(exc)
        finally:
            await asyncio.to_thread(b3.close)
    finally:
        await server.stop()
    return out


def test_another_vendors_lads_server_is_driven_by_configuration_only():
    (port,) = free_ports(1)
    out = asyncio.run(asyncio.wait_for(_drive_vendor(port), 200))
    assert out["layout"] == "vx"
    first, second = out["first"], out["second"]
    assert first["h2o2_ppm"] == 412.0 and first["hold_closed"] is True and first["phase"] == "IDLE", first
    assert first["t"] == 100.0 and second["t"] == 101.0  # the device's clock, from the configured path
    assert set(first) == {"h2o2_ppm", "hold_closed", "phase", "t"}, first
    assert second["h2o2_ppm"] == 655.5
    assert out["abort"].accepted and out["abort"].payload == {"aborted": True}, out["abort"]
    assert out["calls"] == [[json.dumps({"reason": "test"}), "op1", "r"]]
    assert not out["start"].accepted and out["start"].code == "INVALID", out["start"]
    assert "vx:Diagnostics/vx:Uptime not found" in out["refused"], out["refused"]
    assert "namespaces not on the server: dev=urn:aseptic-cell:device" in out["refused_project"], out
