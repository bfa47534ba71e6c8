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
