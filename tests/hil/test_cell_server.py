"""The cell OPC UA server over real TCP on loopback, in its own process with the ROS bridge on,
against a fake supervisor (``FakeSupervisor``) on this test's ROS domain.

* security (issue 5 item 6): None channels, users, method roles, certificates, limits;
* the supervisor's ROS contract mirrored (docs/ROS_API.md) and batch commands forwarded with the
  OPC UA session's user;
* interop: node-opcua (an independent stack) browses, reads, subscribes and calls methods over
  SignAndEncrypt.

One server process serves the whole module (server start-up dominates the run time).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest
from asyncua import Client, ua
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
B256 = "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def _session(cell, user, password, ident=None):
    c = client_for(cell.endpoint, ident or cell.ident, cell.server_cert, user=user, password=password)
    await secure(c)
    await c.connect()
    return c


async def _status_of(coro) -> str:
    try:
        c = await coro
    except UaStatusCodeError as exc:
        return type(exc).__name__
    except (TimeoutError, ConnectionError, OSError) as exc:
        return f"connection:{type(exc).__name__}"
    await c.disconnect()
    return "CONNECTED"


@pytest.fixture(scope="module")
def fake():
    f = FakeSupervisor(int(os.environ["ROS_DOMAIN_ID"]))
    yield f
    f.close()


@pytest.fixture(scope="module")
def cell(tmp_path_factory, fake):
    """The server, started with an EMPTY trust list: the fixture records what a client gets then
    (``empty_trust_status``), then trusts the test clients (the folder is re-read, no restart)."""
    wd = tmp_path_factory.mktemp("cellsrv")
    ident = make_client_identity(wd / "client", "tester")
    node_ident = make_client_identity(wd / "client", "nodeclient", "urn:aseptic-cell:test:node-opcua")
    server = ServerProcess(wd, ros=True, overrides={"stale_after_s": 1.5})
    server.start(timeout_s=90)
    server.ident, server.node_ident, server.wd = ident, node_ident, wd  # type: ignore[attr-defined]
    server.empty_trust_status = run(_status_of(_session(server, "op1", "op1-demo-2026")))  # type: ignore[attr-defined]
    trust(server.pki_dir, ident)
    trust(server.pki_dir, node_ident)
    deadline = time.monotonic() + 30
    while fake.subscribers("batch") == 0 or fake.subscribers("isolator") == 0 or fake.command_clients() == 0:
        assert time.monotonic() < deadline, "server's ROS bridge never subscribed"
        time.sleep(0.1)
    yield server
    assert server.stop() == 0, server.log_text()[-3000:]


# ---------------------------------------------------------------------------- endpoints / hole 1
def test_discovery_lists_only_basic256sha256_sign_and_encrypt(cell):
    async def go():
        c = Client(cell.endpoint, timeout=10)
        eps = await c.connect_and_get_server_endpoints()
        return [
            (e.SecurityPolicyUri, e.SecurityMode, [t.TokenType for t in e.UserIdentityTokens]) for e in eps
        ]

    eps = run(go())
    assert eps == [(B256, ua.MessageSecurityMode.SignAndEncrypt, [ua.UserTokenType.UserName])]


def test_session_on_none_channel_refused(cell):
    """A client that skips the endpoint check: None channel, then CreateSession (valid user)."""

    async def go():
        c = Client(cell.endpoint, timeout=10)
        c.set_user("op1")
        c.set_password("op1-demo-2026")
        await c.connect_socket()
        try:
            await c.send_hello()
            await c.open_secure_channel()  # SecurityPolicy#None: allowed, for discovery only
            assert len(await c.get_endpoints()) == 1
            with pytest.raises(UaStatusCodeError) as ei:
                await c.create_session()
            return ei.value.code
        finally:
            c.disconnect_socket()

    assert run(go()) == ua.StatusCodes.BadSecurityModeRejected
    assert cell.alive()


def test_activate_on_none_channel_refused_even_with_a_live_session_token(cell):
    """CreateSession on a secure channel, then ActivateSession for it from a None channel."""

    async def go():
        c1 = client_for(cell.endpoint, cell.ident, cell.server_cert)
        await secure(c1)
        await c1.connect_socket()
        c2 = Client(cell.endpoint, timeout=10)
        await c2.connect_socket()
        try:
            await c1.send_hello()
            await c1.open_secure_channel()
            await c1.create_session()
            token = c1.uaclient.protocol.authentication_token
            await c2.send_hello()
            await c2.open_secure_channel()
            c2.uaclient.protocol.authentication_token = token
            params = ua.ActivateSessionParameters()
            params.UserIdentityToken = ua.UserNameIdentityToken(
                PolicyId="username", UserName="op1", Password=b"op1-demo-2026"
            )
            with pytest.raises(UaStatusCodeError) as ei:
                await c2.uaclient.activate_session(params)
            return ei.value.code
        finally:
            c1.disconnect_socket()
            c2.disconnect_socket()

    assert run(go()) == ua.StatusCodes.BadSecurityModeRejected


def test_default_client_without_security_cannot_connect(cell):
    async def go():
        c = Client(cell.endpoint, timeout=10)
        c.set_user("op1")
        c.set_password("op1-demo-2026")
        return await _status_of(_connect(c))

    async def _connect(c):
        await c.connect()
        return c

    assert run(go()) != "CONNECTED"


# ---------------------------------------------------------------------------- users / hole 2
@pytest.mark.parametrize(
    "user,password",
    [
        (None, None),
        ("op1", "wrong-password-1"),
        ("admin", "admin"),
        ("admin", ""),
        ("Admin", "anything-goes"),
        ("op2", "op2-demo-2026"),
    ],  # op2 is disabled in users.yaml
    ids=["anonymous", "wrong-password", "admin-admin", "admin-empty", "Admin-any", "disabled-user"],
)
def test_login_refused(cell, user, password):
    status = run(_status_of(_session(cell, user, password)))
    assert status in ("BadIdentityTokenRejected", "BadIdentityTokenInvalid", "BadUserAccessDenied"), status


def test_valid_user_gets_in_but_cannot_write_or_add_nodes(cell):
    async def go():
        c = await _session(cell, "sup1", "sup1-demo-2026")
        try:
            ns = await c.get_namespace_index(NS_URI)
            state = c.get_node(ua.NodeId("ATMPCell01.Supervisor.CurrentState", ns))
            with pytest.raises(UaStatusCodeError) as w:
                await state.write_value(ua.Variant("Execute", ua.VariantType.String))
            with pytest.raises(UaStatusCodeError) as a:
                await c.nodes.objects.add_object(ns, "Intruder")
            return type(w.value).__name__, type(a.value).__name__
        finally:
            await c.disconnect()

    w, a = run(go())
    assert w in ("BadUserAccessDenied", "BadNotWritable")
    assert a == "BadUserAccessDenied"


# ---------------------------------------------------------------------------- method roles
def test_operator_cannot_call_engineer_method_but_engineer_can(cell, fake):
    async def calls(user, password, *calls):
        c = await _session(cell, user, password)
        out = []
        try:
            ns = await c.get_namespace_index(NS_URI)
            sup = c.get_node(ua.NodeId("ATMPCell01.Supervisor", ns))
            for method, *args in calls:
                try:
                    out.append(await sup.call_method(ua.NodeId(f"ATMPCell01.Supervisor.{method}", ns), *args))
                except UaStatusCodeError as exc:
                    out.append(type(exc).__name__)
        finally:
            await c.disconnect()
        return out

    async def go():
        op = await calls(
            "op1",
            "op1-demo-2026",
            ("ReloadConfiguration", "op1-demo-2026", "try"),
            ("Abort", "op1-demo-2026", "try"),
            ("Hold", "role check passes"),
        )
        eng = await calls(
            "eng1",
            "eng1-demo-2026",
            ("ReloadConfiguration", "wrong-password-2", "test"),
            ("ReloadConfiguration", "eng1-demo-2026", "test reload"),
            ("Hold", "engineer is not in batch.hold"),
        )
        return op + eng

    fake.replies.pop("hold", None)
    op_reload, op_abort, op_hold, eng_badsig, eng_reload, eng_hold = run(go())
    assert op_reload == "BadUserAccessDenied"
    assert op_abort == "BadUserAccessDenied"
    assert op_hold == [True, "OK", "hold accepted", "HOLDING"]
    assert eng_badsig[:2] == [False, "SIGNATURE_FAILED"]
    assert eng_reload[:2] == [True, "OK"], eng_reload
    assert eng_hold == "BadUserAccessDenied"


# ---------------------------------------------------------------------------- certificates / hole 4
def test_untrusted_certificate_refused_and_kept_for_review(cell, tmp_path: Path):
    stranger = make_client_identity(tmp_path, "stranger")
    status = run(_status_of(_session(cell, "op1", "op1-demo-2026", ident=stranger)))
    assert status != "CONNECTED"
    assert any(cell.pki_dir.joinpath("rejected").iterdir())
    assert "is not trusted" in cell.log_text()


def test_trusted_certificate_with_other_application_uri_refused(cell, tmp_path: Path):
    ident = make_client_identity(tmp_path, "liar", "urn:aseptic-cell:test:liar")
    trust(cell.pki_dir, ident)
    liar = type(ident)(ident.cert, ident.key, ident.cert_pem, "urn:someone:else")
    assert run(_status_of(_session(cell, "op1", "op1-demo-2026", ident=liar))) == "BadCertificateUriInvalid"


def test_empty_trust_list_refused_everybody_without_crashing(cell):
    assert cell.empty_trust_status != "CONNECTED"  # recorded by the fixture before trusting anyone
    assert "trust list" in cell.log_text() and cell.alive()


# ---------------------------------------------------------------------------- limits / hole 3
def _hello(url: str) -> bytes:
    body = struct.pack("<IIIII", 0, 65535, 65535, 0, 0) + struct.pack("<i", len(url)) + url.encode()
    return b"HELF" + struct.pack("<I", 8 + len(body)) + body


def test_oversized_messages_do_not_exhaust_memory(cell):
    host, port = "127.0.0.1", cell.port
    rss0 = cell.rss_bytes()

    # 1) a chunk header announcing 1 GiB, then 64 MiB streamed: dropped at the header
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(_hello(cell.endpoint))
    s.recv(4096)  # ACK
    s.sendall(b"MSGF" + struct.pack("<I", 1 << 30))
    sent, junk = 0, b"\0" * (1 << 20)
    try:
        while sent < (64 << 20):
            s.sendall(junk)
            sent += len(junk)
    except OSError:
        pass
    s.close()
    assert sent < (64 << 20), "server kept reading an oversized chunk"

    # 2) a stream of maximum-size chunks that never ends (intermediate chunks, 40 MiB)
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(_hello(cell.endpoint))
    s.recv(4096)
    chunk = b"MSGC" + struct.pack("<I", 65535) + b"\0" * (65535 - 8)
    sent = 0
    try:
        while sent < (40 << 20):
            s.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass
    s.close()

    time.sleep(0.5)
    assert cell.alive()
    grown = cell.rss_bytes() - rss0
    assert grown < 32 << 20, f"RSS grew by {grown / 2**20:.1f} MiB"

    async def still_serves():
        c = await _session(cell, "op1", "op1-demo-2026")
        await c.disconnect()
        return True

    assert run(still_serves())


# ---------------------------------------------------------------------------- ROS mirror, commands, interop
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
        {  # shelved alarms are not active (ISA-18.2): not in the OPC UA Active list or counts
            "alarm_id": "ARM1_PROTECTIVE_STOP",
            "source": "ARM1",
            "priority": 950,
            "state": "SHELVED",
            "message": "robot protective stop (shelved until ...)",
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
        fake.batches(batch_view)

    batch_view = {  # two patient batches (issue 14 item 7), as aseptic_cell.supervisor.batch_view gives them
        "t": 5000.0, "zone_owner": "P-0002", "queue": [{"position": 1, "batch": "P-0001"}],
        "batches": [
            {"batch_id": "P-0001", "coi": "COI-A", "din": "W0000 26 123456 A", "state": "Held",
             "active_phases": ["PH-SELECT"], "slot": "INC1.S1", "next_action": "restart (signed)",
             "slack_s": None, "held_reason": "COI-30", "coi_stop": "COI_MISMATCH", "impacted": True,
             "phases_done": 2, "phases_total": 9},
            {"batch_id": "P-0002", "coi": "COI-B", "din": "W0000 26 654321 B", "state": "Running",
             "active_phases": ["PH-EXPAND", "PH-SAMPLE"], "slot": "INC1.S2", "next_action": "",
             "slack_s": 86400.0, "held_reason": "", "coi_stop": "", "impacted": False,
             "phases_done": 5, "phases_total": 9},
        ],
    }
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
            # the patient batches: one object per batch with its COI and state (issue 14 item 7)
            await s.wait("Batches.Count", lambda dv: dv.Value.Value == 2)
            assert (await s.read("Batches.Ids")).Value.Value == ["P-0001", "P-0002"]
            assert (await s.read("Batches.OpenZoneOwner")).Value.Value == "P-0002"
            assert (await s.read("Batches.QueueLength")).Value.Value == 1
            assert (await s.read("Batches.P-0001.COI")).Value.Value == "COI-A"
            assert (await s.read("Batches.P-0001.ISA88State")).Value.Value == "Held"
            assert (await s.read("Batches.P-0001.CoiStop")).Value.Value == "COI_MISMATCH"
            assert (await s.read("Batches.P-0001.Impacted")).Value.Value is True
            assert (await s.read("Batches.P-0002.COI")).Value.Value == "COI-B"
            assert (await s.read("Batches.P-0002.ActivePhases")).Value.Value == "PH-EXPAND, PH-SAMPLE"
            assert (await s.read("Batches.P-0002.TimeToVeinSlack_s")).Value.Value == 86400.0
            assert (await s.read("Batches.P-0002.PhasesDone")).Value.Value == 5

            dv = await s.read("Alarms.Active.ARM1_PROTECTIVE_STOP.Priority")
            assert dv.StatusCode.value == ua.StatusCodes.BadNodeIdUnknown
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


def test_server_only_observes_ros(cell, fake):
    """ARCHITECTURE rule 4: the bridge publishes nothing and serves nothing; its clients are
    /cell/batch/command and /cell/alarms/acknowledge (the HMI's acknowledge path, for the A&C
    Acknowledge method; both only for authenticated, role-checked method calls)."""
    node = fake.node
    deadline = time.monotonic() + 10
    while "opcua_server" not in node.get_node_names() and time.monotonic() < deadline:
        time.sleep(0.1)
    pubs = {t for t, _ in node.get_publisher_names_and_types_by_node("opcua_server", "/")}
    assert pubs <= {"/rosout", "/parameter_events"}, pubs
    services = {s for s, _ in node.get_service_names_and_types_by_node("opcua_server", "/")}
    assert all(s.startswith("/opcua_server/") for s in services), services  # parameter services only
    clients = {s for s, _ in node.get_client_names_and_types_by_node("opcua_server", "/")}
    assert clients == {"/cell/batch/command", "/cell/alarms/acknowledge"}, clients


# ---------------------------------------------------------------------------- companion specs (issue 18)
def test_node_opcua_sees_the_cell_state_machine_as_packml(cell):
    from aseptic_cell.opcua.nodesets import NS

    if not (REPO / "node_modules" / "node-opcua-nodesets").is_dir():
        pytest.skip("node_modules/node-opcua-nodesets not installed (make venv)")
    ident = cell.node_ident
    opts = {
        "endpoint": cell.endpoint,
        "nodes": [{"namespaceUri": NS_URI, "id": "ATMPCell01.PackML"}],
        "depth": 3,
        "ownNamespaceUri": NS_URI,
        "secure": {"certFile": str(ident.cert_pem), "keyFile": str(ident.key),
                   "applicationUri": ident.application_uri, "pkiDir": str(cell.wd / "node-pki-companion"),
                   "serverCert": str(cell.server_cert), "user": "op1", "password": "op1-demo-2026"},
    }
    r = subprocess.run(["node", str(REPO / "interop" / "companion_browse.js"), json.dumps(opts)],
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["ok"], (out, r.stderr[-2000:])
    pk = out["nodes"]["ATMPCell01.PackML"]
    assert pk["type"] == {**pk["type"], "namespace": NS["PackML"], "name": "PackMLBaseObjectType"}
    sm = pk["children"]["BaseStateMachine"]
    assert sm["type"]["name"] == "PackMLBaseStateMachineType" and sm["type"]["namespace"] == NS["PackML"]
    ms = sm["children"]["MachineState"]
    assert ms["type"]["name"] == "PackMLMachineStateMachineType"
    assert ms["children"]["ExecuteState"]["type"]["name"] == "PackMLExecuteStateMachineType"
    assert pk["children"]["Status"]["type"]["name"] == "PackMLStatusObjectType"
    assert pk["children"]["Admin"]["type"]["name"] == "PackMLAdminObjectType"


def test_node_opcua_receives_an_alarm_as_a_and_c_event_and_acknowledges_it(cell, fake):
    """Issue 18 must show: an ISA-18.2 alarm arrives at node-opcua as an AlarmConditionType event
    (severity from the priority); Acknowledge on its ConditionId goes to the supervisor's
    /cell/alarms/acknowledge with the session's user (the HMI's path); a wrong EventId is refused;
    the supervisor's ACKED state comes back as an acknowledged event."""
    fake.acks.clear()
    alarm = {"alarm_id": "ISO_DP_LOW_AC", "source": "ISO1", "priority": 750, "state": "UNACK",
             "message": "isolator dP low"}
    stop = threading.Event()
    raised = threading.Event()

    def publish():
        if raised.is_set():
            state = "ACKED" if any(a["alarm_id"] == alarm["alarm_id"] for a in fake.acks) else "UNACK"
            fake.alarms([{**alarm, "state": state}])

    _repeat(publish, stop, period=0.1)
    ident = cell.node_ident
    opts = {"endpoint": cell.endpoint, "certFile": str(ident.cert_pem), "keyFile": str(ident.key),
            "applicationUri": ident.application_uri, "pkiDir": str(cell.wd / "node-pki"),
            "serverCert": str(cell.server_cert), "user": "op1", "password": "op1-demo-2026",
            "alarm": alarm["alarm_id"], "comment": "seen from node-opcua", "timeoutMs": 30000}
    proc = subprocess.Popen(["node", str(REPO / "interop" / "alarm_ack_client.js"), json.dumps(opts)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(REPO))
    try:
        lines = []
        for line in proc.stdout:  # the alarm is raised once the client listens (no ConditionRefresh)
            lines.append(line)
            if line.startswith('{"subscribed"'):
                raised.set()
                break
        rest, err = proc.communicate(timeout=60)
    finally:
        stop.set()
        fake.alarms([])
    out = json.loads((rest or "".join(lines)).strip().splitlines()[-1])
    assert out["ok"], (out, err[-2000:])
    first = next(e for e in out["events"] if e["condition"] == alarm["alarm_id"])
    assert first["eventType"] == "ns=0;i=2915"  # AlarmConditionType
    assert first["acked"] is False and first["active"] is True and first["retain"] is True
    assert 700 <= first["severity"] <= 899 and first["message"] == "isolator dP low"  # high band
    assert first["conditionId"].endswith(f"Alarms.Active.{alarm['alarm_id']}")
    assert out["badEventStatus"] == "BadEventIdUnknown"
    assert out["ackStatus"] == "Good"
    assert fake.acks == [{"alarm_id": alarm["alarm_id"], "user": "op1", "comment": "seen from node-opcua",
                          "signed": True}]
    assert any(e["condition"] == alarm["alarm_id"] and e["acked"] is True for e in out["events"])


def test_a_and_c_acknowledge_needs_the_permission(cell, fake):
    """A user whose role lacks alarm.ack (user_admin) is refused; the supervisor never hears of it."""
    fake.acks.clear()
    alarm = {"alarm_id": "ISO_DP_LOW_PERM", "source": "ISO1", "priority": 300, "state": "UNACK", "message": "x"}

    async def go():
        c = await _session(cell, "adm1", "adm1-demo-2026")
        got: list = []

        class Handler:
            def event_notification(self, ev):
                got.append(ev)

        try:
            sub = await c.create_subscription(50, Handler())
            await sub.subscribe_events(c.nodes.server, ua.ObjectIds.AlarmConditionType, where_clause_generation=False)
            for _ in range(100):
                fake.alarms([alarm])
                if any(getattr(e, "ConditionName", "") == alarm["alarm_id"] for e in got):
                    break
                await asyncio.sleep(0.1)
            ev = next((e for e in got if getattr(e, "ConditionName", "") == alarm["alarm_id"]), None)
            assert ev is not None, (got[-3:], cell.log_text()[-3000:])
            try:
                await c.get_node(ev.NodeId).call_method(
                    ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge),
                    ua.Variant(ev.EventId, ua.VariantType.ByteString), ua.LocalizedText("no"))
                return "Good", ev
            except UaStatusCodeError as exc:
                return type(exc).__name__, ev
        finally:
            fake.alarms([])
            await c.disconnect()

    status, ev = run(go())
    assert ev.Severity == 300 and getattr(ev, "AckedState/Id") is False
    assert status == "BadUserAccessDenied" and fake.acks == []
