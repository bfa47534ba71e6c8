"""The operator's view of the patient batches (issue 14 item 7), in-process on sim time: the JSON
view builder over a real PatientCell with two batches contending for the shared cell, and that view
served by the HMI (GET /api/batches, pushed on the websocket with the state)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import py_trees
import pytest
from fastapi.testclient import TestClient

from aseptic_cell.auth import UserDirectory
from aseptic_cell.config import load_config
from aseptic_cell.config.loader import default_config_dir
from aseptic_cell.hmi.app import create_app
from aseptic_cell.hmi.config import HmiConfig
from aseptic_cell.records import BatchRecord
from aseptic_cell.supervisor.batch_view import batch_view_json, build_batch_view
from aseptic_cell.supervisor.runner import InProcessRun

REPO = Path(__file__).resolve().parents[2]
RECIPE = "PATIENT-CART-SHORT"
BATCHES = {"P-A": ("COI-AAAAAA", "=G12341765432170"), "P-B": ("COI-BBBBBB", "A999917123456 9")}


class _Clock:
    def __init__(self) -> None:
        self.t = 1_790_000_000.0

    def now(self) -> float:
        self.t += 0.01
        return self.t


def _blocked(cell: Any) -> bool:
    """A request waits on a resource another batch holds (a reason naming the holder)."""
    return any(h != q["batch"] for q in build_batch_view(cell)["queue"] for w in q["why"] for h in w["holders"])


@pytest.fixture(scope="module")
def contended(tmp_path_factory):
    """Two patients' batches started together, run (30 s ticks) until one waits on the other, then on
    until both have finished phases; returns the run and the view at the first contention."""
    py_trees.blackboard.Blackboard.clear()
    c = load_config(default_config_dir())
    ch = c.scheduling.changeover.model_copy(update={"t_purge_min": 1, "t_line_clearance_min": 1})
    cfg = dataclasses.replace(c, scheduling=c.scheduling.model_copy(update={"changeover": ch}))
    d = tmp_path_factory.mktemp("view")
    run = InProcessRun(cfg, tick_s=30.0, record=BatchRecord(d / "cell.db", _Clock()))
    for b, (coi, din) in BATCHES.items():
        assert run.sup.run_batch(RECIPE, b, "op1", coi=coi, din=din).accepted
    cell = run.sup.patient_cell
    assert run.run_until(lambda: _blocked(cell), 3600)
    first = build_batch_view(cell)
    assert run.run_until(lambda: all(len(ex.phase_ends) >= 2 for ex in run.sup.patients.values()), 4 * 3600)
    yield run, first
    py_trees.blackboard.Blackboard.clear()


def test_view_names_every_batch_with_its_coi_din_slot_state_and_next_action(contended) -> None:
    run, first = contended
    cell = run.sup.patient_cell
    view = build_batch_view(cell)
    rows = {b["batch_id"]: b for b in view["batches"]}
    assert set(rows) == set(BATCHES)
    for b, (coi, din) in BATCHES.items():
        ex = run.sup.patients[b]
        r = rows[b]
        assert (r["coi"], r["din"], r["slot"], r["state"]) == (coi, din, ex.slot, ex.sm.state.value)
        assert r["slot"] and r["slot"] in r["resources_held"]  # its incubator slot, held from admission
        assert r["next_action"] and r["impacted"] is False and r["held_reason"] == ""
        # time-to-vein slack: due (admission + target - release lead) - remaining processing - now
        adm = cell.arbiter.cfg.admission
        assert r["slack_s"] is not None
        assert 0 < r["slack_s"] < (adm.target_time_to_vein_days - adm.release_lead_days) * 86400
    json.loads(batch_view_json(cell))  # strict JSON (no NaN/inf) for the topic


def test_view_queue_says_why_each_request_waits_and_who_holds_what(contended) -> None:
    run, first = contended
    cell = run.sup.patient_cell
    assert first["queue"], "the contended view has a waiting request"
    blocked = [q for q in first["queue"] if any(h != q["batch"] for w in q["why"] for h in w["holders"])]
    assert blocked, first["queue"]
    q = blocked[0]
    req = cell.arbiter.requests[q["request"]]
    assert (q["batch"], q["phase"]) == (req.batch, req.phase)
    # the blocking resource is held (at that moment) by the other batch, as its row said
    holder = next(h for w in q["why"] for h in w["holders"] if h != q["batch"])
    row = next(b for b in first["batches"] if b["batch_id"] == holder)
    reasons = {w["resource"] for w in q["why"] if holder in w["holders"]}
    assert reasons and reasons <= set(row["resources_held"]), (reasons, row)
    assert all(w["why"] for w in q["why"])
    # the queue is in the arbiter's order, positions from 1
    assert [x["position"] for x in first["queue"]] == list(range(1, len(first["queue"]) + 1))


def test_view_timeline_has_each_batchs_phase_intervals_with_their_resources(contended) -> None:
    run, _first = contended
    view = build_batch_view(run.sup.patient_cell)
    assert set(view["timeline"]) == set(BATCHES)
    for b, ex in run.sup.patients.items():
        done = [r for r in view["timeline"][b] if r["end"] is not None and r["kind"] != "wait"]
        assert {r["phase"] for r in done} >= set(list(ex.phase_ends)[:2]) - {
            p.rsplit("/", 1)[-1] for p in ex.phase_order if ex.phase_kind(p) == "incubation"}
        for r in done:
            assert r["start"] <= r["end"] <= view["t"]
            assert r["kind"] == "incubation" or r["resources"], r
        assert any("ARM" in r["resources"] for r in done)
    # the open zone's owner is the batch the arbiter names (a string or None)
    assert view["zone_owner"] == run.sup.patient_cell.arbiter.zone_owner == view["zone"]["owner"]


# ---------------------------------------------------------------- the HMI serves it
class _Backend:
    """The HMI's backend contract with the batch view in its snapshot (as RosBackend carries it)."""

    def __init__(self, view: dict[str, Any] | None) -> None:
        self.view = view

    def start(self, hub: Any) -> None:
        hub.publish_state(self.snapshot())

    def stop(self) -> None:
        pass

    def snapshot(self) -> dict[str, Any]:
        return {"devices": {}, "batch": None, "batches": self.view}

    def trends(self) -> dict[str, Any]:
        return {}

    def record_path(self) -> str:
        return ""


def _client(view: dict[str, Any] | None) -> TestClient:
    users = UserDirectory.from_file(REPO / "config" / "users.yaml", _Clock())
    app = create_app(HmiConfig(), _Backend(view), users, plant={"cell": {"name": "test"}})  # type: ignore[arg-type]
    return TestClient(app, base_url="http://127.0.0.1:48900")


def test_hmi_serves_the_batch_view_to_logged_in_users_and_pushes_it_on_the_websocket(contended) -> None:
    run, first = contended
    view = json.loads(batch_view_json(run.sup.patient_cell))
    with _client(dict(view, stale=False)) as c:
        r = c.get("/api/batches")
        assert r.status_code == 401 and r.json()["error"]["code"] == "NOT_AUTHENTICATED"
        r = c.post("/api/login", json={"user": "op1", "password": "op1-demo-2026"})
        assert r.status_code == 200, r.text
        got = c.get("/api/batches").json()
        assert got["available"] is True and got["stale"] is False
        assert {(b["batch_id"], b["coi"]) for b in got["batches"]} == {(b, v[0]) for b, v in BATCHES.items()}
        assert got["queue"] == view["queue"] and got["timeline"] == view["timeline"]
        assert got["zone_owner"] == view["zone_owner"]
        csrf = {"X-CSRF-Token": r.json()["csrf"]}
        assert c.post("/api/batches", json={}, headers=csrf).status_code == 405  # read-only: no command here
        with c.websocket_connect("/ws", headers={"cookie": f"hmi_session={c.cookies.get('hmi_session')}"}) as ws:
            assert ws.receive_json()["type"] == "hello"
            state = ws.receive_json()
            assert state["type"] == "state"
            assert [b["coi"] for b in state["data"]["batches"]["batches"]] == [b["coi"] for b in view["batches"]]


def test_hmi_without_a_supervisor_view_says_so() -> None:
    with _client(None) as c:
        assert c.post("/api/login", json={"user": "op1", "password": "op1-demo-2026"}).status_code == 200
        got = c.get("/api/batches").json()
        assert got["available"] is False and got["batches"] == [] and got["queue"] == []
