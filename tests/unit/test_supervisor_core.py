"""Supervisor core: trees build and render offline, the batch executive (roles, e-signature,
Held with every device safe, no auto-resume), the operator path and bad input."""

from __future__ import annotations

import py_trees
import pytest
from aseptic_cell.behaviors import trees

from aseptic_cell.config import default_config_dir, load_config
from aseptic_cell.records import BatchRecord
from aseptic_cell.supervisor.runner import InProcessRun


@pytest.fixture(autouse=True)
def _clean_blackboard():
    py_trees.blackboard.Blackboard.enable_activity_stream(maximum_size=100)
    yield
    py_trees.blackboard.Blackboard.clear()
    py_trees.blackboard.Blackboard.disable_activity_stream()


@pytest.fixture(scope="module")
def cfg():
    return load_config(default_config_dir())


class _OfflineCtx:
    """Nothing but the configuration: building a tree must not touch a device."""

    def __init__(self, cfg):
        self.cfg = cfg

    def __getattr__(self, name):
        raise AssertionError(f"tree construction touched the context: {name}")


TREE_PARAMS = {
    "glove_integrity_test": {"ports": "all"},
    "isolator_leak_test": {},
    "vhp_decontamination": {"cycle": "VHP-ISO-STD"},
    "autoclave_transfer_in": {"program": "P121-15", "load_id": "L1"},
    "autoclave_test": {"program": "BOWIE-DICK"},
    "rtp_transfer_in": {"rtp": "RTP1", "beta_id": "B1"},
    "rtp_close": {"rtp": "RTP1"},
    "robot_task": {"waypoints": ["park", "rtp_pick", "park"]},
    "process_hold": {"duration_s": 60.0},
    "operator_confirm": {"prompt": "bag label checked"},
}


@pytest.mark.parametrize("tree_id", sorted(trees.TREE_FACTORIES))
def test_every_tree_builds_and_renders_offline(tree_id, cfg):
    ctx = _OfflineCtx(cfg)
    if tree_id == "batch_procedure":
        root = trees.batch_procedure(ctx, cfg.recipes["CART-TRANSDUCTION"], "B1")
    else:
        params = dict(TREE_PARAMS[tree_id])
        if tree_id == "autoclave_test":
            params["program"] = next(p.id for p in cfg.autoclave_programs.programs if p.kind != "sterilise")
        root = trees.TREE_FACTORIES[tree_id](ctx, **params)
    text = py_trees.display.unicode_tree(root)
    dot = py_trees.display.dot_tree(root)
    assert root.name in text and len(list(root.iterate())) >= 1
    assert dot.get_nodes()
    for node in root.iterate():  # nothing ran: every behaviour is still INVALID
        assert node.status == py_trees.common.Status.INVALID


def test_batch_tree_has_every_recipe_phase_and_the_guards(cfg):
    root = trees.batch_procedure(_OfflineCtx(cfg), cfg.recipes["CART-TRANSDUCTION"], "B1")
    text = py_trees.display.unicode_tree(root)
    for _up, _op, ph in cfg.recipes["CART-TRANSDUCTION"].phases():
        assert ph.id in text
    assert "IL-05 batch.start" in text and "IL-07 held during the cycle" in text
    assert "RTP RTP1 close and undock" in text


def test_full_batch_completes_with_a_verified_record(cfg, tmp_path):
    rec = BatchRecord(tmp_path / "b.db", _Clock())
    run = InProcessRun(cfg, tick_s=5.0, record=rec)
    rec._clock = run.cell.sim.clock
    out = run.run_batch("CART-TRANSDUCTION", "B-FULL", "op1")
    assert out.accepted
    s = run.sup.summary()
    assert s["batch_state"] == "Complete", s["held_reason"]
    assert s["vhp"]["result"] == "PASS" and s["vhp"]["aeration_end_ppm"] < 1.0
    assert s["autoclave"]["result"] == "PASS" and s["autoclave"]["f0_min"] >= 15.0
    assert not s["trips"] and not s["refusals"]
    kinds = {e.kind for e in rec.entries("B-FULL")}
    assert {"phase_transition", "command", "cycle_result"} <= kinds
    assert rec.verify().ok
    # the end-of-batch glove test unlocks IL-06 (close record)
    run.sup.tick()
    assert run.sup.check([("batch.close_record", {})])[0]
    rec.close()


class _Clock:
    def now(self):
        return 0.0


def test_bad_input_is_refused_and_recorded_nothing_moves(cfg, tmp_path):
    rec = BatchRecord(tmp_path / "b.db", _Clock())
    run = InProcessRun(cfg, tick_s=5.0, record=rec)
    sup = run.sup
    before = dict(run.cell.sensors("isolator"))
    run.advance(2)  # signals known
    cases = [
        (sup.run_batch("NO-SUCH-RECIPE", "B1", "op1"), "RECIPE", "unknown batch recipe 'NO-SUCH-RECIPE'"),
        (sup.run_batch("CART-TRANSDUCTION", "B1", "qa1"), "PERMISSION", "role 'qa' may not perform 'batch.start'"),
        (sup.run_batch("CART-TRANSDUCTION", "", "op1"), "INVALID", "batch_id"),
        (sup.batch_command("restart", "sup1"), "STATE", "not allowed in phase state Idle"),
        (sup.batch_command("launch", "op1"), "INVALID", "unknown batch command 'launch'"),
    ]
    for out, code, text in cases:
        assert not out.accepted and out.code == code and text in out.reason, out
    out, h = sup.operate("isolator", "open_alpha", {"rtp": "RTP1"}, "op1")
    assert not out.accepted and "IL-02" in out.reason and h is None
    out, h = sup.operate("arm", "move_to_pose", {"pose": "park"}, "op1")
    assert not out.accepted and out.code == "PERMISSION"
    out, h = sup.operate("reactor", "open", {}, "op1")
    assert not out.accepted and "unknown device node" in out.reason
    out, h = sup.operate("isolator", "open_door", {"door": "C"}, "op1")  # no such hatch door
    assert not out.accepted and h is None and "'C'" in out.reason
    out, h = sup.operate("isolator", "close_door", {"door": "A", "speed": 3}, "op1")  # the catalogue refuses
    assert h is not None and not h.accepted and h.code == "INVALID" and "speed" in h.reason
    run.advance(10)
    assert run.cell.sensors("isolator")["hatch.door_A"] == before["hatch.door_A"] == "closed"
    assert sup.sm.state.value == "Idle"
    refusals = rec.entries(kinds=["refusal"])
    assert len(refusals) >= 8
    assert any("NO-SUCH-RECIPE" in e.reason for e in refusals)
    rec.close()


def test_recipe_with_unknown_device_and_pose_is_refused(cfg, tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text(
        "id: BAD\nversion: 1\nproduct: x\nprocedure:\n  id: P\n  unit_procedures:\n"
        "    - id: U\n      unit: REACTOR9\n      operations:\n        - id: O\n          phases:\n"
        "            - {id: PH1, type: robot_task, params: {waypoints: [park, moon]}}\n")
    run = InProcessRun(cfg, tick_s=5.0)
    out = run.sup.run_batch(str(bad), "B1", "op1")
    assert not out.accepted and out.code == "RECIPE"
    assert "unknown device 'REACTOR9'" in out.reason and "moon" in out.reason
    bad.write_text(bad.read_text().replace("type: robot_task", "type: teleport"))
    out = run.sup.run_batch(str(bad), "B1", "op1")
    assert not out.accepted and "unknown phase type 'teleport'" in out.reason
    assert run.sup.sm.state.value == "Idle" and not run.cell.sim.arm.moving


def test_trip_holds_with_all_devices_safe_and_restart_needs_supervisor_signature(cfg):
    run = InProcessRun(cfg, tick_s=5.0)
    sup = run.sup
    assert sup.run_batch("CART-TRANSDUCTION", "B1", "op1").accepted
    run.advance(20)
    # bypass the supervisor: an arm moves during the glove test -> RB-02 is not relevant
    # (no VHP), but the hold path: operator hold, then a trip-style hold from a failed phase
    run.cell.inject_fault("ISO1", "glove_breach:GP1")
    run.run_until(lambda: sup.sm.state.value == "Held", 2000)
    assert sup.sm.state.value == "Held"
    assert all(run.cell.latched(n) for n in ("isolator", "vhp", "autoclave", "arm"))
    run.advance(600)
    assert sup.sm.state.value == "Held"  # never resumes by itself
    assert not sup.batch_command("restart", "op1").accepted  # operators may not restart
    out = sup.batch_command("restart", "sup1")
    assert not out.accepted and out.code == "SIGNATURE"
    out = sup.batch_command("restart", "sup1", password="wrong-password", meaning="responsibility")
    assert not out.accepted and out.code == "SIGNATURE"
    run.cell.clear_fault("ISO1", "glove_breach:GP1")
    out = sup.batch_command("restart", "sup1", password="sup1-demo-2026", meaning="responsibility",
                            reason="glove replaced")
    assert out.accepted, out
    run.advance(5)
    assert not any(run.cell.latched(n) for n in ("isolator", "vhp", "autoclave", "arm"))
    # the trip put the arm in a protective stop; the signed restart reset it (else the next
    # "drives on" would be refused and the batch would hold again at once)
    assert run.cell.sensors("arm")["protective_stop"] is False
    assert sup.sm.state.value == "Running", sup.held_reason
    restarts = [e for e in sup.timeline if e["level"] == "batch" and e["from"] == "Held"]
    assert restarts and restarts[0]["by"] == "sup1"


def test_pause_waits_for_the_phase_boundary_and_resume(cfg):
    run = InProcessRun(cfg, tick_s=5.0)
    sup = run.sup
    sup.run_batch("CART-TRANSDUCTION", "B1", "op1")
    run.advance(20)
    assert sup.batch_command("pause", "op1").accepted
    assert sup.sm.state.value == "Pausing"
    run.run_until(lambda: sup.sm.state.value == "Paused", 3000)
    assert sup.sm.state.value == "Paused"
    done = [p for p, m in sup.phases.items() if m.state.value == "Complete"]
    assert len(done) == 1  # the glove test finished; the leak test did not start
    run.advance(300)
    assert sup.sm.state.value == "Paused"
    assert sup.batch_command("resume", "op1").accepted
    run.advance(20)
    assert sup.active_phase and sup.active_phase.endswith("PH-LEAK-TEST")


def test_abort_needs_signature_and_makes_every_device_safe(cfg):
    run = InProcessRun(cfg, tick_s=5.0)
    sup = run.sup
    sup.run_batch("CART-TRANSDUCTION", "B1", "op1")
    run.advance(10)
    assert sup.batch_command("abort", "op1").code == "PERMISSION"
    out = sup.batch_command("abort", "qa1", password="qa1-demo-2026", meaning="responsibility", reason="test")
    assert out.accepted and sup.sm.state.value == "Aborted"
    assert all(run.cell.latched(n) for n in ("isolator", "vhp", "autoclave", "arm"))
    assert sup.batch_command("reset", "op1").code == "PERMISSION"
    assert sup.batch_command("reset", "sup1").accepted and sup.sm.state.value == "Idle"


def test_manual_arm_move_checks_every_glove_port_il09(cfg):
    """IL-09 on the operator path: a manual move near a glove port in use is refused unless the
    arm is in its reduced (near-product) speed class."""
    run = InProcessRun(cfg)
    sup = run.sup
    run.advance(5)
    out, h = sup.operate("arm", "move_to_pose", {"pose": "park"}, "sup1")
    assert "IL-09" not in out.reason  # every port free: IL-09 holds nothing
    run.cell.sim.models["ISO1"].use_glove("GP3", "op1")  # an arm in the glove, at the isolator
    run.advance(5)
    assert run.cell.sensors("isolator")["glove.GP3.in_use"] is True
    out, h = sup.operate("arm", "move_to_pose", {"pose": "park"}, "sup1")
    assert not out.accepted and h is None and out.code == "INTERLOCK"
    assert "IL-09 [port=GP3]" in out.reason and "IL-09 [port=GP1]" not in out.reason
    assert any(r["command"] == "move_to_pose" and "IL-09" in r["reason"] for r in sup.refusals)


def test_restart_holds_again_when_a_recovery_is_refused(cfg):
    """The signed restart's device steps must all succeed; a refusal holds the batch again with
    the reason instead of restarting into a device that is not ready."""
    run = InProcessRun(cfg, tick_s=5.0)
    sup = run.sup
    run.cell.inject_fault("ISO1", "glove_breach:GP1")
    assert sup.run_batch("CART-TRANSDUCTION", "B1", "op1").accepted
    run.advance(3000)
    assert sup.sm.state.value == "Held"
    run.cell.inject_fault("ARM1", "arm_fault", reason="drive fault")  # the reset must be refused now
    run.cell.clear_fault("ISO1", "glove_breach:GP1")
    out = sup.batch_command("restart", "sup1", password="sup1-demo-2026", meaning="responsibility",
                            reason="glove replaced")
    assert out.accepted, out
    run.advance(30)
    assert sup.sm.state.value == "Held"
    assert sup.held_reason == ("restart failed: arm.reset_protective_stop refused: ARM_FAULT_ACTIVE: "
                               "arm fault still present; clear it before reset")
    assert run.cell.sensors("arm")["protective_stop"] is True  # nothing was forced
    assert any(t["rule"] == "restart" for t in sup.trips)


def test_recover_one_device_needs_role_reason_signature_and_a_held_batch(cfg, tmp_path):
    """An operator's recovery of a latched device outside a restart (HMI, /cell/recover): each
    missing element is refused and recorded; the signed recovery releases that device only and
    is recorded as a signature and an intervention."""
    rec = BatchRecord(tmp_path / "b.db", _Clock())
    run = InProcessRun(cfg, tick_s=5.0, record=rec)
    sup = run.sup
    assert sup.run_batch("CART-TRANSDUCTION", "B-REC", "op1").accepted
    run.advance(10)
    good = {"password": "sup1-demo-2026", "meaning": "responsibility", "reason": "seal checked"}
    out, h = sup.recover_device("isolator", "sup1", **good)
    assert h is None and out.code == "STATE" and "Running" in out.reason  # nothing latched mid-batch
    out = sup.batch_command("abort", "qa1", password="qa1-demo-2026", meaning="responsibility", reason="test")
    assert out.accepted and all(run.cell.latched(n) for n in ("isolator", "vhp", "autoclave", "arm"))
    tries = [
        (("pump", "sup1"), good, "INVALID"),
        (("isolator", "op1"), good, "PERMISSION"),  # operators may not release a latched device
        (("isolator", "sup1"), {**good, "reason": " "}, "INVALID"),
        (("isolator", "sup1"), {**good, "password": ""}, "SIGNATURE"),
        (("isolator", "sup1"), {**good, "password": "wrong-password"}, "SIGNATURE"),
    ]
    for (node, user), kw, code in tries:
        out, h = sup.recover_device(node, user, **kw)
        assert h is None and not out.accepted and out.code == code, (node, user, kw, out)
    assert all(run.cell.latched(n) for n in ("isolator", "vhp", "autoclave", "arm"))
    assert sum(r["command"] == "recover" for r in sup.refusals) == len(tries) + 1
    out, h = sup.recover_device("isolator", "sup1", **good)
    assert out.accepted and h is not None and h.done and h.accepted, (out, h.reason)
    assert not run.cell.latched("isolator")
    assert all(run.cell.latched(n) for n in ("vhp", "autoclave", "arm"))  # only the one asked for
    out, h = sup.recover_device("isolator", "sup1", **good)
    assert out.code == "STATE" and "not latched" in out.reason
    actions = [(e.kind, e.action) for e in rec.entries("B-REC")]
    assert ("intervention", "isolator.recover") in actions
    assert actions.index(("signature", "device.recover")) < actions.index(("intervention", "isolator.recover"))
    assert rec.verify().ok
    rec.close()


def test_shelving_an_alarm_needs_the_role_a_signature_and_a_shelvable_alarm(cfg, tmp_path):
    rec = BatchRecord(tmp_path / "b.db", _Clock())
    run = InProcessRun(cfg, record=rec)
    sup = run.sup
    sup.alarms.raise_("ISO1_DP_HIGH", "ISO1.dP", 95.0)
    sup.alarms.raise_("ISO1_DP_LOW", "ISO1.dP", 5.0)
    sig = {"password": "sup1-demo-2026", "meaning": "responsibility", "reason": "sensor being replaced"}
    for user, kw, code in (("op1", sig, "PERMISSION"), ("sup1", {**sig, "password": ""}, "SIGNATURE"),
                           ("sup1", {**sig, "password": "wrong-password"}, "SIGNATURE"),
                           ("sup1", {**sig, "duration_s": float("nan")}, "INVALID")):
        out = sup.shelve_alarm("ISO1_DP_HIGH", user, **{"duration_s": 3600.0, **kw})
        assert not out.accepted and out.code == code, (user, kw, out)
    out = sup.shelve_alarm("ISO1_DP_LOW", "sup1", duration_s=3600.0, **sig)
    assert not out.accepted and "may not be shelved" in out.reason  # rationalised as not shelvable
    out = sup.shelve_alarm("ISO1_DP_HIGH", "sup1", duration_s=10 * 3600.0, **sig)
    assert not out.accepted and "28800" in out.reason  # at most one shift (alarms.yaml max_shelve_s)
    out = sup.shelve_alarm("NO_SUCH", "sup1", duration_s=60.0, **sig)
    assert not out.accepted and "unknown alarm id" in out.reason
    assert {a.id for a in sup.alarms.active()} == {"ISO1_DP_HIGH", "ISO1_DP_LOW"}
    out = sup.shelve_alarm("ISO1_DP_HIGH", "sup1", duration_s=3600.0, **sig)
    assert out.accepted, out
    assert {a.id for a in sup.alarms.active()} == {"ISO1_DP_LOW"}
    assert [a.id for a in sup.alarms.shelved()] == ["ISO1_DP_HIGH"]
    assert ("signature", "alarm.shelve") in [(e.kind, e.action) for e in rec.entries()]
    # ending a shelve: users.yaml alarm.unshelve (operators may; QA may not), no signature (issue 13 item 20)
    assert sup.shelve_alarm("ISO1_DP_HIGH", "qa1", duration_s=0).code == "PERMISSION"
    out = sup.shelve_alarm("ISO1_DP_HIGH", "op1", duration_s=0, reason="sensor back")
    assert out.accepted and sup.alarms.shelved() == []
    assert {a.id for a in sup.alarms.active()} == {"ISO1_DP_HIGH", "ISO1_DP_LOW"}  # annunciated again
    assert rec.verify().ok
    rec.close()


def test_the_same_failure_again_in_the_next_batch_is_recorded_as_a_trip(cfg, tmp_path):
    """A hold by the same source as the last trip entry was taken as that trip's duplicate: the
    second batch's identical phase failure left no trip entry and raised no CELL_INTERLOCK_TRIP."""
    rec = BatchRecord(tmp_path / "b.db", _Clock())
    run = InProcessRun(cfg, tick_s=5.0, record=rec)
    sup = run.sup
    for n, batch in enumerate(("B1", "B2"), start=1):
        assert sup.run_batch("CART-TRANSDUCTION", batch, "op1").accepted
        run.advance(10)
        if sup.sm.state.value == "Running":  # B2: its first phase already failed on B1's latched devices
            sup.hold(f"phase failed in {batch}", trip=True, source="procedure")
        run.advance(5)
        assert sup.sm.state.value == "Held"
        assert len(sup.trips) == n and sup.trips[-1]["rule"] == "procedure", sup.trips
        assert [e for e in rec.entries(batch) if e.kind == "trip"], f"no trip entry in {batch}'s record"
        out = sup.batch_command("abort", "qa1", password="qa1-demo-2026", meaning="responsibility", reason="test")
        assert out.accepted, out.reason
        run.advance(5)
        assert sup.batch_command("reset", "sup1").accepted
