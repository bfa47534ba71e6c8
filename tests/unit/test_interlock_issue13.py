"""Issue 13 interlock defects, each tried the way that broke it before the fix: the autoclave
doors both open (IL-11B/C/D), the robot next to an occupied glove port at reduced speed
(IL-09), a glove without a recorded visual check (IL-05), the tautological IL-13."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aseptic_cell.config.loader import load_config
from aseptic_cell.interlocks import InterlockEngine

REPO = Path(__file__).resolve().parents[2]
CFG = load_config(REPO / "config")


class _Clock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


def _engine(values: dict[str, Any]) -> InterlockEngine:
    eng = InterlockEngine.from_config(CFG, _Clock())
    for name, v in values.items():
        eng.signals.update(name, v, 100.0, name.split(".", 1)[0])
    return eng


_AC_SAFE = {"autoclave.cycle_active": False, "autoclave.chamber_gauge_abs_kpa": 0.2,
            "autoclave.chamber_t_c": 40.0, "autoclave.last_result": "PASS",
            "autoclave.sterile_load_available": True, "vhp.cycle_active": False, "vhp.h2o2_ppm": 0.1,
            "isolator.decon_status": "DECONTAMINATED_RELEASED", "isolator.dp_in_band": True,
            "isolator.particles.monitor_running": True, "isolator.particles.sample_flow_ok": True,
            "isolator.particles.action_excursion": False}


def test_autoclave_clean_side_door_never_opens_while_the_load_door_is_open():
    """Item 1: IL-11B's door clause was any(load closed, unload closed), true while the OTHER door
    is open; the supervisor must refuse the second door itself (EN 285 §4.3.2)."""
    eng = _engine({**_AC_SAFE, "autoclave.door_load.closed": False, "autoclave.door_unload.closed": True})
    d = eng.check("autoclave.open_unload")
    assert not d.allowed
    assert "IL-11D" in d.denied_by and "autoclave.door_load.closed = False" in d.message
    eng = _engine({**_AC_SAFE, "autoclave.door_load.closed": True, "autoclave.door_unload.closed": False})
    d = eng.check("autoclave.open_load")
    assert not d.allowed and "IL-11C" in d.denied_by
    # the other door closed: each door may open (idempotent for the door already open too)
    eng = _engine({**_AC_SAFE, "autoclave.door_load.closed": True, "autoclave.door_unload.closed": True})
    assert eng.check("autoclave.open_load").allowed and eng.check("autoclave.open_unload").allowed
    eng = _engine({**_AC_SAFE, "autoclave.door_load.closed": False, "autoclave.door_unload.closed": True})
    assert eng.check("autoclave.open_load").allowed  # it is the load door itself that is open


def test_robot_never_moves_next_to_an_occupied_glove_port_even_at_reduced_speed():
    """Item 5: IL-09 allowed near-port motion at near_product speed with an arm in the glove."""
    vhp = {"vhp.cycle_active": False, "vhp.h2o2_ppm": 0.1}
    eng = _engine({**vhp, "isolator.glove.GP2.in_use": True, "arm.speed_class": "near_product"})
    d = eng.check("arm.move_near_port", {"port": "GP2"})
    assert not d.allowed and d.denied_by == ["IL-09"]
    assert "isolator.glove.GP2.in_use = True" in d.message
    eng = _engine({**vhp, "isolator.glove.GP2.in_use": False, "arm.speed_class": "transit"})
    assert eng.check("arm.move_near_port", {"port": "GP2"}).allowed
    eng = _engine({**vhp, "arm.speed_class": "near_product"})  # port state unknown: denied
    assert not eng.check("arm.move_near_port", {"port": "GP2"}).allowed


# ----------------------------------------------------------------------------- IL-05: visual check
def test_isolator_does_not_report_an_unseen_glove_as_free_of_defects():
    """Item 3: ``bool(None)`` published visual_defect = False for a glove nobody had looked at."""
    from aseptic_cell.devices.signals import signals_from_readings
    from aseptic_cell.supervisor.port import InProcessCell

    cell = InProcessCell(CFG)
    s = signals_from_readings("isolator", cell.sensors("isolator"), CFG)
    assert all(f"isolator.glove.{g.id}.visual_defect" not in s or s[f"isolator.glove.{g.id}.visual_defect"] is None
               for g in CFG.layout.isolator.glove_ports)
    eng = _engine({"isolator.glove.GP1.last_test": "PASS", "isolator.glove.GP1.test_age_h": 1.0})
    d = eng.check("glove.use", {"port": "GP1"})
    assert not d.allowed and "IL-05" in d.denied_by and "visual_defect is missing" in d.message


def test_glove_use_needs_the_operators_recorded_visual_check():
    """Item 3: the visual check before use is a recorded input; a defect blocks the port."""
    from aseptic_cell.supervisor.runner import InProcessRun

    run = InProcessRun(CFG, tick_s=20.0)
    sup = run.sup
    run.cell.sim.models["ISO1"].start_glove_test("GP3", "op1")
    run.advance(900)
    assert run.cell.sensors("isolator")["glove.GP3.last_test"] == "PASS"
    out, h = sup.operate("isolator", "use_glove", {"port": "GP3", "user": "op1"}, "op1")
    assert not out.accepted and h is None and "IL-05B" in out.reason and "visual_check_age_h" in out.reason
    out, _ = sup.operate("isolator", "record_visual_check", {"port": "GP3", "result": "defect"}, "op1",
                         "pinhole at the cuff")
    assert out.accepted
    assert any(a.get("category") == "glove_visual_check" or "visual_check" in str(a) for a in sup.journal.timeline) \
        or sup.operator.gloves.last["GP3"]["user"] == "op1"
    out, h = sup.operate("isolator", "use_glove", {"port": "GP3", "user": "op1"}, "op1")
    assert not out.accepted and "isolator.glove.GP3.visual_defect = True" in out.reason
    # a clean check cannot simply overwrite the defect: the glove must pass an integrity test after it
    out, _ = sup.operate("isolator", "record_visual_check", {"port": "GP3", "result": "no_defect"}, "op1")
    assert not out.accepted and out.code == "STATE"
    run.cell.sim.models["ISO1"].start_glove_test("GP3", "op1")
    run.advance(900)
    out, _ = sup.operate("isolator", "record_visual_check", {"port": "GP3", "result": "no_defect"}, "op1")
    assert out.accepted, out.reason
    out, h = sup.operate("isolator", "use_glove", {"port": "GP3", "user": "op1"}, "op1")
    assert out.accepted and h is not None, out.reason
    run.advance(CFG.interlocks.parameters["glove_visual_check_max_age_h"] * 3600 + 60)
    sup.refresh_signals()
    assert not sup.engine.check("glove.use", {"port": "GP3"}).allowed  # the check was for that use


# ----------------------------------------------------------------------------- IL-06: deviation path
def test_aborted_batch_closes_its_record_only_through_an_approved_deviation():
    """Item 4: IL-06 was a dead end for an aborted batch (or a failed end glove test)."""
    from aseptic_cell.supervisor.runner import InProcessRun

    run = InProcessRun(CFG, tick_s=5.0)
    sup = run.sup
    assert sup.run_batch("CART-TRANSDUCTION", "B-DEV", "op1").accepted
    run.advance(30)
    assert sup.batch_command("abort", "sup1", password="sup1-demo-2026", meaning="responsibility",
                             reason="test").accepted
    run.advance(5)
    close = {"password": "qa1-demo-2026", "meaning": "review", "reason": "close"}
    out = sup.batch_command("close_record", "qa1", **close)
    assert not out.accepted and "IL-06" in out.reason
    devs = sup.operator.deviations
    assert devs.raise_("IL-06", "short", "sup1").code == "INVALID"
    out = devs.raise_("IL-06", "batch aborted before the end-of-batch glove test", "sup1")
    assert out.accepted
    dev_id = out.payload["deviation"]
    run.advance(5)
    assert not sup.batch_command("close_record", "qa1", **close).accepted  # raised, not approved
    # the person who raised it cannot approve it; QA needs a valid e-signature
    assert devs.approve(dev_id, "sup1", "sup1-demo-2026", "approval", "ok").code == "PERMISSION"
    assert devs.approve(dev_id, "qa1", "wrong-password", "approval", "assessed").code == "SIGNATURE"
    out = devs.approve(dev_id, "qa1", "qa1-demo-2026", "approval", "no product exposed; gloves retested on line")
    assert out.accepted, out.reason
    run.advance(5)
    out = sup.batch_command("close_record", "qa1", **close)
    assert out.accepted, out.reason
    assert devs.approve(dev_id, "qa1", "qa1-demo-2026", "approval", "again").code == "STATE"


# ----------------------------------------------------------------------------- item 8: beta sterility
def test_rtp_transfer_takes_the_betas_sterility_from_its_own_data(tmp_path):
    """Item 8: the tree docked any beta as 'sterile'. A container the register does not know is
    refused and the batch holds; a listed one docks with its evidence in the command's reason."""
    import shutil

    import py_trees
    from aseptic_cell.behaviors.trees import rtp_transfer_in

    class Ctx:
        def __init__(self, cfg):
            self.cfg, self.results, self.sent = cfg, {}, []

        def send(self, node, command, args, *, reason="", checks=()):
            self.sent.append((node, command, dict(args), reason))
            return None

    ctx = Ctx(CFG)
    tree = rtp_transfer_in(ctx, "RTP1", "BETA-NOBODY-KNOWS")
    tree.tick_once()
    assert tree.status == py_trees.common.Status.FAILURE and not ctx.sent
    dock = tree.children[0]
    assert "sterility is unknown" in dock.feedback_message and "BETA-NOBODY-KNOWS" in dock.feedback_message
    ctx = Ctx(CFG)
    tree = rtp_transfer_in(ctx, "RTP1", "BETA-PATIENT-BAG")
    tree.tick_once()
    assert ctx.sent[0][:2] == ("isolator", "dock_beta") and ctx.sent[0][2]["sterile_status"] == "sterile"
    assert "supplier certificate" in ctx.sent[0][3]
    # an on-site autoclaved container needs this batch's PASS record of its load
    d = tmp_path / "config"
    shutil.copytree(REPO / "config", d)
    (d / "containers.yaml").write_text(
        "containers:\n  - {id: BETA-AC, method: moist_heat, evidence: cycle_record, reference: LOAD-BETA-AC}\n")
    cfg2 = load_config(d)
    ctx = Ctx(cfg2)
    tree = rtp_transfer_in(ctx, "RTP1", "BETA-AC")
    tree.tick_once()
    assert tree.status == py_trees.common.Status.FAILURE and "no PASS autoclave cycle record" in \
        tree.children[0].feedback_message
    ctx = Ctx(cfg2)
    ctx.results["autoclave"] = {"result": "PASS", "load_id": "LOAD-BETA-AC"}
    tree = rtp_transfer_in(ctx, "RTP1", "BETA-AC")
    tree.tick_once()
    assert ctx.sent and ctx.sent[0][2]["sterile_status"] == "sterile"


# ----------------------------------------------------------------------------- item 9: first-air keep-out
def test_an_open_container_at_the_workstation_activates_its_first_air_keep_out():
    """Item 9: nothing set ``container_open:workstation``; the arm's motion check never saw it."""
    import numpy as np

    from aseptic_cell.devices.arm.motion import keepout_conditions
    from aseptic_cell.motion import Scene
    from aseptic_cell.supervisor.runner import InProcessRun

    run = InProcessRun(CFG)
    known = {b.active for b in CFG.geometry.boxes}
    run.advance(2)
    assert "container_open:workstation" not in keepout_conditions(run.cell.signals("isolator"), known)
    out, h = run.sup.operate("isolator", "open_container", {"station": "workstation"}, "op1", "open the bag")
    # the supervisor checks it as product exposure: refused before the isolator is released (IL-04)
    assert not out.accepted and "IL-04" in out.reason
    h = run.cell.send("isolator", "open_container", {"station": "workstation"}, user="op1", reason="test")
    run.advance(2)
    assert h.done and h.accepted, h.reason
    sig = run.cell.signals("isolator")
    assert sig["isolator.station.workstation.container_open"] is True
    cond = keepout_conditions(sig, known)
    assert "container_open:workstation" in cond
    # an arm configuration inside the column over the workstation: free until the container is open
    scene = Scene.from_config(CFG.arm, CFG.geometry)
    rng = np.random.default_rng(3)
    lo = np.maximum([j.min for j in CFG.arm.joints], -np.pi)
    hi = np.minimum([j.max for j in CFG.arm.joints], np.pi)
    qs = rng.uniform(lo, hi, size=(20000, 6))
    free_closed = scene.check_configs(qs, conditions=set(), refine=False)
    free_open = scene.check_configs(qs, conditions={"container_open:workstation"}, refine=False)
    assert np.any(free_closed & ~free_open)  # configurations only the first-air column forbids
    run.cell.send("isolator", "close_container", {"station": "workstation"}, user="op1", reason="closed")
    run.advance(2)
    assert "container_open:workstation" not in keepout_conditions(run.cell.signals("isolator"), known)


# ----------------------------------------------------------------------------- item 6: hatch chamber
def test_hatch_chamber_is_decontaminated_only_by_its_cycle_record_or_an_allowed_signed_wipe_down(tmp_path):
    """Item 6: an operator 'clicked' mark_hatch_decontaminated (operator role, no cycle, no signature)."""
    import shutil

    from aseptic_cell.devices.commands import CONTRACTS
    from aseptic_cell.supervisor.runner import InProcessRun

    assert "mark_hatch_decontaminated" not in {c.name for c in CONTRACTS["isolator"].COMMANDS}
    run = InProcessRun(CFG, tick_s=5.0)
    sup, iso = run.sup, run.cell.sim.models["ISO1"]
    run.advance(15)
    out, h = sup.operate("isolator", "mark_hatch_decontaminated", {}, "op1")
    if out.accepted:  # forwarded: the device's command catalogue refuses it
        run.advance(1)
        assert not h.accepted and h.code == "INVALID"
    # the cycle: both doors sealed; it takes decon_cycle_s; its record is the evidence
    out, h = sup.operate("isolator", "start_hatch_decon", {"user": "op1"}, "op1", "pass-box cycle")
    assert out.accepted, out.reason
    run.advance(5)
    assert h.accepted and run.cell.sensors("isolator")["hatch.decon_running"] is True
    assert iso.status()["hatch_decontaminated"] is False
    run.advance(CFG.layout.isolator.hatch.decon_cycle_s)
    rec = iso.hatch_decon_records[-1]
    assert rec["result"] == "PASS" and rec["method"] == "cycle" and rec["user"] == "op1"
    assert iso.status()["hatch_decontaminated"] is True
    # a seal lost during the cycle fails it: the chamber stays not decontaminated
    iso.open_door("A")
    run.advance(10)
    iso.close_door("A")
    run.advance(15)
    assert iso.status()["hatch_decontaminated"] is False
    out, h = sup.operate("isolator", "start_hatch_decon", {"user": "op1"}, "op1")
    assert out.accepted, out.reason
    run.advance(5)
    iso.faults.inject("seal_loss", door="B")
    run.advance(60)
    assert iso.hatch_decon_records[-1]["result"] == "FAIL"
    assert iso.status()["hatch_decontaminated"] is False
    # the manual wipe-down: refused where the site does not allow it ...
    out, h = sup.operate("isolator", "record_hatch_wipe_down", {"user": "sup1", "reason": "x"}, "op1")
    assert not out.accepted and out.code == "PERMISSION"  # its own permission (supervisor)
    out, h = sup.operate("isolator", "record_hatch_wipe_down", {"user": "sup1", "reason": "x"}, "sup1")
    assert not out.accepted and out.code == "SIGNATURE"  # signed
    d = tmp_path / "config"
    shutil.copytree(REPO / "config", d)
    text = (d / "cell.yaml").read_text().replace("manual_wipe_down_allowed: false", "manual_wipe_down_allowed: true")
    (d / "cell.yaml").write_text(text)
    for cfg, allowed in ((CFG, False), (load_config(d), True)):
        run = InProcessRun(cfg)
        run.advance(15)
        out, h = run.sup.operate("isolator", "record_hatch_wipe_down",
                                 {"user": "sup1", "reason": "70 % IPA + sporicide lot SP-1, 10 min contact"},
                                 "sup1", "wipe-down", password="sup1-demo-2026", meaning="verification")
        assert out.accepted, out.reason
        run.advance(2)
        assert h.accepted is allowed, h.reason
        status = run.cell.sim.models["ISO1"].status()
        assert status["hatch_decontaminated"] is allowed
        if not allowed:
            assert h.code == "HATCH_WIPE_DOWN_NOT_ALLOWED"


def test_operator_docking_takes_the_sterility_from_the_register_not_from_the_form():
    """Item 8 on the operator path: the HMI form's sterile_status is no evidence."""
    from aseptic_cell.supervisor.runner import InProcessRun

    run = InProcessRun(CFG, tick_s=5.0)
    sup = run.sup
    run.advance(5)
    out, h = sup.operate("isolator", "dock_beta", {"rtp": "RTP1", "beta_id": "BETA-UNKNOWN",
                                                   "sterile_status": "sterile"}, "op1")
    assert not out.accepted and h is None and out.code == "BETA_NOT_STERILE" and "unknown" in out.reason
    out, h = sup.operate("isolator", "dock_beta", {"rtp": "RTP1", "beta_id": "BETA-PATIENT-BAG",
                                                   "sterile_status": "not_sterile"}, "op1")
    assert not out.accepted and "operator reports 'not_sterile'" in out.reason
    out, h = sup.operate("isolator", "dock_beta", {"rtp": "RTP1", "beta_id": "BETA-PATIENT-BAG",
                                                   "sterile_status": "sterile"}, "op1")
    assert out.accepted, out.reason
    run.advance(5)
    assert h.accepted and run.cell.sensors("isolator")["rtp.RTP1.beta_docked"] is True
