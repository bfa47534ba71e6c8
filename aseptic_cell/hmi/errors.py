"""The HMI command API's error catalogue: every refusal has a number, a code and a status.

Bodies look like ``{"error": {"number": 3001, "code": "COMMAND_REFUSED", "title": ...,
"detail": <reason for the operator>, "field": <for 422>, "upstream_code": <supervisor/device
code>}}``. Numbers are stable; never reuse one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ErrorDef:
    number: int
    code: str
    status: int
    title: str


CATALOGUE: tuple[ErrorDef, ...] = (
    ErrorDef(1001, "NOT_AUTHENTICATED", 401, "log in first"),
    ErrorDef(1002, "SESSION_EXPIRED", 401, "session expired; log in again"),
    ErrorDef(1003, "LOGIN_FAILED", 401, "log-in refused"),
    ErrorDef(1004, "CSRF_FAILED", 403, "missing or wrong CSRF token / foreign origin"),
    ErrorDef(1005, "TOO_MANY_SESSIONS", 503, "too many sessions"),
    ErrorDef(1006, "RATE_LIMITED", 429, "too many requests from this address"),
    ErrorDef(1101, "ROLE_FORBIDDEN", 403, "your role may not do this"),
    ErrorDef(1102, "SIGNATURE_REQUIRED", 403, "this action needs an electronic signature"),
    ErrorDef(1103, "SIGNER_MISMATCH", 403, "the signer must be the logged-in user"),
    ErrorDef(1104, "SIGNATURE_REFUSED", 403, "electronic signature refused"),
    ErrorDef(2001, "VALIDATION", 422, "malformed request"),
    ErrorDef(2002, "BODY_TOO_LARGE", 413, "request body too large"),
    ErrorDef(3001, "COMMAND_REFUSED", 409, "command refused by the cell"),
    ErrorDef(3002, "NOT_FOUND", 404, "no such item"),
    ErrorDef(3003, "NO_RECORD", 404, "no batch record yet"),
    ErrorDef(5001, "CELL_UNAVAILABLE", 503, "the supervisor did not answer"),
    ErrorDef(5002, "INTERNAL", 500, "internal error"),
)
BY_CODE: dict[str, ErrorDef] = {e.code: e for e in CATALOGUE}


class HmiError(Exception):
    """Raised by the routes; turned into the JSON body above by the app's handler."""

    def __init__(
        self,
        code: str,
        detail: str = "",
        *,
        field: str | None = None,
        upstream_code: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or code)
        self.defn = BY_CODE[code]
        self.detail = detail or self.defn.title
        self.field = field
        self.upstream_code = upstream_code
        self.extra = extra or {}

    @property
    def status(self) -> int:
        return self.defn.status

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {
            "number": self.defn.number,
            "code": self.defn.code,
            "title": self.defn.title,
            "detail": self.detail,
        }
        if self.field is not None:
            err["field"] = self.field
        if self.upstream_code is not None:
            err["upstream_code"] = self.upstream_code
        err.update(self.extra)
        return {"error": err}


def catalogue_json() -> list[dict[str, Any]]:
    return [{"number": e.number, "code": e.code, "status": e.status, "title": e.title} for e in CATALOGUE]
