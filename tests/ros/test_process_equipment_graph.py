"""The process equipment and patient batches over the real ROS graph (issue 14): sim_world, the
four cell devices, the one process that hosts the six process-equipment nodes, the supervisor and
the lifecycle manager. Every command of each unit goes over the real command path
(``/cell/<kind>/command``, signed envelope, the node's pipeline, the SimBackend, sim_world); the
refusals of the hard interlocks come back with their codes; a run's result arrives as a
``cycle_result`` event; the signals are published. Then the supervisor: operator commands to the
process equipment through ``/cell/operate`` (role check), and two patient batches started at once
through RunBatch with their COI and DIN, each with its own record."""

from __future__ import annotations

import json
import threading

import pytest
from std_msgs.msg import String

from aseptic_cell.client import CellClient
from aseptic_cell.coi import make_din
from aseptic_cell.demo import patient_record_checks
from aseptic_cell.launcher import CellProcesses, wait_for_nodes
from aseptic_cell.nodes.graph import LIFECYCLE_MANAGER, PROCESS_EQUIPMENT, PROCESS_EQUIPMENT_KINDS, default_graph
from aseptic_cell.nodes.supervisor_node import supervisor_spec

from .graphutil import CONFIG, _no_deaths, events, wait_until

# the fixture starts the whole graph (eight processes): its bring-up counts against the first test
pytestmark = [pytest.mark.ros, pytest.mark.timeout(300)]

COI_A, COI_B = "COI-AAAA01", "COI-BBBB02"
DEVICES = ("isolator", "vhp", "autoclave", "arm")


@pytest.fixture(scope="module")
def pe(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pe")
    specs = default_graph(str(CONFIG), speed=200.0, extra=[supervisor_spec(str(CONFIG), str(tmp / "records"))],
                          process_equipment=True)
    assert [s.name for s in specs] == ["sim_world", *DEVICES, PROCESS_EQUIPMENT, "supervisor", LIFECYCLE_MANAGER]
    # the graph tells the supervisor it hosts the process equipment: it watches and commands those too
    assert specs[-2].params["process_equipment"] is True
    procs = CellProcesses(specs, log_dir=tmp / "logs")
    client = None
    try:
        procs.start()
        wait_for_nodes(["sim_world", *DEVICES, "supervisor", LIFECYCLE_MANAGER, *PROCESS_EQUIPMENT_KINDS],
                       timeout_s=180.0, lifecycle=[*DEVICES, *PROCESS_EQUIPMENT_KINDS], check=lambda: _no_deaths(procs))
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


def _operate(client, node, command, args, user):
    from cell_interfaces.srv import DeviceCommand

    r = client.call(DeviceCommand, "/cell/operate", DeviceCommand.Request(
        device_id=node, command=command, args_json=json.dumps(args), user=user, reason="graph test"), 30.0)
    return r.accepted, r.code, r.reason, json.loads(r.payload_json or "{}")


@pytest.mark.timeout(600)  # ~46,000 sim s of two patients at the world's max speed (machine-dependent)
def test_patient_batches_and_process_equipment_commands_through_the_ros_supervisor(pe):
    """Issue 14 over the graph: /cell/operate takes the process equipment on the one command path
    (the operator role is refused a manual equipment command, a supervisor's reaches the scanner);
    RunBatch refuses a bad DIN naming the field; two patient batches (PATIENT-CART-SHORT, max speed)
    started at once with their COI and DIN both end Complete, each goal's feedback and result being
    its own batch's, each record verifying with the COI on every entry and complete custody; one of
    them is held and (signed) restarted over BatchCommand by its batch_id while the other runs on."""
    _procs, client = pe
    accepted, code, reason, _ = _operate(client, "sealer", "seal", {"container_id": "C9"}, "op1")
    assert not accepted and code == "PERMISSION" and "equipment.operate" in reason, (code, reason)
    accepted, code, reason, payload = _operate(client, "scanner", "scan", {"station": "counter"}, "sup1")
    assert accepted and code == "OK" and payload["read_failed"] is True, (code, reason, payload)
    accepted, code, reason, _ = _operate(client, "freezer", "run", {}, "sup1")
    assert not accepted and code == "INVALID" and "'incubator'" in reason, (code, reason)

    dins = [make_din("A9999", "26", f"{i:06d}").barcode_data for i in (901, 902)]
    bad = dins[0][:-1] + ("0" if dins[0][-1] != "0" else "1")  # the ISO 7064 Mod 37-2 check broken
    r = client.run_batch("PATIENT-CART-SHORT", "PG-BAD", user="op1", coi="COI-GRAPH-0009", din=bad, timeout_s=60.0)
    assert r is not None and not r.success and r.reason.startswith("COI: din.check:"), r
    r = client.run_batch("CART-TRANSDUCTION", "PG-CAMPAIGN", user="op1", coi="COI-GRAPH-0009", din=dins[0],
                         timeout_s=60.0)
    assert not r.success and r.reason.startswith("COI: recipe 'CART-TRANSDUCTION' is not a patient"), r

    client.set_sim_speed(0.0)  # as fast as possible
    cois = {"PG1": "COI-GRAPH-0001", "PG2": "COI-GRAPH-0002"}
    seen: dict[str, set[str]] = {"PG1": set(), "PG2": set()}
    goals = {b: client.start_batch("PATIENT-CART-SHORT", b, user="op1", coi=cois[b], din=din,
                                   feedback=lambda fb, b=b: seen[b].add(fb.batch_id))
             for b, din in zip(cois, dins, strict=True)}
    assert all(g.accepted for g in goals.values())
    # a patient batch is held and restarted over ROS by its own id (BatchCommand.batch_id); the other runs on
    from cell_interfaces.srv import BatchCommand

    view: dict[str, str] = {}
    client.node.create_subscription(String, "/cell/batches", lambda m: view.update(
        {b["batch_id"]: b["state"] for b in json.loads(m.data)["batches"]}), 10)
    client.wait_for(lambda: view.get("PG2") == "Running", 60.0, "PG2 running in /cell/batches")
    r = client.call(BatchCommand, "/cell/batch/command", BatchCommand.Request(
        command="hold", user="op1", reason="graph test: hold one patient", batch_id="PG2"), 30.0)
    assert r.accepted and r.state in ("Holding", "Held"), (r.code, r.reason, r.state)
    client.wait_for(lambda: view.get("PG2") == "Held", 60.0, "PG2 held")
    assert view.get("PG1") in ("Running", "Complete"), view
    r = client.call(BatchCommand, "/cell/batch/command", BatchCommand.Request(
        command="restart", user="op1", reason="graph test", batch_id="PG2"), 30.0)
    assert not r.accepted and r.state == "Held", (r.code, r.reason, r.state)  # restart needs sup1's signature
    r = client.call(BatchCommand, "/cell/batch/command", BatchCommand.Request(
        command="restart", user="sup1", password="sup1-demo-2026", meaning="responsibility",
        reason="graph test: released", batch_id="PG2"), 30.0)
    assert r.accepted, (r.code, r.reason, r.state)
    r = client.call(BatchCommand, "/cell/batch/command", BatchCommand.Request(
        command="hold", user="op1", reason="graph test", batch_id="NO-SUCH"), 30.0)
    assert not r.accepted and "NO-SUCH" in r.reason, (r.code, r.reason)
    results = {b: g.result(600.0) for b, g in goals.items()}
    # a RunBatch goal ends when its batch is held (docs/ROS_API.md): PG2's ended at the hold; the batch
    # itself ran on after the signed restart, to Complete
    assert not results["PG2"].success and results["PG2"].state == "Held", results["PG2"]
    client.wait_for(lambda: view.get("PG2") == "Complete", 600.0, "PG2 complete after its restart")
    for b, res in results.items():
        if b == "PG1":
            assert res.success and res.state == "Complete", (b, res.state, res.reason)
        assert res.record_path.endswith(f"batch-{b}.db"), res.record_path
        body = json.loads(res.json_summary)
        assert body["coi"] == cois[b] and body["batch_id"] == b, body
        assert body["record_status"]["complete"] or b == "PG2", body
        assert seen[b] == {b}, seen  # this goal's feedback is this batch's only
        checks = patient_record_checks(res.record_path, b, cois[b])
        assert checks["record_verified"] and checks["entries"] > 0, checks
        assert checks["entries_with_coi"] == checks["entries"] and checks["custody_problems"] == {}, checks
