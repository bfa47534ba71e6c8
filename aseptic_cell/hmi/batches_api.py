"""HMI route for the patient batches' view (issue 14 item 7), read-only.

``GET /api/batches`` returns the view the supervisor publishes on ``/cell/batches``
(:mod:`aseptic_cell.supervisor.batch_view`: batches with COI, DIN, state, active phases, slot,
next action, time-to-vein slack, held reason, IMPACTED, resources held; the open-zone owner;
the arbiter's waiting queue with why each request waits; the timeline of phase intervals), as
carried in the backend's snapshot under ``batches`` (the same data the websocket pushes with the
rest of the state). Without a supervisor view yet, ``available`` is false and the lists are
empty. The session check is the app's middleware (any logged-in user may read it); commands stay
on their own routes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

EMPTY: dict[str, Any] = {"batches": [], "zone_owner": None, "zone": None, "queue": [], "timeline": {},
                         "violations": []}


def batches_router(snapshot: Callable[[], dict[str, Any]]) -> APIRouter:
    router = APIRouter()

    @router.get("/api/batches")
    def batches() -> dict[str, Any]:
        view = snapshot().get("batches")
        if not isinstance(view, dict):
            return {**EMPTY, "available": False, "stale": True}
        return {**EMPTY, **view, "available": True, "stale": bool(view.get("stale", False))}

    return router


__all__ = ["batches_router"]
