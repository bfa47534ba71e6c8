"""HMI user administration and password change (issue 15 item 6; 21 CFR 11.10(d),(g),(i),
11.300 [CFR11]; EU GMP Annex 11 §12 [ANNEX11]).

* ``GET  /api/admin/users``                      every account with status, password age, qualifications
* ``GET  /api/admin/audit``                      the administration audit trail and its chain check
* ``POST /api/admin/users``                      add (initial password changed at first log-in)
* ``POST /api/admin/users/{id}/disable|enable``  never deleted, only disabled
* ``POST /api/admin/users/{id}/reset``           temporary password, changed at the next log-in
* ``POST /api/admin/users/{id}/role``            a production role (never to or from user_admin)
* ``POST /api/admin/users/{id}/qualify``         training per action class until a date
* ``POST /api/password``                         a user changes their own (also expired) password;
  no session (an expired password cannot log in), the old password is checked like a log-in.

The app's middleware gives every ``/api/admin`` request a live session (idle time-out) and a
CSRF check. Each change needs role ``user_admin`` (ROLE_FORBIDDEN otherwise, production roles
included) and an e-signature by the logged-in administrator (user id and password re-entered,
meaning); :class:`aseptic_cell.auth.admin.UserAdmin` checks, signs, applies and audits it.
"""

from __future__ import annotations

import datetime as _dt
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from pydantic import Field

from aseptic_cell.auth import AuthError, PermissionDenied, UserDirectory
from aseptic_cell.auth.admin import AdminRefused, AdminResult, UserAdmin
from aseptic_cell.auth.models import ADMIN_ROLE, ROLES
from aseptic_cell.auth.policy import PasswordRejected

from .api_models import Body, Ident, SignatureBody
from .errors import HmiError

Password = Annotated[str, Field(min_length=1, max_length=256)]
Reason = Annotated[str, Field(min_length=1, max_length=500)]


class AddUserBody(Body):
    user_id: Ident
    full_name: Annotated[str, Field(min_length=1, max_length=128)]
    role: Literal[ROLES]  # type: ignore[valid-type]
    initial_password: Password
    reason: Reason
    signature: SignatureBody


class AdminBody(Body):
    reason: Reason
    signature: SignatureBody


class ResetBody(AdminBody):
    new_password: Password


class RoleBody(AdminBody):
    role: Literal[ROLES]  # type: ignore[valid-type]


class QualifyBody(AdminBody):
    classes: Annotated[list[Ident], Field(min_length=1, max_length=64)]
    until: _dt.date


class PasswordBody(Body):
    user: Annotated[str, Field(min_length=1, max_length=64)]
    old_password: Password
    new_password: Password


def admin_router(users: UserDirectory) -> APIRouter:
    """The routes above over ``users`` (the HMI's directory: the cell's shared live store)."""
    router = APIRouter()
    admin = UserAdmin(users)

    def _admin_session(request: Request) -> Any:
        s = getattr(request.state, "session", None)
        if s is None:
            raise HmiError("NOT_AUTHENTICATED")
        u = users.get(s.user)
        if u is None or u.disabled or u.role != ADMIN_ROLE:
            try:  # recorded like every role refusal (Part 11 §11.300(d))
                users.guard.event("auth.role_refused", s.user, time.time(), action="user.admin", role=s.role)
            except Exception:  # noqa: BLE001 - a log failure must not turn a refusal into an error page
                pass
            raise HmiError("ROLE_FORBIDDEN", f"only role {ADMIN_ROLE!r} administers users (you: {s.role!r})",
                           extra={"role": s.role, "action": "user.admin"})
        return s

    def _do(request: Request, sig: SignatureBody, fn: Any, **kwargs: Any) -> dict[str, Any]:
        s = _admin_session(request)
        if sig.user != s.user:
            raise HmiError("SIGNER_MISMATCH", f"signed as {sig.user!r} but logged in as {s.user!r}")
        try:
            res: AdminResult = fn(s.user, sig.password, **kwargs)
        except AdminRefused as exc:
            raise HmiError("COMMAND_REFUSED", exc.reason, upstream_code=exc.code) from None
        except PasswordRejected as exc:
            raise HmiError("COMMAND_REFUSED", exc.reason, upstream_code=exc.code) from None
        except PermissionDenied as exc:
            raise HmiError("ROLE_FORBIDDEN", exc.reason, extra={"role": s.role, "action": exc.action}) from None
        except AuthError as exc:
            raise HmiError("SIGNATURE_REFUSED", exc.reason, upstream_code=exc.code) from None
        return {"accepted": True, "action": res.action, "target": res.target, "audit_hash": res.audit_hash,
                "signed": {"user": res.signature["user_id"], "full_name": res.signature["full_name"],
                           "meaning": res.signature["meaning"], "at": res.signature["signed_at_iso"]}}

    @router.get("/api/admin/users")
    def list_users(request: Request) -> dict[str, Any]:
        _admin_session(request)
        return {"users": admin.listing(), "roles": list(ROLES),
                "classes": sorted({a.split(".", 1)[0] for a in users.permissions})}

    @router.get("/api/admin/audit")
    def audit(request: Request) -> dict[str, Any]:
        _admin_session(request)
        problems = users.store.verify_audit()
        return {"entries": users.store.audit(), "chain_ok": not problems, "problems": problems}

    @router.post("/api/admin/users")
    def add_user(body: AddUserBody, request: Request) -> dict[str, Any]:
        return _do(request, body.signature, admin.add, user_id=body.user_id, full_name=body.full_name,
                   role=body.role, initial_password=body.initial_password, reason=body.reason)

    @router.post("/api/admin/users/{user_id}/disable")
    def disable(user_id: Ident, body: AdminBody, request: Request) -> dict[str, Any]:
        return _do(request, body.signature, admin.disable, user_id=user_id, reason=body.reason)

    @router.post("/api/admin/users/{user_id}/enable")
    def enable(user_id: Ident, body: AdminBody, request: Request) -> dict[str, Any]:
        return _do(request, body.signature, admin.enable, user_id=user_id, reason=body.reason)

    @router.post("/api/admin/users/{user_id}/reset")
    def reset(user_id: Ident, body: ResetBody, request: Request) -> dict[str, Any]:
        return _do(request, body.signature, admin.reset_password, user_id=user_id,
                   new_password=body.new_password, reason=body.reason)

    @router.post("/api/admin/users/{user_id}/role")
    def role(user_id: Ident, body: RoleBody, request: Request) -> dict[str, Any]:
        return _do(request, body.signature, admin.set_role, user_id=user_id, role=body.role, reason=body.reason)

    @router.post("/api/admin/users/{user_id}/qualify")
    def qualify(user_id: Ident, body: QualifyBody, request: Request) -> dict[str, Any]:
        until = _dt.datetime(body.until.year, body.until.month, body.until.day, 23, 59, 59, tzinfo=_dt.UTC)
        return _do(request, body.signature, admin.qualify, user_id=user_id, classes=list(body.classes),
                   until=until.timestamp(), reason=body.reason)

    @router.post("/api/password")
    def change_password(body: PasswordBody, request: Request) -> dict[str, Any]:
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.headers.get('host', '')}":
            raise HmiError("CSRF_FAILED", f"request from foreign origin {origin!r} refused")
        try:
            users.change_password(body.user, body.old_password, body.new_password)
        except PasswordRejected as exc:
            raise HmiError("COMMAND_REFUSED", exc.reason, upstream_code=exc.code) from None
        except AuthError as exc:
            raise HmiError("LOGIN_FAILED", exc.reason, upstream_code=exc.code) from None
        return {"ok": True, "user": body.user}

    return router


__all__ = ["admin_router"]
