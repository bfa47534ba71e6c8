"""Change control wired into the supervisor's batch start (issue 15 item 7), in process
(InProcessRun): a GMP batch of the shipped, approved configuration starts and its record holds
the hash of the whole configuration; a GMP batch whose VHP cycle changed since its approval is
refused with the precise code, nothing moves, and the refusal is in the record."""

from __future__ import annotations

import shutil

from aseptic_cell.config import default_config_dir, load_config
from aseptic_cell.config.change_control import batch_start_check
from aseptic_cell.records import BatchRecord
from aseptic_cell.supervisor.runner import InProcessRun

RECIPE = "CART-TRANSDUCTION"


class _Clock:
    def now(self) -> float:
        return 0.0


def test_gmp_batch_start_records_the_configuration_hash(tmp_path):
    cfg = load_config(default_config_dir())
    rec = BatchRecord(tmp_path / "b.db", _Clock())
    run = InProcessRun(cfg, tick_s=5.0, record=rec)
    expected = batch_start_check(cfg, cfg.recipes[RECIPE])
    assert expected.ok
    out = run.sup.run_batch(RECIPE, "B-CC", "op1")
    assert out.accepted, out.reason
    hashes = [e.payload.get("config_hash") for e in rec.entries("B-CC") if isinstance(e.payload, dict)]
    assert expected.config_hash in hashes
    rec.close()


def test_gmp_batch_with_a_changed_cycle_is_refused(tmp_path):
    d = tmp_path / "config"
    shutil.copytree(default_config_dir(), d)
    text = (d / "vhp_cycles.yaml").read_text(encoding="utf-8")
    assert "      dwell_s: 1200.0" in text
    (d / "vhp_cycles.yaml").write_text(text.replace("      dwell_s: 1200.0", "      dwell_s: 600.0", 1),
                                       encoding="utf-8")
    cfg = load_config(d)
    rec = BatchRecord(tmp_path / "b.db", _Clock())
    run = InProcessRun(cfg, tick_s=5.0, record=rec)
    out = run.sup.run_batch(RECIPE, "B-CC", "op1")
    assert not out.accepted and out.code == "CONFIG_CHANGED"
    assert "VHP-ISO-STD" in out.reason and "changed since its approval" in out.reason
    assert run.sup.sm.state.value == "Idle" and not run.cell.sim.arm.moving
    refusals = [e for e in rec.entries() if e.kind == "refusal"]
    assert refusals and refusals[-1].payload["code"] == "CONFIG_CHANGED"
    rec.close()


PATIENT = "PATIENT-CART-SHORT"
COI, DIN = "COI-AAAAAA", "=G12341765432170"


def test_patient_batch_start_records_the_hash_and_a_changed_process_is_refused(tmp_path):
    """The patient path of RunBatch (issue 14) runs the same change control: its recipe and the
    process definition it names are items; a changed process refuses the batch before anything is
    allocated (no slot, no executive, no record of its own)."""
    cfg = load_config(default_config_dir())
    rec = BatchRecord(tmp_path / "cell.db", _Clock())
    run = InProcessRun(cfg, tick_s=5.0, record=rec)
    expected = batch_start_check(cfg, cfg.recipes[PATIENT])
    assert expected.ok and ("process", "cart-autologous-short") in {(i["kind"], i["id"]) for i in
                                                                  expected.to_payload()["items"]}
    out = run.sup.run_batch(PATIENT, "P-CC", "op1", coi=COI, din=DIN)
    assert out.accepted, out.reason
    ex = run.sup.executive("P-CC")
    assert expected.config_hash in [e.payload.get("config_hash") for e in ex.record.entries("P-CC")
                                    if isinstance(e.payload, dict)]
    rec.close()

    d = tmp_path / "config"
    shutil.copytree(default_config_dir(), d)
    p = d / "processes" / "cart-autologous-short.yaml"
    text = p.read_text(encoding="utf-8")
    assert "t_out_max: 3min" in text
    p.write_text(text.replace("t_out_max: 3min", "t_out_max: 9min", 1), encoding="utf-8")
    cfg2 = load_config(d)
    rec2 = BatchRecord(tmp_path / "cell2.db", _Clock())
    run2 = InProcessRun(cfg2, tick_s=5.0, record=rec2)
    out2 = run2.sup.run_batch(PATIENT, "P-CC2", "op1", coi=COI, din=DIN)
    assert not out2.accepted and out2.code == "CONFIG_CHANGED", out2
    assert "cart-autologous-short" in out2.reason
    assert "P-CC2" not in run2.sup.patients
    refusals = [e for e in rec2.entries() if e.kind == "refusal"]
    assert refusals and refusals[-1].payload["code"] == "CONFIG_CHANGED"
    rec2.close()
