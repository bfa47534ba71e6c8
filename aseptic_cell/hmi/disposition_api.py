"""HMI routes for deviations and the QA disposition of a batch (issue 15 items 1 and 4).

Included by :func:`aseptic_cell.hmi.app.create_app`; the app's middleware has already checked the
session and, for POSTs, the CSRF token. Each route works on the batch record file the supervisor
reports (the current or last batch unless ``batch`` is given), through
:mod:`aseptic_cell.disposition` — the same functions as ``cellctl record deviation|disposition``,
so the permission (users.yaml, QA only for closing and disposition), the e-signature (re-entered
password, the meaning users.yaml gives the action) and every refusal are the same. A refusal is a
``COMMAND_REFUSED`` (409) whose ``upstream_code`` is the precise code (``DEVIATION_OPEN``,
``BATCH_NOT_ENDED``, ``CHAIN_INVALID``, ...), a ``ROLE_FORBIDDEN`` or a ``SIGNATURE_REFUSED``.

* ``GET  /api/record/deviations[?batch=]`` — the batch's deviations (any logged-in user).
* ``POST /api/record/deviations`` — raise one by hand (``deviation.raise``).
* ``POST /api/record/deviations/{id}/classify|investigate|close`` — the lifecycle (close: signed).
* ``GET  /api/record/disposition[?batch=]`` — the disposition state and what blocks it now.
* ``POST /api/record/disposition`` — release or reject (``record.disposition``, signed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from aseptic_cell.auth import UserDirectory

from .errors import HmiError

_Text = Annotated[str, Field(max_length=2000)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Sig(_Body):
    user: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=256)]


class RaiseBody(_Body):
    batch: Annotated[str, Field(max_length=64)] = ""
    description: _Text
    deviation_class: Literal["", "minor", "major", "critical"] = ""
    links: Annotated[list[int], Field(max_length=50)] = []
    rule: Annotated[str, Field(max_length=32)] = ""


class ClassifyBody(_Body):
    deviation_class: Literal["minor", "major", "critical"]
    reason: _Text


class InvestigateBody(_Body):
    findings: _Text


class CloseBody(_Body):
    root_cause: _Text
    signature: _Sig


class DispositionBody(_Body):
    batch: Annotated[str, Field(max_length=64)] = ""
    decision: Literal["release", "reject"]
    justification: _Text = ""
    signature: _Sig


class _WallClock:
    def now(self) -> float:
        return time.time()


_CODES = {"PERMISSION": "ROLE_FORBIDDEN", "SIGNATURE": "SIGNATURE_REFUSED"}


def disposition_router(users: UserDirectory, record_path: Callable[[], str]) -> APIRouter:
    """The routes over ``users`` and the record file ``record_path()`` names."""
    from aseptic_cell import disposition as qa
    from aseptic_cell.records import BatchRecord, RecordError
    from aseptic_cell.records.seal import load_sealer

    router = APIRouter()

    def _user(request: Request) -> str:
        s = getattr(request.state, "session", None)
        if s is None:
            raise HmiError("NOT_AUTHENTICATED")
        return str(s.user)

    @contextmanager
    def _record() -> Iterator[Any]:
        path = record_path()
        if not path:
            raise HmiError("NO_RECORD")
        try:
            rec = BatchRecord(path, _WallClock(), sealer=load_sealer())
        except (RecordError, OSError) as exc:
            raise HmiError("NO_RECORD", str(exc)) from None
        try:
            yield rec
        except qa.DeviationError as exc:
            code = _CODES.get(exc.code, "COMMAND_REFUSED")
            raise HmiError(code, exc.reason, upstream_code=exc.code) from None
        except RecordError as exc:
            raise HmiError("COMMAND_REFUSED", str(exc), upstream_code="RECORD") from None
        finally:
            rec.close()

    def _signer(request: Request, sig: _Sig) -> tuple[str, str]:
        user = _user(request)
        if sig.user != user:
            raise HmiError("SIGNER_MISMATCH", f"signed as {sig.user!r} but logged in as {user!r}")
        return user, sig.password

    def _batch(rec: Any, batch: str) -> str:
        bid = batch or qa.last_batch(rec)
        if not bid:
            raise HmiError("NOT_FOUND", "no batch in the record")
        return bid

    @router.get("/api/record/deviations")
    def list_deviations(request: Request, batch: str = "") -> dict[str, Any]:
        _user(request)
        with _record() as rec:
            bid = _batch(rec, batch)
            return {"batch_id": bid, "deviations": [d.to_dict() for d in qa.deviations(rec, bid)]}

    @router.post("/api/record/deviations")
    def raise_deviation(request: Request, body: RaiseBody) -> dict[str, Any]:
        user = _user(request)
        with _record() as rec:
            dev = qa.raise_deviation(rec, users, user, _batch(rec, body.batch), body.description,
                                     cls=body.deviation_class, links=body.links, rule=body.rule)
            return {"accepted": True, "deviation": dev.to_dict()}

    @router.post("/api/record/deviations/{dev_id}/classify")
    def classify(request: Request, dev_id: str, body: ClassifyBody) -> dict[str, Any]:
        user = _user(request)
        with _record() as rec:
            return {"accepted": True,
                    "deviation": qa.classify(rec, users, user, dev_id, body.deviation_class, body.reason).to_dict()}

    @router.post("/api/record/deviations/{dev_id}/investigate")
    def investigate(request: Request, dev_id: str, body: InvestigateBody) -> dict[str, Any]:
        user = _user(request)
        with _record() as rec:
            return {"accepted": True, "deviation": qa.investigate(rec, users, user, dev_id, body.findings).to_dict()}

    @router.post("/api/record/deviations/{dev_id}/close")
    def close(request: Request, dev_id: str, body: CloseBody) -> dict[str, Any]:
        user, password = _signer(request, body.signature)
        with _record() as rec:
            dev = qa.close_deviation(rec, users, user, password, dev_id, body.root_cause)
            return {"accepted": True, "deviation": dev.to_dict()}

    @router.get("/api/record/disposition")
    def status(request: Request, batch: str = "") -> dict[str, Any]:
        _user(request)
        with _record() as rec:
            bid = _batch(rec, batch)
            blocking = qa.check_disposition(rec, bid)
            return {**qa.disposition_status(rec, bid),
                    "blocking": [{"code": c, "reason": r} for c, r in blocking]}

    @router.post("/api/record/disposition")
    def dispose(request: Request, body: DispositionBody) -> dict[str, Any]:
        user, password = _signer(request, body.signature)
        with _record() as rec:
            bid = _batch(rec, body.batch)
            entry = qa.dispose(rec, users, user, password, bid, body.decision, justification=body.justification)
            return {"accepted": True, "batch_id": bid, "decision": body.decision, "seq": entry.seq,
                    "head_seq": entry.payload["head_seq"], "head_hash": entry.payload["head_hash"]}

    return router
