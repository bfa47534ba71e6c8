"""HMI command API without ROS: sessions, CSRF, roles (403 naming role and action), malformed
requests (422 naming the field), e-signatures, refusals with their reason, record view."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aseptic_cell.auth import UserDirectory
from aseptic_cell.hmi.app import create_app
from aseptic_cell.hmi.backend import CellUnavailable, CommandResult
from aseptic_cell.hmi.config import HmiConfig, HmiConfigError, load_hmi_config
from aseptic_cell.hmi.errors import CATALOGUE

pytestmark = pytest.mark.timeout(60)
REPO = Path(__file__).resolve().parents[2]
PW = {"op1": "op1-demo-2026", "sup1": "sup1-demo-2026", "qa1": "qa1-demo-2026", "eng1": "eng1-demo-2026"}


class Clock:
    def now(self) -> float:
        return time.time()


class FakeBackend:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.refuse: CommandResult | None = None
        self.unavailable = False
        self.path = ""
        self.started = False

    def start(self, hub: Any) -> None:
        self.started = True
        hub.publish_state(self.snapshot())

    def stop(self) -> None:
        self.started = False

    def snapshot(self) -> dict[str, Any]:
        return {"devices": {}, "batch": {"batch_id": "B1", "state": "HELD", "record_path": self.path}}

    def trends(self) -> dict[str, Any]:
        return {}

    def record_path(self) -> str:
        return self.path

    def _do(self, name: str, **kw: Any) -> CommandResult:
        if self.unavailable:
            raise CellUnavailable(f"{name}: /cell/operate is not available")
        self.calls.append((name, kw))
        return self.refuse or CommandResult(True, "OK", "done", state="RUNNING")

    def batch_start(self, **kw: Any) -> CommandResult:
        return self._do("batch_start", **kw)

    def batch_command(self, command: str, **kw: Any) -> CommandResult:
        return self._do("batch_command", command=command, **kw)

    def operate(self, device: str, command: str, args: dict[str, Any], **kw: Any) -> CommandResult:
        return self._do("operate", device=device, command=command, args=args, **kw)

    def acknowledge(self, alarm_id: str, **kw: Any) -> CommandResult:
        return self._do("acknowledge", alarm_id=alarm_id, **kw)

    def shelve_alarm(self, alarm_id: str, **kw: Any) -> CommandResult:
        return self._do("shelve_alarm", alarm_id=alarm_id, **kw)

    def recover_device(self, device: str, **kw: Any) -> CommandResult:
        return self._do("recover_device", device=device, **kw)


@pytest.fixture(scope="module")
def users() -> UserDirectory:
    return UserDirectory.from_file(REPO / "config" / "users.yaml", Clock())


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def client(users: UserDirectory, backend: FakeBackend):
    app = create_app(HmiConfig(), backend, users, plant={"cell": {"name": "test"}})
    with TestClient(app, base_url="http://127.0.0.1:8700") as c:
        yield c


def login(c: TestClient, user: str) -> dict[str, str]:
    r = c.post("/api/login", json={"user": user, "password": PW[user]})
    assert r.status_code == 200, r.text
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    return {"X-CSRF-Token": r.json()["csrf"]}


def err(r: Any) -> dict[str, Any]:
    return r.json()["error"]


def test_unauthenticated_is_401_everywhere(client: TestClient, backend: FakeBackend) -> None:
    for method, path in [
        ("GET", "/api/state"),
        ("GET", "/api/session"),
        ("POST", "/api/batch/hold"),
        ("POST", "/api/devices/door"),
        ("POST", "/api/alarms/X/ack"),
        ("GET", "/api/record"),
    ]:
        r = client.request(method, path, json={})
        assert r.status_code == 401, (path, r.text)
        assert err(r)["code"] == "NOT_AUTHENTICATED" and err(r)["number"] == 1001
    assert backend.calls == []
    assert client.get("/api/health").status_code == 200
    assert client.get("/").status_code == 200  # the login page itself


def test_login_failure_and_logout(client: TestClient) -> None:
    r = client.post("/api/login", json={"user": "op1", "password": "wrong-password"})
    assert r.status_code == 401 and err(r)["code"] == "LOGIN_FAILED"
    assert err(r)["detail"] == "invalid user id or password"
    h = login(client, "op1")
    assert client.get("/api/session").json()["role"] == "operator"
    client.post("/api/logout", headers=h)
    assert client.get("/api/session").status_code == 401


def test_csrf_needed_for_state_changes(client: TestClient, backend: FakeBackend) -> None:
    login(client, "op1")
    body = {"door": "hatch_a", "command": "open"}
    r = client.post("/api/devices/door", json=body)
    assert r.status_code == 403 and err(r)["code"] == "CSRF_FAILED"
    r = client.post("/api/devices/door", json=body, headers={"X-CSRF-Token": "guess"})
    assert r.status_code == 403 and err(r)["code"] == "CSRF_FAILED"
    csrf = client.get("/api/session").json()["csrf"]
    r = client.post(
        "/api/devices/door", json=body, headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"}
    )
    assert r.status_code == 403 and "foreign origin" in err(r)["detail"]
    assert backend.calls == []
    r = client.post("/api/devices/door", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    assert backend.calls == [
        (
            "operate",
            {
                "device": "isolator",
                "command": "open_door",
                "args": {"door": "A"},
                "user": "op1",
                "reason": "",
            },
        )
    ]


def test_role_without_right_gets_403_naming_role_and_action(client: TestClient, backend: FakeBackend) -> None:
    h = login(client, "op1")
    r = client.post("/api/batch/stop", json={}, headers=h)
    assert r.status_code == 403
    e = err(r)
    assert e["code"] == "ROLE_FORBIDDEN" and e["number"] == 1101
    assert "operator" in e["detail"] and "batch.stop" in e["detail"]
    assert e["role"] == "operator" and e["action"] == "batch.stop"
    h = login(client, "qa1")
    r = client.post("/api/devices/door", json={"door": "hatch_b", "command": "open"}, headers=h)
    assert r.status_code == 403 and "'qa' may not perform 'hatch.open_door'" in err(r)["detail"]
    assert backend.calls == []


def test_a_patient_batch_is_commanded_by_its_id(client: TestClient, backend: FakeBackend) -> None:
    """Issue 14: ``batch`` in the body names the patient batch (BatchCommand.batch_id); without it the
    campaign batch is meant; a malformed id is refused naming the field and nothing is sent."""
    h = login(client, "op1")
    r = client.post("/api/batch/hold", json={"batch": "P-0001", "reason": "check the bag"}, headers=h)
    assert r.status_code == 200 and r.json()["accepted"], r.json()
    r = client.post("/api/batch/hold", json={"reason": "campaign"}, headers=h)
    assert r.status_code == 200
    assert [(n, kw.get("batch")) for n, kw in backend.calls] == [("batch_command", "P-0001"), ("batch_command", None)]
    r = client.post("/api/batch/hold", json={"batch": "P 1; drop"}, headers=h)
    assert r.status_code == 422 and "batch" in err(r)["field"]
    assert len(backend.calls) == 2
    backend.refuse = CommandResult(False, "INVALID", "unknown batch 'P-0009'")
    r = client.post("/api/batch/hold", json={"batch": "P-0009"}, headers=h)
    assert r.status_code != 200 and "batch hold P-0009 refused: unknown batch" in err(r)["detail"], err(r)


@pytest.mark.parametrize(
    "path,body,field",
    [
        ("/api/devices/door", {"door": "hatch_c", "command": "open"}, "door"),
        ("/api/devices/door", {"door": "hatch_a"}, "command"),
        ("/api/devices/door", {"door": "hatch_a", "command": "open", "extra": 1}, "extra"),
        ("/api/devices/glove", {"port": "GP1", "command": "explode"}, "command"),
        ("/api/devices/glove", {"port": "", "command": "test"}, "port"),
        ("/api/devices/port", {"rtp": "RTP1", "command": "dock_beta"}, "beta_id"),
        ("/api/batch/start", {"recipe_id": "R1"}, "batch_id"),
        ("/api/batch/frobnicate", {}, "command"),
        ("/api/alarms/bad%20id/ack", {}, "alarm_id"),
        (
            "/api/batch/abort",
            {"signature": {"user": "sup1", "password": "x", "meaning": "because"}},
            "signature.meaning",
        ),
    ],
)
def test_malformed_is_422_naming_the_field(
    client: TestClient, backend: FakeBackend, path: str, body: Any, field: str
) -> None:
    h = login(client, "sup1")
    r = client.post(path, json=body, headers=h)
    assert r.status_code == 422, r.text
    e = err(r)
    assert e["code"] == "VALIDATION" and e["number"] == 2001
    assert e["field"] == field, e
    assert field.split(".")[-1] in e["detail"]
    assert backend.calls == []


def test_malformed_json_is_422(client: TestClient) -> None:
    h = login(client, "op1")
    r = client.post(
        "/api/devices/door", content=b"{not json", headers={**h, "Content-Type": "application/json"}
    )
    assert r.status_code == 422 and err(r)["code"] == "VALIDATION"


def test_refusal_carries_reason_and_upstream_code(client: TestClient, backend: FakeBackend) -> None:
    h = login(client, "op1")
    backend.refuse = CommandResult(
        False, "IL-02", "IL-02 [rtp=RTP1] RTP alpha door needs a docked, locked beta"
    )
    r = client.post("/api/devices/port", json={"rtp": "RTP1", "command": "open_alpha"}, headers=h)
    assert r.status_code == 409
    e = err(r)
    assert e["code"] == "COMMAND_REFUSED" and e["number"] == 3001 and e["upstream_code"] == "IL-02"
    assert "docked, locked beta" in e["detail"]
    backend.refuse, backend.unavailable = None, True
    r = client.post("/api/devices/glove", json={"port": "GP1", "command": "test"}, headers=h)
    assert r.status_code == 503 and err(r)["code"] == "CELL_UNAVAILABLE"


def test_signature_required_then_forwarded(client: TestClient, backend: FakeBackend) -> None:
    h = login(client, "sup1")
    r = client.post("/api/batch/abort", json={"reason": "contamination"}, headers=h)
    assert (
        r.status_code == 403
        and err(r)["code"] == "SIGNATURE_REQUIRED"
        and err(r)["meaning"] == "responsibility"
    )
    sig = {"user": "sup1", "password": "wrong-password", "meaning": "responsibility"}
    r = client.post("/api/batch/abort", json={"reason": "x", "signature": sig}, headers=h)
    assert r.status_code == 403 and err(r)["code"] == "SIGNATURE_REFUSED"
    r = client.post(
        "/api/batch/abort",
        json={"reason": "x", "signature": {**sig, "user": "qa1", "password": PW["qa1"]}},
        headers=h,
    )
    assert r.status_code == 403 and err(r)["code"] == "SIGNER_MISMATCH"
    assert backend.calls == []
    r = client.post(
        "/api/batch/abort", json={"reason": "x", "signature": {**sig, "password": PW["sup1"]}}, headers=h
    )
    assert r.status_code == 200, r.text
    assert r.json()["signed"]["meaning"] == "responsibility"
    assert backend.calls == [
        (
            "batch_command",
            {
                "command": "abort",
                "user": "sup1",
                "password": PW["sup1"],
                "meaning": "responsibility",
                "reason": "x",
            },
        )
    ]
    # hold needs no signature; the operator may hold
    h = login(client, "op1")
    assert client.post("/api/batch/hold", json={}, headers=h).status_code == 200


def test_device_recovery_needs_role_reason_and_signature(client: TestClient, backend: FakeBackend) -> None:
    h = login(client, "op1")
    sig = {"user": "op1", "password": PW["op1"], "meaning": "responsibility"}
    r = client.post("/api/devices/isolator/recover", json={"reason": "seal replaced", "signature": sig}, headers=h)
    assert r.status_code == 403 and err(r)["code"] == "ROLE_FORBIDDEN" and err(r)["action"] == "device.recover"
    h = login(client, "sup1")
    r = client.post("/api/devices/pump/recover", json={"reason": "seal replaced"}, headers=h)
    assert r.status_code == 422
    r = client.post("/api/devices/isolator/recover", json={"reason": "ok"}, headers=h)
    assert r.status_code == 422  # a stated reason, not a token
    r = client.post("/api/devices/isolator/recover", json={"reason": "seal replaced"}, headers=h)
    assert r.status_code == 403 and err(r)["code"] == "SIGNATURE_REQUIRED"
    sig = {"user": "sup1", "password": "wrong-password", "meaning": "responsibility"}
    r = client.post("/api/devices/isolator/recover", json={"reason": "seal replaced", "signature": sig}, headers=h)
    assert r.status_code == 403 and err(r)["code"] == "SIGNATURE_REFUSED"
    assert backend.calls == []
    backend.refuse = CommandResult(False, "STATE", "isolator is not latched: nothing to recover")
    sig["password"] = PW["sup1"]
    r = client.post("/api/devices/isolator/recover", json={"reason": "seal replaced", "signature": sig}, headers=h)
    assert r.status_code == 409 and err(r)["upstream_code"] == "STATE" and "not latched" in err(r)["detail"]
    backend.refuse = None
    r = client.post("/api/devices/isolator/recover", json={"reason": "seal replaced", "signature": sig}, headers=h)
    assert r.status_code == 200 and r.json()["signed"]["meaning"] == "responsibility"
    assert backend.calls[-1] == ("recover_device", {"device": "isolator", "user": "sup1", "password": PW["sup1"],
                                                    "meaning": "responsibility", "reason": "seal replaced"})


def test_alarm_shelve_needs_supervisor_reason_and_signature_unshelve_no_signature(
    client: TestClient, backend: FakeBackend
) -> None:
    h = login(client, "op1")
    r = client.post("/api/alarms/ISO1_DP_HIGH/shelve", json={"duration_s": 3600, "reason": "sensor swap"}, headers=h)
    assert r.status_code == 403 and err(r)["code"] == "ROLE_FORBIDDEN"
    # users.yaml grants alarm.unshelve to operators: the HMI checks that permission (issue 13 item 20)
    r = client.post("/api/alarms/ISO1_DP_HIGH/unshelve", json={"reason": "sensor back"}, headers=h)
    assert r.status_code == 200, r.text
    assert backend.calls.pop() == ("shelve_alarm", {"alarm_id": "ISO1_DP_HIGH", "user": "op1", "password": "",
                                                    "meaning": "", "reason": "sensor back", "duration_s": 0.0})
    h = login(client, "qa1")
    assert client.post("/api/alarms/ISO1_DP_HIGH/unshelve", json={}, headers=h).status_code == 403
    h = login(client, "sup1")
    for bad in ({"duration_s": 0, "reason": "sensor swap"}, {"duration_s": float("nan"), "reason": "sensor swap"},
                {"duration_s": 3600, "reason": "x"}):
        r = client.post("/api/alarms/ISO1_DP_HIGH/shelve", content=json.dumps(bad),
                        headers={**h, "content-type": "application/json"})
        assert r.status_code == 422, (bad, r.text)
    r = client.post("/api/alarms/ISO1_DP_HIGH/shelve", json={"duration_s": 3600, "reason": "sensor swap"}, headers=h)
    assert r.status_code == 403 and err(r)["code"] == "SIGNATURE_REQUIRED"
    assert backend.calls == []
    sig = {"user": "sup1", "password": PW["sup1"], "meaning": "responsibility"}
    r = client.post("/api/alarms/ISO1_DP_HIGH/shelve",
                    json={"duration_s": 3600, "reason": "sensor swap", "signature": sig}, headers=h)
    assert r.status_code == 200, r.text
    assert backend.calls[-1] == ("shelve_alarm", {"alarm_id": "ISO1_DP_HIGH", "user": "sup1", "password": PW["sup1"],
                                                  "meaning": "responsibility", "reason": "sensor swap",
                                                  "duration_s": 3600.0})
    r = client.post("/api/alarms/ISO1_DP_HIGH/unshelve", json={"reason": "sensor back"}, headers=h)
    assert r.status_code == 200 and backend.calls[-1][1]["duration_s"] == 0.0


def test_override_is_gone_bypass_requests_and_approvals_are_signed_and_sent_to_the_supervisor(
    client: TestClient, backend: FakeBackend
) -> None:
    """Issue 13 item 14: /api/override only wrote a signature row; bypass management replaces it.
    The HMI checks role and signature, the supervisor (bypass.py) decides and records."""
    h = login(client, "sup1")
    assert client.post("/api/override", json={"reason": "x"}, headers=h).status_code in (404, 405)
    body = {"rule": "IL-12", "duration_s": 3600, "reason": "counter PC-1 under repair; portable PC-9 in place"}
    r = client.post("/api/bypass", json=body, headers=h)
    assert r.status_code == 403 and err(r)["code"] == "SIGNATURE_REQUIRED", r.text
    r = client.post("/api/bypass", json={**body, "rule": "IL-12; rm"}, headers=h)
    assert r.status_code == 422
    sig = {"user": "sup1", "password": PW["sup1"], "meaning": "responsibility"}
    r = client.post("/api/bypass", json={**body, "signature": sig}, headers=h)
    assert r.status_code == 200, r.text
    assert backend.calls[-1] == ("batch_command", {"command": "bypass.request IL-12 3600", "user": "sup1",
                                                   "password": PW["sup1"], "meaning": "responsibility",
                                                   "reason": body["reason"]})
    h_op = login(client, "op1")
    r = client.post("/api/bypass/BYP-0001/approve", json={"reason": "looks fine", "signature": {
        "user": "op1", "password": PW["op1"], "meaning": "approval"}}, headers=h_op)
    assert r.status_code == 403 and err(r)["code"] == "ROLE_FORBIDDEN"
    h_qa = login(client, "qa1")
    r = client.post("/api/bypass/BYP-0001/approve", json={"reason": "PC-9 checked on the floor", "signature": {
        "user": "qa1", "password": PW["qa1"], "meaning": "approval"}}, headers=h_qa)
    assert r.status_code == 200, r.text
    assert backend.calls[-1][1]["command"] == "bypass.approve BYP-0001" and backend.calls[-1][1]["user"] == "qa1"
    h = login(client, "sup1")
    r = client.post("/api/bypass/BYP-0001/remove", json={"reason": "PC-1 repaired"}, headers=h)
    assert r.status_code == 200 and backend.calls[-1][1]["command"] == "bypass.remove BYP-0001"


def test_ws_requires_session_and_sends_state(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        msg = ws.receive_json()
        assert msg["type"] == "error" and msg["code"] == "NOT_AUTHENTICATED"
    login(client, "op1")
    cookie = f"hmi_session={client.cookies.get('hmi_session')}"
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect):  # closed before accept: cross-site WebSocket hijacking
        with client.websocket_connect(
            "/ws", headers={"cookie": cookie, "origin": "http://evil.example"}
        ) as ws:
            ws.receive_json()
    with client.websocket_connect("/ws", headers={"cookie": cookie}) as ws:
        hello = ws.receive_json()
        assert hello["type"] == "hello", hello
        state = ws.receive_json()
        assert state["type"] == "state" and state["data"]["batch"]["batch_id"] == "B1"


def test_error_catalogue_numbers_unique(client: TestClient) -> None:
    assert len({e.number for e in CATALOGUE}) == len(CATALOGUE)
    assert len({e.code for e in CATALOGUE}) == len(CATALOGUE)
    login(client, "op1")
    assert {e["code"] for e in client.get("/api/errors").json()} >= {"ROLE_FORBIDDEN", "VALIDATION"}


def test_config_loopback_unless_allowed(tmp_path: Path) -> None:
    assert load_hmi_config(REPO / "config" / "hmi.yaml").host == "127.0.0.1"
    bad = tmp_path / "hmi.yaml"
    bad.write_text("host: 0.0.0.0\n")
    with pytest.raises(HmiConfigError, match="not a loopback"):
        load_hmi_config(bad)
    bad.write_text("host: 0.0.0.0\nallow_remote: true\n")
    assert load_hmi_config(bad).host == "0.0.0.0"
    bad.write_text("port: 99999\n")
    with pytest.raises(HmiConfigError, match="port"):
        load_hmi_config(bad)
    assert HmiConfig(host="::1").host == "::1"


def test_session_idle_timeout(users: UserDirectory, backend: FakeBackend) -> None:
    app = create_app(HmiConfig(session_idle_timeout_s=0.3), backend, users)
    with TestClient(app, base_url="http://127.0.0.1:8700") as c:
        login(c, "op1")
        assert c.get("/api/state").status_code == 200
        time.sleep(0.5)
        r = c.get("/api/state")
        assert r.status_code == 401 and err(r)["code"] == "SESSION_EXPIRED"


# ----------------------------------------------------------------------- request limits (issue 12)
def _serve(app: Any):
    """The app on a real uvicorn server (loopback, free port) in a thread: (port, stop)."""
    import threading

    import uvicorn

    cfg = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(cfg)
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    while not (server.started and server.servers and server.servers[0].sockets):
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]

    def stop() -> None:
        server.should_exit = True
        t.join(10)

    return port, stop


def test_huge_login_body_is_refused_unread_and_chunked_bodies_are_cut(users: UserDirectory) -> None:
    """An unauthenticated 128 MiB log-in body: 413 after the headers, the body never read (before:
    read whole, 120 -> 512 MB). A chunked body without a length is cut at the limit."""
    import socket

    app = create_app(HmiConfig(), FakeBackend(), users)
    port, stop = _serve(app)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 134217728\r\n\r\n" + b"x" * 1024)
            t0 = time.monotonic()
            reply = _read_reply(s)
            assert time.monotonic() - t0 < 5
        assert reply.startswith("HTTP/1.1 413"), reply[:200]
        assert '"BODY_TOO_LARGE"' in reply
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n")
            chunk = b"y" * 8192
            reply = ""
            for _ in range(64):  # 512 KiB offered at most
                try:
                    s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                except OSError:
                    break
                s.settimeout(0.05)
                try:
                    reply = s.recv(65536).decode()
                    break
                except TimeoutError:
                    continue
            s.settimeout(5)
            reply = _read_reply(s, reply)
        assert reply.startswith("HTTP/1.1 413"), reply[:200]
        assert '"BODY_TOO_LARGE"' in reply
    finally:
        stop()


def _read_reply(s: Any, got: str = "") -> str:
    """The server's whole reply: headers and body may arrive in separate segments (loaded machine)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        head, sep, body = got.partition("\r\n\r\n")
        if sep:
            length = next((int(line.split(":", 1)[1]) for line in head.split("\r\n")
                           if line.lower().startswith("content-length:")), None)
            if length is not None and len(body.encode()) >= length:
                return got
        try:
            data = s.recv(65536)
        except (TimeoutError, OSError):
            break
        if not data:
            break
        got += data.decode()
    return got


def test_every_endpoint_has_a_body_limit(client: TestClient) -> None:
    h = login(client, "sup1")
    big = {"reason": "x" * 70_000}
    for path in ("/api/batch/hold", "/api/devices/door", "/api/alarms/A1/ack", "/api/logout"):
        r = client.post(path, json=big, headers=h)
        assert r.status_code == 413 and err(r)["code"] == "BODY_TOO_LARGE", (path, r.text)


def test_login_attempts_are_rate_limited_per_source(users: UserDirectory) -> None:
    app = create_app(HmiConfig(login_burst=3, login_rate_per_min=6.0), FakeBackend(), users)
    with TestClient(app, base_url="http://127.0.0.1:8700") as c:
        codes = [c.post("/api/login", json={"user": "nobody-x", "password": "wrong-password"}).status_code
                 for _ in range(5)]
        assert codes[:3] == [401, 401, 401] and codes[3:] == [429, 429], codes
        r = c.post("/api/login", json={"user": "nobody-x", "password": "wrong-password"})
        assert err(r)["code"] == "RATE_LIMITED" and int(r.headers["retry-after"]) >= 1


def test_role_refusals_are_logged_for_the_record(client: TestClient, users: UserDirectory) -> None:
    last = users.guard.last_event_id()
    h = login(client, "op1")
    r = client.post("/api/batch/abort", json={"reason": "x"}, headers=h)
    assert r.status_code == 403
    ev = [e for e in users.guard.events_after(last) if e["action"] == "auth.role_refused"]
    assert ev and ev[-1]["user"] == "op1" and ev[-1]["detail"]["action"] == "batch.abort"
