"""LADS program execution on an emulated device (issue 18), in-process: one asyncua device server
(the autoclave AC1 of a real SimCell, stepped by the test, so no wall-clock pacing), a real asyncua
client over TCP on loopback. The functional unit ``Sterilizer``'s FunctionalUnitStateMachine and
program manager: templates from config/autoclave_programs.yaml, the refusals (unknown template, no
operator, unknown property, the device's own interlock, wrong state), Stop -> Stopping -> Stopped while
the chamber vents, and the result object. (The VHP unit through node-opcua:
tests/hil/test_companion_specs.py; the role check on a sign_and_encrypt server:
tests/hil/test_opcua_secure_emulator.py.)"""

from __future__ import annotations

import asyncio
import struct

import pytest
from asyncua import Client, ua
from asyncua.ua.uaerrors import UaStatusCodeError

from aseptic_cell.opcua.nodesets import NS

from .conftest import ROOT, free_ports

pytestmark = [pytest.mark.hil, pytest.mark.timeout(240)]

KV_BINARY = 5045  # LADS KeyValueType's Default Binary encoding (Opc.Ua.LADS.NodeSet2.xml)


def kv(key: str, value: str, lads: int) -> ua.ExtensionObject:
    """A LADS KeyValueType (two UA Strings), encoded by hand: the test needs no type download."""
    body = b"".join(struct.pack("<i", len(s.encode())) + s.encode() for s in (key, value))
    return ua.ExtensionObject(TypeId=ua.NodeId(KV_BINARY, lads), Body=body)


def kv_decode(obj: object) -> tuple[str, str]:
    if not isinstance(obj, ua.ExtensionObject):
        return obj.Key, obj.Value  # type: ignore[attr-defined]
    body, out = obj.Body, []
    for _ in range(2):
        (n,) = struct.unpack_from("<i", body)
        out.append(body[4:4 + n].decode())
        body = body[4 + n:]
    return out[0], out[1]


def props(lads: int, **kw: str) -> ua.Variant:
    return ua.Variant([kv(k, v, lads) for k, v in kw.items()], ua.VariantType.ExtensionObject)


async def _scenario(port: int) -> dict:
    from aseptic_cell.config import load_config
    from aseptic_cell.opcua.config import parse_opcua_config
    from aseptic_cell.opcua.emulator import EmulatedWorld

    endpoint = f"opc.tcp://127.0.0.1:{port}/aseptic/AC1"
    ocfg = parse_opcua_config({"devices": {"AC1": {"endpoint": endpoint}}})
    world = EmulatedWorld(load_config(ROOT / "config"), ocfg, ["AC1"])
    await world.start()
    out: dict = {"calls": {}}

    async def advance(sim_s: float) -> None:
        for _ in range(int(sim_s / 0.5)):
            world.cell.step(0.5)
        await world.publish()

    try:
        async with Client(endpoint, timeout=20) as c:
            arr = await c.get_namespace_array()
            lads, own = arr.index(NS["LADS"]), arr.index("urn:aseptic-cell:device")
            unit = c.get_node(ua.NodeId("AC1/lads/Sterilizer", own))
            fsm = await unit.get_child([f"{lads}:FunctionalUnitState"])
            cur = await fsm.get_child(["0:CurrentState"])
            cur_id = await cur.get_child(["0:Id"])
            pm = await unit.get_child([f"{lads}:ProgramManager"])
            tset = await pm.get_child([f"{lads}:ProgramTemplateSet"])
            out["templates"] = sorted([(await t.read_browse_name()).Name for t in await tset.get_children()
                                       if await t.read_node_class() == ua.NodeClass.Object])
            p121 = await pm.get_child([f"{lads}:ProgramTemplateSet", f"{lads}:P121-15"])
            out["template_id"] = await (await p121.get_child([f"{lads}:DeviceTemplateId"])).read_value()

            async def state() -> tuple[str, str]:
                sid = await cur_id.read_value()
                return (await cur.read_value()).Text, (await c.get_node(sid).read_browse_name()).Name

            async def call(label: str, method: str, *args) -> object:
                try:
                    res = await fsm.call_method(f"{lads}:{method}", *args)
                except UaStatusCodeError as exc:
                    res = type(exc).__name__
                out["calls"][label] = (res, (await state())[0])
                return res

            none = ua.Variant([], ua.VariantType.ExtensionObject)
            out["initial"] = await state()
            await call("unknown_template", "StartProgram", "P999", props(lads, Operator="op1"), "J", "T", none)
            await call("no_operator", "StartProgram", "P121-15", none, "J", "T", none)
            await call("unknown_property", "StartProgram", "P121-15", props(lads, Operator="op1", Speed="11"),
                       "J", "T", none)
            # a door open: the device's own interlock refuses (a door not closed, locked and sealed)
            world.cell.command("AC1", "open_door", {"side": "load"})
            await advance(60.0)
            out["load_door"] = (await world.publish(), world.readings("AC1").get("load_door_state"))[1]
            await call("doors_open", "StartProgram", "P121-15", props(lads, Operator="op1", LoadId="L1"),
                       "J", "T", none)
            await call("stop_when_stopped", "Stop")
            await call("clear_when_stopped", "Clear")
            world.cell.command("AC1", "close_door", {"side": "load"})
            await advance(60.0)
            run_id = await call("start", "StartProgram", "P121-15", props(lads, Operator="op1", LoadId="L1"),
                                "JOB-7", "TASK-3", none)
            await advance(30.0)
            out["running"] = await state()
            step = await pm.get_child([f"{lads}:ActiveProgram", f"{lads}:CurrentStepName"])
            out["step"] = (await step.read_value()).Text
            await call("start_when_running", "StartProgram", "P121-15", props(lads, Operator="op1", LoadId="L1"),
                       "J", "T", none)
            await call("stop", "Stop")
            out["stopping"] = await state()
            for _ in range(200):  # the chamber vents (a few sim minutes)
                if (await state())[0] != "Stopping":
                    break
                await advance(30.0)
            out["after_stop"] = await state()
            res = await pm.get_child([f"{lads}:ResultSet", f"{lads}:{run_id}"])
            out["result"] = {
                name: await (await res.get_child(path)).read_value() for name, path in (
                    ("user", [f"{lads}:User"]), ("job", [f"{lads}:SupervisoryJobId"]),
                    ("task", [f"{lads}:SupervisoryTaskId"]), ("run", [f"{lads}:DeviceProgramRunId"]),
                    ("verdict", [f"{lads}:VariableSet", f"{lads}:Result"]),
                    ("template", [f"{lads}:ProgramTemplate", f"{lads}:DeviceTemplateId"]),
                    ("properties", [f"{lads}:Properties"]))}
            out["run_id"] = run_id
    finally:
        await world.stop()
    return out


@pytest.fixture(scope="module")
def scenario():
    (port,) = free_ports(1)
    return asyncio.run(asyncio.wait_for(_scenario(port), 200))


def test_templates_are_the_configured_programs(scenario):
    import yaml

    programs = yaml.safe_load((ROOT / "config" / "autoclave_programs.yaml").read_text())["programs"]
    assert scenario["templates"] == sorted(p["id"] for p in programs)
    assert scenario["template_id"] == "P121-15"
    assert scenario["initial"] == ("Stopped", "Stopped")  # CurrentState and its Id (the type's state)


def test_refusals_leave_the_unit_stopped(scenario):
    calls = scenario["calls"]
    for label in ("unknown_template", "no_operator", "unknown_property"):
        assert calls[label] == ("BadInvalidArgument", "Stopped"), label
    assert scenario["load_door"] == "OPEN"
    assert calls["doors_open"] == ("BadInvalidState", "Stopped")  # the device's interlock (doors not sealed)
    assert calls["stop_when_stopped"] == ("BadInvalidState", "Stopped")
    assert calls["clear_when_stopped"] == ("BadInvalidState", "Stopped")
    assert calls["start_when_running"] == ("BadInvalidState", "Running")


def test_program_runs_stops_and_leaves_a_result(scenario):
    assert scenario["calls"]["start"][1] == "Running" and scenario["run_id"].startswith("AC1")
    assert scenario["running"] == ("Running", "Running") and scenario["step"] not in ("", "IDLE")
    assert scenario["calls"]["stop"] == (None, "Stopping") and scenario["stopping"][1] == "Stopping"
    assert scenario["after_stop"] == ("Stopped", "Stopped")  # a stop ends Stopped (not latched)
    r = scenario["result"]
    assert r["run"] == scenario["run_id"] and r["user"] == "op1" and (r["job"], r["task"]) == ("JOB-7", "TASK-3")
    assert r["verdict"] == "FAIL" and r["template"] == "P121-15"
    assert sorted(kv_decode(p) for p in r["properties"]) == [("LoadId", "L1"), ("Operator", "op1")]
