"""The cell server mirrors the supervisor's ROS contract (docs/ROS_API.md) and forwards batch
commands with the OPC UA session's user; node-opcua (an independent stack) browses, reads,
subscribes and calls methods over SignAndEncrypt. Server in its own process; a fake supervisor
(``FakeSupervisor``) on this test's ROS domain."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import threading
import time

import pytest
from asyncua import ua
from asyncua.ua.uaerrors import UaStatusCodeError

from aseptic_cell.opcua.server.testing import (
    REPO,
    FakeSupervisor,
    ServerProcess,
    client_for,
    make_client_identity,
    secure,
    trust,
)

pytestmark = [pytest.mark.hil, pytest.mark.timeout(100)]

NS_URI = "urn:aseptic-cell:opcua:cell"


@pytest.fixture(scope="module")
def fake():
    f = FakeSupervisor(int(os.environ["ROS_DOMAIN_ID"]))
    yield f
    f.close()


@pytest.fixture(scope="module")
def cell(tmp_path_factory, fake):
    wd = tmp_path_factory.mktemp("cellsrv-ros")
    ident = make_client_identity(wd / "client", "tester")
    node_ident = make_client_identity(wd / "client", "nodeclient", "urn:aseptic-cell:test:node-opcua")
    server = ServerProcess(wd, ros=True, overrides={"stale_after_s": 1.5})
    trust(server.pki_dir, ident)
    trust(server.pki_dir, node_ident)
    server.start(timeout_s=60)
    server.ident, server.node_ident, server.wd = ident, node_ident, wd  # type: ignore[attr-defined]
    deadline = time.monotonic() + 20
    while fake.subscribers("batch") == 0 or fake.subscribers("isolator") == 0:
        assert time.monotonic() < deadline, "server's ROS bridge never subscribed"
        time.sleep(0.1)
    yield server
    assert server.stop() == 0, server.log_text()[-3000:]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


class Session:
    def __init__(self, cell, user, password):
        self.c = client_for(cell.endpoint, cell.ident, cell.server_cert, user=user, password=password)

    async def __aenter__(self):
        await secure(self.c)
        await self.c.connect()
        self.ns = await self.c.get_namespace_index(NS_URI)
        return self

    async def __aexit__(self, *exc):
        await self.c.disconnect()

    def node(self, path):
        return self.c.get_node(ua.NodeId(f"ATMPCell01.{path}", self.ns))

    async def read(self, path):
        return await self.node(path).read_data_value(raise_on_bad_status=False)

    async def wait(self, path, pred, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            dv = await self.read(path)
            if pred(dv):
                return dv
            if time.monotonic() > deadline:
                raise AssertionError(f"{path}: {dv.StatusCode} {dv.Value.Value!r}")
            await asyncio.sleep(0.05)

    async def call(self, method, *args):
        try:
            return await self.node("Supervisor").call_method(self.node(f"Supervisor.{method}"), *args)
        except UaStatusCodeError as exc:
            return type(exc).__name__


def _repeat(fn, stop: threading.Event, period=0.1):
    def loop():
        while not stop.is_set():
            fn()
            stop.wait(period)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t


def test_supervisor_state_interlocks_alarms_and_devices_are_mirrored(cell, fake):
    stop = threading.Event()
    alarms = [
        {
            "alarm_id": "NODE_LOST_vhp",
            "source": "lifecycle_manager",
            "priority": 800,
            "state": "ACTIVE",
            "message": "vhp lost",
        },
        {
            "alarm_id": "PARTICLES_ALERT",
            "source": "ISO1",
            "priority": 300,
            "state": "ACKED",
            "message": "alert",
        },
    ]

    def publish():
        fake.batch(
            batch_id="B-0001",
            recipe_id="R-CAR-T",
            recipe_version=3,
            state="HELD",
            unit_procedure="UP1",
            operation="OP2",
            phase="fill",
            phase_state="Held",
            phase_progress=0.4,
            held_reason="IL-04",
        )
        fake.interlocks(
            [
                {
                    "rule_id": "IL-01",
                    "instance": "door=A,other=B",
                    "title": "hatch doors",
                    "state": "VIOLATED",
                    "severity": "critical",
                    "reasons": ["hatch_b open"],
                },
                {
                    "rule_id": "IL-99",
                    "instance": "",
                    "title": "new rule",
                    "state": "SATISFIED",
                    "severity": "minor",
                    "reasons": [],
                },
            ]
        )
        fake.alarms(alarms)
        fake.device(
            "isolator",
            device_id="ISO1",
            lifecycle_state="active (latched)",
            comm_ok=True,
            dp_pa=45.5,
            decon_status="DECONTAMINATED_RELEASED",
            faults=["none"],
        )

    _repeat(publish, stop)

    async def go():
        async with Session(cell, "op1", "op1-demo-2026") as s:
            good = lambda dv: dv.StatusCode.is_good()  # noqa: E731
            assert (
                await s.wait("Supervisor.CurrentState", lambda dv: dv.Value.Value == "Held")
            ).StatusCode.is_good()
            assert (await s.read("Supervisor.CurrentStateNumber")).Value.Value == 15
            assert (await s.read("Supervisor.ISA88State")).Value.Value == "HELD"
            assert (await s.read("Supervisor.ActiveBatch.BatchId")).Value.Value == "B-0001"
            assert (await s.read("Supervisor.ActiveBatch.RecipeVersion")).Value.Value == 3
            assert (await s.read("MachineryItemState")).Value.Value == "NotExecuting"
            il = await s.wait(
                "Interlocks.IL-01[door=A,other=B].State", lambda dv: dv.Value.Value == "VIOLATED"
            )
            assert il.StatusCode.is_good()
            assert (await s.read("Interlocks.IL-01[door=A,other=B].Reasons")).Value.Value == ["hatch_b open"]
            assert (
                await s.wait("Interlocks.IL-99.State", good)
            ).Value.Value == "SATISFIED"  # created on the fly
            await s.wait("Alarms.ActiveCount", lambda dv: dv.Value.Value == 2)
            assert (await s.read("Alarms.HighestSeverity")).Value.Value == 800
            assert (await s.read("Alarms.Active.NODE_LOST_vhp.Priority")).Value.Value == "high"
            assert (await s.read("Alarms.Active.PARTICLES_ALERT.Priority")).Value.Value == "low"
            assert sorted((await s.read("Alarms.ActiveIds")).Value.Value) == [
                "NODE_LOST_vhp",
                "PARTICLES_ALERT",
            ]
            await s.wait("Devices.ISO1.DifferentialPressure_Pa", lambda dv: dv.Value.Value == 45.5)
            assert (await s.read("Devices.ISO1.Latched")).Value.Value is True
            assert (await s.read("Devices.ISO1.DeconStatus")).Value.Value == "DECONTAMINATED_RELEASED"
            await s.wait("Supervisor.Connected", lambda dv: dv.Value.Value is True, timeout=5)

            # an alarm that clears disappears from the address space
            del alarms[1]
            await s.wait("Alarms.ActiveCount", lambda dv: dv.Value.Value == 1)
            dv = await s.read("Alarms.Active.PARTICLES_ALERT.Priority")
            assert dv.StatusCode.value == ua.StatusCodes.BadNodeIdUnknown

            # data that stops arriving is flagged, not silently kept
            stop.set()
            dv = await s.wait("Supervisor.CurrentState", lambda dv: not dv.StatusCode.is_good(), timeout=6)
            assert dv.StatusCode.value == ua.StatusCodes.UncertainLastUsableValue
            assert dv.Value.Value == "Held"
            assert (await s.read("MachineryItemState")).Value.Value == "NotAvailable"

    try:
        run(go())
    finally:
        stop.set()


def test_methods_forward_the_session_user_and_signature(cell, fake):
    fake.requests.clear()
    fake.replies["abort"] = (False, "SIGNATURE_FAILED", "wrong password", "HELD")

    async def go():
        async with Session(cell, "op1", "op1-demo-2026") as s:
            hold = await s.call("Hold", "operator hold")
            abort_op = await s.call("Abort", "x", "not mine")
        async with Session(cell, "sup1", "sup1-demo-2026") as s:
            unhold_nosig = await s.call("Unhold", "", "no password")
            abort = await s.call("Abort", "sup1-demo-2026", "contamination suspected")
        return hold, abort_op, unhold_nosig, abort

    hold, abort_op, unhold_nosig, abort = run(go())
    assert hold == [True, "OK", "hold accepted", "HOLDING"]
    assert abort_op == "BadUserAccessDenied"
    assert unhold_nosig[:2] == [False, "SIGNATURE_REQUIRED"]
    assert abort == [False, "SIGNATURE_FAILED", "wrong password", "HELD"]
    assert fake.requests == [
        {"command": "hold", "user": "op1", "password": "", "meaning": "", "reason": "operator hold"},
        {
            "command": "abort",
            "user": "sup1",
            "password": "sup1-demo-2026",
            "meaning": "responsibility",
            "reason": "contamination suspected",
        },
    ]


@pytest.mark.skipif(
    shutil.which("node") is None or not (REPO / "node_modules" / "node-opcua").is_dir(),
    reason="node / node-opcua not installed (make venv)",
)
def test_node_opcua_client_browses_reads_subscribes_and_calls(cell, fake):
    fake.requests.clear()
    fake.replies.pop("hold", None)
    stop = threading.Event()
    states = iter(["RUNNING", "HELD"] * 1000)  # ISA-88 -> PackML Execute, Held

    def publish():
        fake.batch(batch_id="B-0002", recipe_id="R-CAR-T", recipe_version=3, state=next(states))

    _repeat(publish, stop, period=0.15)
    ident = cell.node_ident
    opts = {
        "endpoint": cell.endpoint,
        "certFile": str(ident.cert_pem),
        "keyFile": str(ident.key),
        "applicationUri": ident.application_uri,
        "pkiDir": str(cell.wd / "node-pki"),
        "serverCert": str(cell.server_cert),
        "user": "op1",
        "password": "op1-demo-2026",
        "namespaceUri": NS_URI,
        "watchMs": 1500,
        "calls": [
            {"method": "Hold", "args": ["from node-opcua"]},
            {"method": "ReloadConfiguration", "args": ["op1-demo-2026", "try"]},
        ],
    }
    try:
        r = subprocess.run(
            ["node", str(REPO / "interop" / "cell_client_session.js"), json.dumps(opts)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=str(REPO),
        )
    finally:
        stop.set()
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["ok"] and out["steps"] == ["connect", "session", "browse", "read", "subscribe", "call"]
    assert out["securityMode"] == "SignAndEncrypt"
    assert out["securityPolicy"].endswith("#Basic256Sha256")
    assert "Machines" in out["objects"]
    assert {"Supervisor", "Identification", "Interlocks", "Alarms", "Devices"} <= set(out["cellChildren"])
    assert {"CurrentState", "ActiveBatch", "Start", "Hold", "Unhold", "Abort", "ReloadConfiguration"} <= set(
        out["supervisorChildren"]
    )
    assert out["read"]["Identification.Manufacturer"] == {
        "value": "aseptic_cell engineering",
        "status": "Good",
    }
    assert out["read"]["Supervisor.ActiveBatch.BatchId"]["value"] == "B-0002"
    seen = {n["value"] for n in out["notifications"] if n["status"] == "Good"}
    assert {"Execute", "Held"} <= seen, out["notifications"]
    assert out["calls"][0] == {
        "method": "Hold",
        "status": "Good",
        "outputs": [True, "OK", "hold accepted", "HOLDING"],
    }
    assert out["calls"][1]["status"] == "BadUserAccessDenied"
    assert fake.requests[-1]["user"] == "op1" and fake.requests[-1]["command"] == "hold"
