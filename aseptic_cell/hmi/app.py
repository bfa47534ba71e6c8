"""The HMI web application: static front end, REST command API, WebSocket state stream.

Security (issue 7, Part 11 §11.10(d)(g), Annex 11 §12):

* every ``/api`` route except ``POST /api/login`` and ``GET /api/health`` needs a session
  cookie (``HttpOnly; SameSite=Strict``; idle time-out) -> 401 ``NOT_AUTHENTICATED``;
* every state-changing request also needs the session's CSRF token in ``X-CSRF-Token`` and,
  when the browser sends an ``Origin``, the HMI's own origin -> 403 ``CSRF_FAILED``;
* the role is checked against ``users.yaml`` before anything is forwarded -> 403
  ``ROLE_FORBIDDEN`` whose detail names the role and the action;
* actions that need an e-signature (abort, restart = releasing a held batch, bypass) need
  user id + password again + a meaning; the signer must be the logged-in user; the password
  is re-checked here and forwarded to the supervisor, which records the signature;
* malformed bodies -> 422 ``VALIDATION`` naming the field.

The WebSocket is read-only: nothing a browser sends on it is ever acted upon
(ARCHITECTURE rule 4).

Request bodies and the request -> command mapping are in :mod:`.api_models`, sessions in
:mod:`.sessions`, the read-only batch record view in :mod:`.record_view`; this module wires
them into the FastAPI app (middleware, routes, WebSocket).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from aseptic_cell.alarms.permissions import ALARM_PERMISSIONS
from aseptic_cell.auth import MEANINGS, AuthError, PermissionDenied, UserDirectory

from .api_models import (
    GLOVE,
    PORT_ACTIONS,
    AckBody,
    BatchCommandBody,
    BatchStartBody,
    BatchVerb,
    Body,
    BypassApproveBody,
    BypassRemoveBody,
    BypassRequestBody,
    DeviceNode,
    DoorBody,
    GloveBody,
    Ident,
    LoginBody,
    PortBody,
    RecoverBody,
    ShelveBody,
    SignatureBody,
    Text,
    UnshelveBody,
    door_command,
)
from .backend import CellBackend, CellUnavailable, CommandResult
from .config import HmiConfig
from .disposition_api import disposition_router
from .errors import HmiError, catalogue_json
from .hub import Hub
from .record_view import read_record
from .sessions import Session, Sessions

__all__ = [
    "COOKIE",
    "CSRF_HEADER",
    "GLOVE",
    "OPEN_PATHS",
    "PORT_ACTIONS",
    "STATIC_DIR",
    "AckBody",
    "BatchCommandBody",
    "BatchStartBody",
    "BatchVerb",
    "Body",
    "DeviceNode",
    "DoorBody",
    "GloveBody",
    "Ident",
    "LoginBody",
    "BypassApproveBody",
    "BypassRemoveBody",
    "BypassRequestBody",
    "PortBody",
    "RecoverBody",
    "Session",
    "Sessions",
    "ShelveBody",
    "SignatureBody",
    "Text",
    "UnshelveBody",
    "create_app",
    "door_command",
    "read_record",
]

log = logging.getLogger("aseptic_cell.hmi")

STATIC_DIR = Path(__file__).resolve().parent / "static"
COOKIE = "hmi_session"
CSRF_HEADER = "x-csrf-token"
OPEN_PATHS = {("POST", "/api/login"), ("GET", "/api/health"), ("POST", "/api/password")}


# ---------------------------------------------------------------------------- the app
def create_app(
    cfg: HmiConfig,
    backend: CellBackend,
    users: UserDirectory,
    *,
    hub: Hub | None = None,
    plant: dict[str, Any] | None = None,
) -> FastAPI:
    """The HMI application. ``plant``: static display facts (:func:`.plant.plant_info`)."""
    hub = hub or Hub(queue_len=cfg.ws_queue_len, send_timeout_s=cfg.ws_send_timeout_s)
    sessions = Sessions(cfg.session_idle_timeout_s, cfg.max_sessions)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        hub.attach_loop(asyncio.get_running_loop())
        backend.start(hub)
        try:
            yield
        finally:
            backend.stop()

    app = FastAPI(
        title="aseptic_cell operator HMI",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.hub = hub
    app.state.sessions = sessions
    app.state.backend = backend
    app.state.cfg = cfg

    # ------------------------------------------------------------------ errors
    @app.exception_handler(HmiError)
    async def _hmi_error(_req: Request, exc: HmiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        first = errs[0] if errs else {}
        loc = [str(x) for x in first.get("loc", ()) if x not in ("body", "path", "query")]
        fieldname = ".".join(loc) or "body"
        detail = f"{fieldname}: {first.get('msg', 'invalid')}"
        err = HmiError(
            "VALIDATION",
            detail,
            field=fieldname,
            extra={
                "errors": [
                    {
                        "field": ".".join(
                            str(x) for x in e.get("loc", ()) if x not in ("body", "path", "query")
                        ),
                        "message": e.get("msg", ""),
                    }
                    for e in errs
                ]
            },
        )
        return JSONResponse(err.body(), status_code=422)

    # ------------------------------------------------------------------ auth middleware
    @app.middleware("http")
    async def _auth(request: Request, call_next: Any) -> Response:
        path = request.url.path
        if path.startswith("/api/") and (request.method, path) not in OPEN_PATHS:
            try:
                s = sessions.get(request.cookies.get(COOKIE))
                if request.method not in ("GET", "HEAD", "OPTIONS"):
                    _check_csrf(request, s)
            except HmiError as exc:
                return JSONResponse(exc.body(), status_code=exc.status)
            request.state.session = s
        elif request.method == "POST" and path == "/api/login":
            try:
                _check_origin(request)
            except HmiError as exc:
                return JSONResponse(exc.body(), status_code=exc.status)
        response = await call_next(request)
        if path == "/" or path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self' ws: wss:; "
            "img-src 'self' data:; "
            "frame-ancestors 'none'"
        )
        return response

    def _check_origin(request: Request) -> None:
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.headers.get('host', '')}":
            raise HmiError("CSRF_FAILED", f"request from foreign origin {origin!r} refused")

    def _check_csrf(request: Request, s: Session) -> None:
        _check_origin(request)
        token = request.headers.get(CSRF_HEADER, "")
        if not token or not secrets.compare_digest(token, s.csrf):
            raise HmiError("CSRF_FAILED", "missing or wrong X-CSRF-Token header")

    def _session(request: Request) -> Session:
        s = getattr(request.state, "session", None)
        if s is None:
            raise HmiError("NOT_AUTHENTICATED")
        return s

    def _authorize(s: Session, action: str) -> Any:
        try:
            return users.authorize(s.user, action)
        except PermissionDenied as exc:
            try:  # recorded (Part 11 §11.300(d)): the supervisor copies it into the batch record
                users.guard.event("auth.role_refused", s.user, time.time(), action=action, role=s.role)
            except Exception:  # noqa: BLE001 - a log failure must not turn a refusal into an error page
                log.exception("role refusal of %s for %s not logged", s.user, action)
            raise HmiError("ROLE_FORBIDDEN", exc.reason, extra={"role": s.role, "action": action}) from None

    def _signature(s: Session, action: str, sig: SignatureBody | None) -> SignatureBody | None:
        """Check the e-signature an action needs (None when it needs none).

        The password is re-verified here (a wrong one never reaches the supervisor); the
        supervisor verifies it again and records the signature.
        """
        rule = _authorize(s, action)
        if not rule.signature:
            return None
        if sig is None:
            raise HmiError(
                "SIGNATURE_REQUIRED",
                f"{action} needs an electronic signature (user id, password, meaning"
                f"{' ' + repr(rule.meaning) if rule.meaning else ''})",
                field="signature",
                extra={"action": action, "meaning": rule.meaning},
            )
        if sig.user != s.user:
            raise HmiError("SIGNER_MISMATCH", f"signed as {sig.user!r} but logged in as {s.user!r}")
        try:
            users.authenticate(sig.user, sig.password)
        except AuthError as exc:
            raise HmiError("SIGNATURE_REFUSED", exc.reason) from None
        return sig

    def _result(res: CommandResult, what: str) -> dict[str, Any]:
        if not res.accepted:
            raise HmiError(
                "COMMAND_REFUSED",
                f"{what} refused: {res.reason or res.code}",
                upstream_code=res.code or "REFUSED",
            )
        return {
            "accepted": True,
            "code": res.code,
            "reason": res.reason,
            "state": res.state,
            "payload": res.payload,
        }

    def _call(fn: Any, *args: Any, **kwargs: Any) -> CommandResult:
        try:
            return fn(*args, **kwargs)
        except CellUnavailable as exc:
            raise HmiError("CELL_UNAVAILABLE", str(exc)) from None

    def _signed(s: Session, action: str, sig_body: SignatureBody | None, what: str, fn: Any, *args: Any,
                **kwargs: Any) -> dict[str, Any]:
        """A command whose permission may need an e-signature: checked here, then sent with the
        password and meaning for the supervisor to verify again and record."""
        sig = _signature(s, action, sig_body)
        res = _call(fn, *args, password=sig.password if sig else "", meaning=sig.meaning if sig else "",
                    user=s.user, **kwargs)
        out = _result(res, what)
        if sig:
            out["signed"] = {"user": s.user, "full_name": s.full_name, "meaning": sig.meaning}
        return out

    # ------------------------------------------------------------------ pages
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # ------------------------------------------------------------------ session routes
    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "browsers": hub.clients}

    @app.post("/api/login")
    def login(body: LoginBody, response: Response) -> dict[str, Any]:
        try:
            user = users.authenticate(body.user, body.password)
        except AuthError as exc:
            raise HmiError("LOGIN_FAILED", exc.reason) from None
        s = sessions.create(user.id, user.full_name, user.role)
        response.set_cookie(
            COOKIE,
            s.token,
            httponly=True,
            samesite="strict",
            secure=cfg.cookie_secure,
            path="/",
            max_age=int(cfg.session_idle_timeout_s) + 60,
        )
        return _session_info(s)

    @app.post("/api/logout")
    def logout(request: Request, response: Response) -> dict[str, Any]:
        sessions.drop(request.cookies.get(COOKIE))
        response.delete_cookie(COOKIE, path="/")
        return {"ok": True}

    def _session_info(s: Session) -> dict[str, Any]:
        allowed, signed = [], {}
        for action, rule in users.permissions.items():
            if s.role in rule.roles:
                allowed.append(action)
                if rule.signature:
                    signed[action] = rule.meaning or ""
        return {
            "user": s.user,
            "full_name": s.full_name,
            "role": s.role,
            "csrf": s.csrf,
            "allowed": sorted(allowed),
            "signature_actions": signed,
            "meanings": list(MEANINGS),
            "idle_timeout_s": cfg.session_idle_timeout_s,
        }

    @app.get("/api/session")
    def session(request: Request) -> dict[str, Any]:
        return _session_info(_session(request))

    @app.get("/api/plant")
    def plant_route() -> dict[str, Any]:
        return plant or {}

    @app.get("/api/errors")
    def errors() -> list[dict[str, Any]]:
        return catalogue_json()

    # ------------------------------------------------------------------ state
    @app.get("/api/state")
    def state() -> dict[str, Any]:
        return backend.snapshot()

    @app.get("/api/record")
    def record() -> dict[str, Any]:
        path = backend.record_path()
        if not path:
            raise HmiError("NO_RECORD", "no batch record yet (no batch has started)")
        snap = backend.snapshot()
        batch_id = str((snap.get("batch") or {}).get("batch_id") or "")
        return read_record(path, batch_id)

    @app.get("/api/record/report")
    def record_report(format: str = "pdf") -> Response:  # noqa: A002 - the query parameter's name
        """The current (or last) batch's report, PDF or self-contained HTML, as a download
        (issue 15; aseptic_cell/report). Read-only, for any logged-in user, like /api/record."""
        from aseptic_cell.report import ReportError, build_report, render_html, render_pdf

        if format not in ("pdf", "html"):
            raise HmiError("VALIDATION", "format must be pdf or html", field="format")
        path = backend.record_path()
        if not path:
            raise HmiError("NO_RECORD", "no batch record yet (no batch has started)")
        batch_id = str((backend.snapshot().get("batch") or {}).get("batch_id") or "") or None
        try:
            report = build_report(path, batch_id)
        except ReportError as exc:
            raise HmiError("NO_RECORD", str(exc)) from None
        name = "".join(c if c.isalnum() or c in "-_" else "_" for c in report.batch_id) or "batch"
        if format == "html":
            body, media = render_html(report).encode("utf-8"), "text/html; charset=utf-8"
        else:
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                body, media = render_pdf(report, Path(tmp) / "r.pdf").read_bytes(), "application/pdf"
        return Response(body, media_type=media, headers={
            "Content-Disposition": f'attachment; filename="batch-report-{name}.{format}"'})

    # ------------------------------------------------------------------ batch commands
    @app.post("/api/batch/start")
    def batch_start(body: BatchStartBody, request: Request) -> dict[str, Any]:
        s = _session(request)
        _authorize(s, "batch.start")
        res = _call(backend.batch_start, recipe_id=body.recipe_id, batch_id=body.batch_id, user=s.user)
        return _result(res, f"start of batch {body.batch_id}")

    @app.post("/api/batch/{command}")
    def batch_command(command: BatchVerb, body: BatchCommandBody, request: Request) -> dict[str, Any]:
        what = f"batch {command}" + (f" {body.batch}" if body.batch else "")
        kwargs: dict[str, Any] = {"batch": body.batch} if body.batch else {}  # a patient batch (issue 14)
        return _signed(_session(request), f"batch.{command}", body.signature, what,
                       backend.batch_command, command, reason=body.reason, **kwargs)

    # ------------------------------------------------------------------ device operations
    @app.post("/api/devices/door")
    def door(body: DoorBody, request: Request) -> dict[str, Any]:
        s = _session(request)
        action, device, command, args = door_command(body)
        _authorize(s, action)
        res = _call(backend.operate, device, command, args, user=s.user, reason=body.reason)
        return _result(res, f"{body.command} {body.door}")

    @app.post("/api/devices/port")
    def port(body: PortBody, request: Request) -> dict[str, Any]:
        s = _session(request)
        _authorize(s, PORT_ACTIONS[body.command])
        args: dict[str, Any] = {"rtp": body.rtp}
        if body.command == "dock_beta":
            if not body.beta_id:
                raise HmiError("VALIDATION", "beta_id: needed to dock a beta", field="beta_id")
            args.update(beta_id=body.beta_id, sterile_status=body.sterile_status or "unknown")
        res = _call(backend.operate, "isolator", body.command, args, user=s.user, reason=body.reason)
        return _result(res, f"{body.command} {body.rtp}")

    @app.post("/api/devices/glove")
    def glove(body: GloveBody, request: Request) -> dict[str, Any]:
        s = _session(request)
        action, command = GLOVE[body.command]
        _authorize(s, action)
        args: dict[str, Any] = {"port": body.port}
        if command in ("use_glove", "start_glove_test"):
            args["user"] = s.user
        res = _call(backend.operate, "isolator", command, args, user=s.user, reason=body.reason)
        return _result(res, f"glove {body.command} {body.port}")

    @app.post("/api/devices/{device}/recover")
    def recover(device: DeviceNode, body: RecoverBody, request: Request) -> dict[str, Any]:
        """Release one device latched by a trip or a communication loss: supervisor or engineer,
        e-signed, with a stated reason; the supervisor re-checks and records it (intervention)."""
        return _signed(_session(request), "device.recover", body.signature, f"recovery of {device}",
                       backend.recover_device, device, reason=body.reason)

    # ------------------------------------------------------------------ bypass management
    # (replaces /api/override: IEC 61511-1 [IEC61511-1] [M] bypass, supervisor/bypass.py; the
    # supervisor checks role, signature, bypassable row, duration and the second person again,
    # and records both signatures and every action taken under the bypass)
    @app.post("/api/bypass")
    def bypass_request(body: BypassRequestBody, request: Request) -> dict[str, Any]:
        """Request a time-limited bypass of a bypassable interlock row, with the reason and the
        compensating measure; e-signed; active only once a second person approves it."""
        return _signed(_session(request), "bypass.request", body.signature, f"bypass of {body.rule}",
                       backend.batch_command, f"bypass.request {body.rule} {body.duration_s:g}",
                       reason=body.reason)

    @app.post("/api/bypass/{bypass_id}/approve")
    def bypass_approve(bypass_id: Ident, body: BypassApproveBody, request: Request) -> dict[str, Any]:
        """A second person (QA) approves a requested bypass with an e-signature; it starts now."""
        return _signed(_session(request), "bypass.approve", body.signature, f"approval of {bypass_id}",
                       backend.batch_command, f"bypass.approve {bypass_id}", reason=body.reason)

    @app.post("/api/bypass/{bypass_id}/remove")
    def bypass_remove(bypass_id: Ident, body: BypassRemoveBody, request: Request) -> dict[str, Any]:
        s = _session(request)
        _authorize(s, "bypass.remove")
        res = _call(backend.batch_command, f"bypass.remove {bypass_id}", user=s.user, reason=body.reason)
        return _result(res, f"removal of {bypass_id}")

    # ------------------------------------------------------------------ alarms
    @app.post("/api/alarms/{alarm_id}/ack")
    def ack(alarm_id: Ident, body: AckBody, request: Request) -> dict[str, Any]:
        s = _session(request)
        _authorize(s, ALARM_PERMISSIONS["acknowledge"])
        res = _call(backend.acknowledge, alarm_id, user=s.user, comment=body.comment)
        return _result(res, f"acknowledge {alarm_id}")

    @app.post("/api/alarms/{alarm_id}/shelve")
    def shelve(alarm_id: Ident, body: ShelveBody, request: Request) -> dict[str, Any]:
        """Shelve an alarm (ISA-18.2): supervisor, e-signed, with a reason; the alarm manager
        refuses alarms rationalised as not shelvable and durations above max_shelve_s."""
        return _signed(_session(request), ALARM_PERMISSIONS["shelve"], body.signature, f"shelve {alarm_id}",
                       backend.shelve_alarm, alarm_id, reason=body.reason, duration_s=body.duration_s)

    @app.post("/api/alarms/{alarm_id}/unshelve")
    def unshelve(alarm_id: Ident, body: UnshelveBody, request: Request) -> dict[str, Any]:
        """End a shelve early: users.yaml ``alarm.unshelve`` (the permission the supervisor checks
        too, one mapping: aseptic_cell/alarms/permissions.py); no e-signature."""
        s = _session(request)
        _authorize(s, ALARM_PERMISSIONS["unshelve"])
        res = _call(backend.shelve_alarm, alarm_id, user=s.user, password="", meaning="", reason=body.reason,
                    duration_s=0.0)
        return _result(res, f"unshelve {alarm_id}")

    from .user_admin import admin_router  # issue 15 item 6: user administration, password change

    app.include_router(admin_router(users))

    # ------------------------------------------------------------------ WebSocket (read-only)
    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        origin = websocket.headers.get("origin")
        host = websocket.headers.get("host", "")
        if origin is not None and origin not in (f"http://{host}", f"https://{host}"):
            await websocket.close(code=4403)
            return
        token = websocket.cookies.get(COOKIE)
        await websocket.accept()
        try:
            s = sessions.get(token, touch=False)
        except HmiError as exc:
            await websocket.send_text(json.dumps({"type": "error", **exc.body()["error"]}))
            await websocket.close(code=4401)
            return
        await websocket.send_text(
            json.dumps(
                {"type": "hello", "user": s.user, "role": s.role, "trends": backend.trends()},
                allow_nan=False,
                default=str,
            )
        )
        client = hub.register(f"{s.user}@{websocket.client.host if websocket.client else '?'}")

        async def reader() -> None:  # drain and ignore whatever the browser sends
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                while True:
                    await websocket.receive_text()

        async def watchdog() -> None:  # end the stream when the session ends
            while True:
                await asyncio.sleep(2.0)
                try:
                    sessions.get(token, touch=False)
                except HmiError:
                    return

        tasks = [
            asyncio.create_task(hub.pump(client, websocket.send_text)),
            asyncio.create_task(reader()),
            asyncio.create_task(watchdog()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except Exception:  # noqa: BLE001
            pass
        finally:
            hub.unregister(client)
            for t in tasks:
                t.cancel()
            with contextlib.suppress(Exception):
                await websocket.close()

    from .limits import RequestLimits

    # outermost: limits apply before sessions, CSRF or any body is read
    app.add_middleware(RequestLimits, max_body_bytes=cfg.max_body_bytes,
                       max_login_body_bytes=cfg.max_login_body_bytes, login_rate_per_min=cfg.login_rate_per_min,
                       login_burst=cfg.login_burst, api_rate_per_s=cfg.api_rate_per_s, api_burst=cfg.api_burst)
    app.include_router(disposition_router(users, backend.record_path))  # issue 15: deviations, QA disposition
    from .batches_api import batches_router

    app.include_router(batches_router(backend.snapshot))  # issue 14 item 7: the patient batches' view
    return app
