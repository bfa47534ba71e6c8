"""Issue 14 over the graph, the parts that need no ROS (the graph test is
tests/ros/test_process_equipment_graph.py): the graph tells the supervisor it hosts the process
equipment; /cell/operate's path (Supervisor.operate) takes the process equipment with the same
role check, record and device pipeline as the four cell devices; the graph demo's record checks."""

from __future__ import annotations

import json

import pytest

from aseptic_cell.config import default_config_dir, load_config
from aseptic_cell.nodes.graph import PROCESS_EQUIPMENT, default_graph
from aseptic_cell.nodes.supervisor_node import _is_patient_recipe, supervisor_spec

CONFIG = default_config_dir()


@pytest.fixture(scope="module")
def cfg():
    return load_config(CONFIG)


def test_the_graph_tells_the_supervisor_whether_it_hosts_the_process_equipment():
    with_pe = {s.name: s for s in default_graph(str(CONFIG), speed=1.0, extra=[supervisor_spec(str(CONFIG))],
                                                process_equipment=True)}
    assert PROCESS_EQUIPMENT in with_pe and with_pe["supervisor"].params["process_equipment"] is True
    without = {s.name: s for s in default_graph(str(CONFIG), speed=1.0, extra=[supervisor_spec(str(CONFIG))])}
    assert PROCESS_EQUIPMENT not in without and without["supervisor"].params["process_equipment"] is False
    # a subset that drops the process-equipment process: the supervisor must not wait for it
    sub = {s.name: s for s in default_graph(str(CONFIG), speed=1.0, extra=[supervisor_spec(str(CONFIG))],
                                            process_equipment=True, nodes=["sim_world", "isolator", "supervisor"])}
    assert sub["supervisor"].params["process_equipment"] is False


def test_patient_recipes_are_told_from_campaign_recipes(cfg):
    assert _is_patient_recipe(cfg, "PATIENT-CART-SHORT")
    assert not _is_patient_recipe(cfg, "CART-TRANSDUCTION") and not _is_patient_recipe(cfg, "NO-SUCH")


def test_operate_takes_the_process_equipment_on_the_one_command_path(cfg):
    """The supervisor's operator path (what /cell/operate calls): a manual equipment command needs
    ``equipment.operate`` (supervisor, engineer); the operator is refused and the refusal recorded;
    a supervisor's command reaches the unit; safe_state is open to any known user; an unknown node is
    refused naming the known ones, the process equipment among them."""
    from aseptic_cell.supervisor.runner import InProcessRun

    run = InProcessRun(cfg, tick_s=5.0)
    run.advance(5.0)
    sup = run.sup
    out, h = sup.operate("sealer", "seal", {"container_id": "C1"}, "op1", "manual seal")
    assert h is None and not out.accepted and out.code == "PERMISSION" and "equipment.operate" in out.reason
    assert sup.refusals[-1]["code"] == "PERMISSION" and sup.refusals[-1]["device"] == "sealer"
    assert run.cell.sim.models["SEAL1"].sensors()["busy"] is False  # nothing moved
    for user in ("qa1", "adm1"):
        out, h = sup.operate("incubator", "assign_slot", {"slot": 3, "batch_id": "B", "coi": "COI-X00001"}, user)
        assert h is None and out.code in ("PERMISSION", "NOT_QUALIFIED"), (user, out)
    out, h = sup.operate("scanner", "place", {"station": "counter", "container_id": "C1",
                                              "label": "COI:COI-X00001|CID:C1"}, "sup1", "manual check")
    assert out.accepted and h is not None and h.accepted, (out, h and h.reason)
    out, h = sup.operate("scanner", "scan", {"station": "counter"}, "sup1", "manual check")
    assert h is not None and h.accepted and h.payload["payload"] == "COI:COI-X00001|CID:C1", h
    out, h = sup.operate("counter", "safe_state", {"reason": "test"}, "op1", "make safe")
    assert h is not None and h.accepted and run.cell.latched("counter")
    out, h = sup.operate("freezer", "run", {}, "sup1")
    assert out.code == "INVALID" and "'incubator'" in out.reason and "'scanner'" in out.reason
    assert json.dumps(sup.refusals[-1], default=str)  # recorded, serialisable


def test_graph_demo_record_checks_count_entries_without_their_coi(tmp_path):
    """patient_record_checks (the graph demo and test): an entry without the batch's COI is counted
    as such, the file is left as it was, a missing file is reported, not raised."""
    import time

    from aseptic_cell.demo import patient_record_checks
    from aseptic_cell.records import BatchRecord

    class Clock:
        def now(self) -> float:
            return time.time()

    path = tmp_path / "batch-X.db"
    rec = BatchRecord(path, Clock())
    rec.append("note", batch_id="X", actor="system", action="a", payload={"coi": "COI-X00001"})
    rec.append("note", batch_id="X", actor="system", action="b", payload={})
    rec.close()
    before = path.read_bytes()
    out = patient_record_checks(str(path), "X", "COI-X00001")
    assert out["entries"] == 2 and out["entries_with_coi"] == 1 and out["custody_problems"] == {}, out
    assert path.read_bytes() == before
    out = patient_record_checks(str(tmp_path / "batch-Y.db"), "Y", "COI-X00001")
    assert out["record_verified"] is False and "no record file" in out["error"]
