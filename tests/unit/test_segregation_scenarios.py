"""Segregation (SEG-01..10) and chain-of-identity (COI-01..30) rows of the interlock catalogue
(issue 14): every row has a scenario in config/scenarios/ that tries to break it, run in-process
on patient batches (each its own COI and record); SEG-07 (spill -> CONTAIN), SEG-08 (glove test
per batch) and SEG-10 (equipment use log, DIRTY modules) are built in
aseptic_cell/supervisor/segregation.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import py_trees
import pytest
import yaml

from aseptic_cell.config import default_config_dir, load_config
from aseptic_cell.config.interlocks import InterlockCatalogue
from aseptic_cell.records import BatchRecord
from aseptic_cell.supervisor.runner import InProcessRun
from aseptic_cell.supervisor.scenario import ScenarioError, load_scenario, run_in_process, site_config

CONFIG = Path(default_config_dir())
SCENARIOS = sorted([*(CONFIG / "scenarios").glob("SEG-*.yaml"), *(CONFIG / "scenarios").glob("COI-*.yaml")])
SPEC_ROWS = {f"SEG-{i:02d}" for i in range(1, 11)} | {"COI-01", "COI-02", "COI-03", "COI-10", "COI-20", "COI-30"}
COI_A, COI_B = "COI-AAAAAA", "COI-BBBBBB"
DIN_A, DIN_B = "=G12341765432170", "A999917123456 9"


@pytest.fixture(autouse=True)
def _clean_blackboard():
    py_trees.blackboard.Blackboard.clear()
    yield


@pytest.fixture(scope="module")
def cfg():
    return load_config(CONFIG)


def test_every_seg_and_coi_row_is_in_the_catalogue_with_a_scenario_that_demonstrates_it(cfg):
    rows = {r.id: r for r in cfg.interlocks.enforced}
    assert set(rows) == SPEC_ROWS
    by_id = {load_scenario(p)[0].id: load_scenario(p)[0] for p in SCENARIOS}
    for rid, row in rows.items():
        sc = by_id.get(row.scenario)
        assert sc is not None, f"{rid}: scenario {row.scenario} is not in config/scenarios"
        assert rid == sc.interlock or rid in sc.covers, f"{rid}: {sc.id} does not say it demonstrates it"
        # the scenario tries to break the rule: something must be refused, held or flagged
        e = sc.expect
        assert e.refused or any(b.state == "Held" or b.deviations or b.impacted for b in e.batches.values()), rid
        assert e.records_intact, f"{rid}: {sc.id} does not check the records"
    assert {sc.interlock for sc in by_id.values()} <= set(rows)


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_segregation_scenario_holds_and_the_records_stay_intact(path, cfg):
    sc, p = load_scenario(path)
    s = run_in_process(sc, p, cfg)
    assert s["ok"], f"{sc.id}: {s['failures']}\nevents={s['events']}\nrefusals={s['refusals']}"
    assert not s["violations"]  # SEG-01 (two COIs open) and the arbiter's invariants on every tick
    assert all(b["record_ok"] for b in s["patients"].values())
    for b in s["patients"].values():  # nothing resumes by itself: a held batch's record shows no restart by system
        assert b["entries"] > 0


def test_a_scenario_fails_when_the_rule_is_not_enforced(cfg):
    """The SEG-09 scenario on a site whose incubator is validated VHP-tight: the VHP request is
    granted, so the scenario reports its expectation broken (a scenario can fail)."""
    sc, p = load_scenario(CONFIG / "scenarios" / "SEG-09-vhp-with-product-inside.yaml")
    s = run_in_process(sc.model_copy(update={"site": {"vhp_with_product_inside": True}}), p, cfg)
    assert not s["ok"]
    assert any("no refusal of arbiter.vhp" in f for f in s["failures"]), s["failures"]
    assert [e["accepted"] for e in s["events"]] == [True]


def _cell(cfg, tmp_path, site: dict | None = None, patients: int = 2) -> InProcessRun:
    class Clock:
        t = 1_790_000_000.0

        def now(self) -> float:
            self.t += 0.01
            return self.t

    c = site_config(cfg, {"t_purge_min": 1, "t_line_clearance_min": 1, **(site or {})})
    run = InProcessRun(c, tick_s=30.0, record=BatchRecord(tmp_path / "cell.db", Clock()))
    for b, coi, din in (("P-A", COI_A, DIN_A), ("P-B", COI_B, DIN_B))[:patients]:
        assert run.sup.run_batch("PATIENT-CART-SHORT", b, "op1", coi=coi, din=din).accepted
    return run


def _two(cfg, tmp_path) -> InProcessRun:
    return _cell(cfg, tmp_path)


def test_seg08_start_check_on_holds_the_first_open_phase_until_the_glove_tests_pass(cfg, tmp_path):
    """With the site switch on, a batch whose first open phase finds no current glove test holds
    before anything is opened (deviation, alarm); after every port passed, its signed restart
    opens with the tests in force recorded."""
    run = _cell(cfg, tmp_path, {"glove_test_before_first_open": True}, patients=1)
    sup = run.sup
    ex = sup.patients["P-A"]
    assert run.run_until(lambda: ex.sm.state.value == "Held", 3600)
    assert "SEG-08" in ex.held_reason and "glove test" in ex.held_reason
    assert not sup.patient_cell.open_now
    custody = [e.action for e in ex.record.entries(kinds=["custody"])]
    assert "custody.sample" not in custody and "custody.open_start" not in custody  # nothing opened
    devs = [e.payload for e in ex.record.entries(kinds=["deviation"]) if e.payload.get("rule") == "SEG-08"]
    assert devs and devs[0]["code"] == "GLOVE_TEST_STALE"
    assert any(a["alarm"] == "ISO1_GLOVE_TEST_DUE" for a in sup.summary()["alarms"]), sup.summary()["alarms"]
    for port in ("GP1", "GP2", "GP3", "GP4", "GP5"):
        ok, *_ = run.cell.execute("isolator", "start_glove_test", {"port": port, "user": "op1"}, user="op1",
                                  reason="glove tests before the first open phase")
        assert ok
    run.advance(420)
    assert ex.sm.state.value == "Held"  # never resumes by itself
    out = sup.batch_command("restart", "sup1", "sup1-demo-2026", "responsibility", "glove tests passed", batch="P-A")
    assert out.accepted, out
    assert run.run_until(lambda: any(e.action == "segregation.start_glove_test" for e in ex.record.entries()), 1800)
    start = next(e.payload for e in ex.record.entries() if e.action == "segregation.start_glove_test")
    assert start["stale"] == [] and all(r == "PASS" for r, _age in start["tests"].values())


def test_seg07_bad_spill_reports_and_an_unconfined_spill_needs_its_vhp_cycle(cfg, tmp_path):
    run = _two(cfg, tmp_path)
    seg = run.sup.patient_cell.seg
    out = seg.spill("P-X", user="op1")
    assert not out.accepted and out.code == "INVALID" and "P-X" in out.reason
    out = seg.spill("P-A", "blood?", user="op1")
    assert not out.accepted and "material" in out.reason
    assert seg.contain is None  # a bad report changes nothing
    out = seg.cleanup("op1", "wipe")
    assert not out.accepted and out.code == "STATE"
    assert seg.spill("P-A", "vector", confined=False, user="op1").accepted
    assert seg.contain is not None and {"ARM", "WS", "GRADE_A_OPEN_ZONE"} <= set(seg.cell.arbiter.faults)
    assert run.sup.patients["P-A"].impacted and not run.sup.patients["P-B"].impacted  # B was not open
    out = seg.cleanup("op1", "sporicidal wipe")
    assert not out.accepted and out.code == "SEG" and "VHP" in out.reason  # SEG-07.4 escalation
    out = seg.cleanup("op1", "  ", vhp_cycle="VHP-0042")
    assert not out.accepted and out.code == "INVALID"
    assert seg.cleanup("op1", "sporicidal wipe", vhp_cycle="VHP-0042").accepted
    out = seg.exit_contain("qa1", "qa1-demo-2026", "approval")
    assert not out.accepted and "line clearance" in out.reason
    run.advance(600)
    assert seg.contain is not None  # never left by itself
    for b in ("P-A", "P-B"):
        out = run.sup.batch_command("restart", "sup1", "sup1-demo-2026", "responsibility", "try", batch=b)
        assert not out.accepted and out.code == "SEG" and "CONTAIN" in out.reason


def test_seg10_every_use_is_logged_with_batch_coi_and_cleaning_state(cfg, tmp_path):
    run = _two(cfg, tmp_path)
    cell = run.sup.patient_cell
    assert run.run_until(lambda: any(e["event"] == "use_end" and "WS" in e["modules"] for e in cell.seg.use_log),
                         3600)
    starts = [e for e in cell.seg.use_log if e["event"] == "use_start"]
    assert starts and all(e["coi"] == run.sup.patients[e["batch"]].coi for e in starts)
    ws_owner = next(e["batch"] for e in cell.seg.use_log if e["event"] == "use_end" and "WS" in e["modules"])
    assert cell.seg.modules["WS"].state in ("DIRTY", "IN_USE")  # after a use: DIRTY until the line clearance
    rec = run.sup.patients[ws_owner].record.entries()
    assert any(e.action == "equipment.use_end" and e.payload.get("coi") == run.sup.patients[ws_owner].coi
               for e in rec)
    out = cell.seg.clean("CFG", "op1", method="wipe")
    assert not out.accepted and out.code == "STATE"  # never used: nothing to clean
    out = cell.seg.clean("WS", "nobody", method="wipe")
    assert not out.accepted


def test_catalogue_rows_are_validated_precisely():
    base = yaml.safe_load((CONFIG / "interlocks.yaml").read_text())
    bad = dict(base, enforced=[*base["enforced"], dict(base["enforced"][0])])
    with pytest.raises(ValueError, match="repeated: \\['SEG-01'\\]"):
        InterlockCatalogue.model_validate(bad)
    row = dict(base["enforced"][0], scope="somewhere")
    with pytest.raises(ValueError, match="scope"):
        InterlockCatalogue.model_validate(dict(base, enforced=[row]))
    row = {k: v for k, v in base["enforced"][0].items() if k != "scenario"}
    with pytest.raises(ValueError, match="scenario"):
        InterlockCatalogue.model_validate(dict(base, enforced=[row]))
    with pytest.raises(ValueError, match="product_contact"):
        InterlockCatalogue.model_validate(dict(base, segregation_parameters={"product_contact": {"WS": "sometimes"}}))


def test_bad_patient_scenarios_are_refused_naming_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\npatients: [{batch_id: P-A, coi: C, din: D}]\nevents:\n"
                   "  - {when: {after: nope}, start_patient: P-Z}\n")
    with pytest.raises(ScenarioError) as exc:
        load_scenario(bad)
    assert "when.after 'nope' names no event" in str(exc.value)
    bad.write_text("id: x\nsite: {t_purge: 1}\n")
    with pytest.raises(ScenarioError, match="site: unknown keys \\['t_purge'\\]"):
        load_scenario(bad)
    bad.write_text("id: x\nexpect: {batches: {P-Q: {state: Held}}}\n")
    with pytest.raises(ScenarioError, match="not in patients"):
        load_scenario(bad)
    bad.write_text("id: x\nevents:\n  - {segregation: {action: explode}}\n")
    with pytest.raises(ScenarioError, match="events.0.segregation.action"):
        load_scenario(bad)


def test_site_config_changes_only_the_named_values(cfg):
    c = site_config(cfg, {"vhp_with_product_inside": False, "product_contact": {"SEP": "manual"}})
    assert c.scheduling.resources.vhp.with_product_inside is False
    assert c.interlocks.segregation_parameters.product_contact == {"SEP": "manual"}
    assert c.scheduling.changeover == cfg.scheduling.changeover
    assert dataclasses.replace(c, scheduling=cfg.scheduling, interlocks=cfg.interlocks) == cfg


def test_the_rows_name_code_that_exists_and_the_docs_table_matches_the_catalogue(cfg):
    import importlib

    for row in cfg.interlocks.enforced:
        for path in row.enforced_by:
            parts = path.split(".")
            for i in range(len(parts), 0, -1):
                try:
                    obj = importlib.import_module(".".join(parts[:i]))
                    break
                except ImportError:
                    continue
            for attr in parts[i:]:
                obj = getattr(obj, attr)  # AttributeError names the stale path
    table = (CONFIG.parent / "docs" / "segregation_catalogue.md").read_text()
    rows = [line.split("|")[1:7] for line in table.splitlines() if line.startswith(("| SEG-", "| COI-"))]
    assert [(r[0].strip(), r[5].strip(" `")) for r in rows] == [(r.id, r.scenario) for r in cfg.interlocks.enforced]


def test_seg08_a_failed_glove_test_impacts_the_batches_open_since_the_last_pass_and_not_the_others(cfg, tmp_path):
    run = _cell(cfg, tmp_path, patients=1)
    sup = run.sup
    a = sup.patients["P-A"]
    seg = sup.patient_cell.seg
    assert run.run_until(lambda: bool(seg.open_spans.get("P-A")) and not sup.patient_cell.open_now, 3600)
    assert sup.run_batch("PATIENT-CART-SHORT", "P-B", "op1", coi=COI_B, din=DIN_B).accepted
    run.advance(30)  # B admitted, nothing of it open yet
    assert not seg.open_spans.get("P-B")
    run.cell.inject_fault("ISO1", "glove_breach:GP2")
    ok, *_ = run.cell.execute("isolator", "start_glove_test", {"port": "GP2", "user": "op1"}, user="op1",
                              reason="glove test")
    assert ok
    assert run.run_until(lambda: sup.signal("isolator.glove.GP2.last_test") == "FAIL", 900)
    run.advance(30)
    assert a.impacted and not sup.patients["P-B"].impacted
    devs = [e.payload for e in a.record.entries(kinds=["deviation"]) if e.payload.get("rule") == "SEG-08"]
    assert len(devs) == 1 and devs[0]["port"] == "GP2" and devs[0]["code"] == "IMPACTED"
    run.advance(120)  # the same failed test is not counted again
    assert len([e for e in a.record.entries(kinds=["deviation"]) if e.payload.get("rule") == "SEG-08"]) == 1
