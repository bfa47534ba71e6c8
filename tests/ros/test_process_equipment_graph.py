"""The process-equipment process over the real ROS graph (issue 14 item 1): only sim_world, the
one process that hosts the six process-equipment nodes, and the lifecycle manager. Every
command of each unit goes over the real command path (``/cell/<kind>/command``, signed envelope,
the node's pipeline, the SimBackend, sim_world); the refusals of the hard interlocks come back
with their codes; a run's result arrives as a ``cycle_result`` event; the signals are published."""

from __future__ import annotations

import json
import threading

import pytest
from std_msgs.msg import String

from aseptic_cell.client import CellClient
from aseptic_cell.launcher import CellProcesses, wait_for_nodes
from aseptic_cell.nodes.graph import LIFECYCLE_MANAGER, PROCESS_EQUIPMENT, PROCESS_EQUIPMENT_KINDS, default_graph

from .graphutil import CONFIG, _no_deaths, events, wait_until

pytestmark = pytest.mark.ros

COI_A, COI_B = "COI-AAAA01", "COI-BBBB02"


@pytest.fixture(scope="module")
def pe(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pe")
    specs = default_graph(str(CONFIG), speed=200.0, nodes=["sim_world", PROCESS_EQUIPMENT, LIFECYCLE_MANAGER],
                          process_equipment=True)
    assert [s.name for s in specs] == ["sim_world", PROCESS_EQUIPMENT, LIFECYCLE_MANAGER]
    procs = CellProcesses(specs, log_dir=tmp / "logs")
    client = None
    try:
        procs.start()
        wait_for_nodes(["sim_world", LIFECYCLE_MANAGER, *PROCESS_EQUIPMENT_KINDS], timeout_s=120.0,
                       lifecycle=PROCESS_EQUIPMENT_KINDS, check=lambda: _no_deaths(procs))
        client = CellClient()
        signals: dict[str, dict] = {}
        lock = threading.Lock()

        def on_signals(kind: str, msg: String) -> None:
            with lock:
                signals[kind] = json.loads(msg.data)

        for k in PROCESS_EQUIPMENT_KINDS:
            client.node.create_subscription(String, f"/cell/{k}/signals", lambda m, k=k: on_signals(k, m), 10)
        client.signals = signals  # type: ignore[attr-defined]
        wait_until(lambda: all(k in signals and signals[k]["comm_ok"] for k in PROCESS_EQUIPMENT_KINDS), 60.0,
                   "signals of all six units")
        yield procs, client
    finally:
        if client is not None:
            client.close()
        procs.exit_codes = procs.stop(timeout_s=15.0)
    assert not [c for c in procs.exit_codes.values() if c not in (0, None)], procs.exit_codes


def _ok(client, node, name, args=None):
    r = client.command(node, name, args or {}, user="op1", reason="graph test")
    assert r.accepted, (node, name, r.code, r.reason)
    return r.payload


def _refused(client, node, name, args, code):
    r = client.command(node, name, args, user="op1", reason="graph test")
    assert not r.accepted and r.code == code, (node, name, r.code, r.reason)


def test_every_process_equipment_command_over_the_graph(pe):
    _procs, client = pe
    sig = client.signals
    # incubator: slot bound to one COI; another COI refused by the hard interlock
    _ok(client, "incubator", "assign_slot", {"slot": 2, "batch_id": "B1", "coi": COI_A})
    _refused(client, "incubator", "load", {"slot": 2, "container_id": "X1", "coi": COI_B}, "INC_COI_MISMATCH")
    assert _ok(client, "incubator", "load", {"slot": 2, "container_id": "C1", "coi": COI_A})["door_event"] == 1
    wait_until(lambda: sig["incubator"]["signals"]["incubator.slot.2.container_id"] == "C1", 10.0, "slot signal")
    assert sig["incubator"]["signals"]["incubator.slot.2.coi"] == COI_A
    _ok(client, "incubator", "unload", {"slot": 2, "container_id": "C1"})
    _ok(client, "incubator", "release_slot", {"slot": 2})
    # welder: never two COIs; a weld ends with a cycle_result event
    n0 = len(client.events)
    _refused(client, "welder", "weld", {"container_a": "C1", "coi_a": COI_A, "container_b": "C2", "coi_b": COI_B},
             "WELD_COI_MISMATCH")
    rid = _ok(client, "welder", "weld",
              {"container_a": "C1", "coi_a": COI_A, "container_b": "C2", "coi_b": COI_A})["run_id"]
    # sealer, centrifuge (imbalance refused), counter
    sid = _ok(client, "sealer", "seal", {"container_id": "C2"})["run_id"]
    _refused(client, "centrifuge", "run", {"program": "pellet", "container_id": "C2", "load_g": 100.0,
                                           "counterweight_g": 150.0}, "CFG_IMBALANCE")
    cid = _ok(client, "centrifuge", "run", {"program": "pellet", "container_id": "C2", "load_g": 100.0,
                                            "counterweight_g": 101.0})["run_id"]
    kid = _ok(client, "counter", "count", {"sample_id": "S-1"})["run_id"]
    _refused(client, "counter", "count", {"sample_id": "S-2"}, "COUNTER_BUSY")

    def results():
        return {e["run_id"]: e for e in events(client, "cycle_result", n0)}
    wait_until(lambda: {rid, sid, cid, kid} <= set(results()), 60.0, "the four run results")
    got = results()
    assert got[rid]["node"] == "welder" and got[rid]["result"] == "PASS" and got[rid]["summary"]["score"] >= 0.8
    assert got[kid]["summary"]["viable_per_ml"] > 0 and got[cid]["summary"]["program"] == "pellet"
    assert _ok(client, "welder", "get_result")["result"]["run_id"] == rid
    # scanner: place, scan (what the reader read), remove
    label = "COI:" + COI_A + "|CID:C1"
    _ok(client, "scanner", "place", {"station": "welder", "container_id": "C1", "label": label})
    out = _ok(client, "scanner", "scan", {"station": "welder"})
    assert out["payload"] == label and out["reader_id"] == "SCN1-welder"
    _ok(client, "scanner", "remove", {"station": "welder"})
    assert _ok(client, "scanner", "scan", {"station": "welder"})["read_failed"] is True
    # safe_state latches a unit; nothing runs until an operator recovers it
    _ok(client, "sealer", "safe_state", {"reason": "graph test"})
    _refused(client, "sealer", "seal", {"container_id": "C3"}, "LATCHED")
    assert client.recover("sealer", user="op1", reason="checked").accepted
    _ok(client, "sealer", "seal", {"container_id": "C3"})
