"""The HMI's download of the current batch's report (issue 15): GET /api/record/report, for a
logged-in user only, PDF or HTML of the batch the supervisor reports."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aseptic_cell.auth import UserDirectory
from aseptic_cell.hmi.app import create_app
from aseptic_cell.hmi.config import HmiConfig
from aseptic_cell.records import BatchRecord

REPO = Path(__file__).resolve().parents[2]


class Clock:
    def now(self) -> float:
        return time.time()


class Backend:
    def __init__(self, path: str) -> None:
        self.path = path

    def start(self, hub: Any) -> None:
        hub.publish_state(self.snapshot())

    def stop(self) -> None:
        pass

    def snapshot(self) -> dict[str, Any]:
        return {"devices": {}, "batch": {"batch_id": "B-HMI", "state": "HELD", "record_path": self.path}}

    def trends(self) -> dict[str, Any]:
        return {}

    def record_path(self) -> str:
        return self.path


@pytest.fixture
def record(tmp_path) -> str:
    path = tmp_path / "hmi.db"
    with BatchRecord(path, Clock()) as rec:
        rec.append("command", batch_id="B-OLD", actor="op1", role="operator", action="batch.start")
        rec.append("command", batch_id="B-HMI", actor="op1", role="operator", action="batch.start",
                   payload={"recipe_id": "CART-TRANSDUCTION", "recipe_version": 1})
        rec.append("refusal", batch_id="B-HMI", actor="op1", role="operator", action="isolator.open_alpha",
                   reason="IL-02 <b>denied</b>", payload={"code": "INTERLOCK"})
        rec.append("command", batch_id="B-OLD", actor="op1", role="operator", action="ISO1.close_door")
    return str(path)


def test_report_download_needs_a_session_and_gives_the_current_batch(record: str) -> None:
    users = UserDirectory.from_file(REPO / "config" / "users.yaml", Clock())
    app = create_app(HmiConfig(), Backend(record), users, plant={"cell": {"name": "test"}})
    with TestClient(app, base_url="http://127.0.0.1:8700") as c:
        r = c.get("/api/record/report?format=pdf")
        assert r.status_code == 401 and r.json()["error"]["code"] == "NOT_AUTHENTICATED"
        assert c.post("/api/login", json={"user": "op1", "password": "op1-demo-2026"}).status_code == 200
        r = c.get("/api/record/report?format=html")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert 'filename="batch-report-B-HMI.html"' in r.headers["content-disposition"]
        assert "Batch report B-HMI" in r.text and "IL-02 &lt;b&gt;denied&lt;/b&gt;" in r.text
        assert "B-OLD" not in r.text  # the current batch only
        r = c.get("/api/record/report")
        assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
        assert r.content.startswith(b"%PDF-")
        assert c.get("/api/record/report?format=docx").status_code == 422
    assert "/api/record/report?format=pdf" in (REPO / "aseptic_cell/hmi/static/index.html").read_text()
