"""Bypass management (issue 13 item 14, IEC 61511-1 [IEC61511-1] [M]) tried as a user would try to
abuse it: a critical rule, one person alone, no signature, too long, a replay; then the real
path: requested with a reason, approved by a second person's e-signature, alarmed while
active, every action under it recorded, removed automatically at expiry."""

from __future__ import annotations

from pathlib import Path

import pytest

from aseptic_cell.config.loader import ConfigError, load_config
from aseptic_cell.records import BatchRecord
from aseptic_cell.supervisor.runner import InProcessRun

REPO = Path(__file__).resolve().parents[2]
CFG = load_config(REPO / "config")
SUP = {"password": "sup1-demo-2026", "meaning": "responsibility"}
QA = {"password": "qa1-demo-2026", "meaning": "approval"}
REASON = "fixed counter PC-1 under repair; portable counter PC-9 sampling at the same point"


@pytest.fixture()
def run(tmp_path):
    rec = BatchRecord(tmp_path / "b.db", _Clock())
    r = InProcessRun(CFG, record=rec)
    rec._clock = r.cell.sim.clock
    r.cell.inject_fault("ISO1", "particle_monitor_failure")
    r.advance(5)
    yield r
    rec.close()


class _Clock:
    def now(self) -> float:
        return 0.0


def _released(run):
    """The rest of the world allows opening product (IL-04 released): only IL-12 stands."""
    sup = run.sup
    sup.refresh_signals()
    sup.signals.update("isolator.decon_status", "DECONTAMINATED_RELEASED", sup.now(), "ISO1")
    return sup.engine.check("product.open_container")


def test_a_bypass_needs_a_bypassable_rule_two_people_and_their_signatures(run):
    sup = run.sup
    byp = sup.operator.bypasses
    d = _released(run)
    assert not d.allowed and d.denied_by == ["IL-12"]
    assert byp.request("IL-12", REASON, 3600, "op1", **SUP).code == "PERMISSION"
    for critical in ("IL-01", "IL-04", "IL-07", "IL-10", "IL-11D", "RB-02"):
        out = byp.request(critical, REASON, 3600, "sup1", **SUP)
        assert out.code == "NOT_BYPASSABLE" and "never" in out.reason, critical
    assert byp.request("IL-12", "because", 3600, "sup1", **SUP).code == "INVALID"  # a reason says why
    assert byp.request("IL-12", REASON, 10 * 24 * 3600.0, "sup1", **SUP).code == "INVALID"  # too long
    assert byp.request("IL-12", REASON, 3600, "sup1", password="").code == "SIGNATURE"
    out = byp.request("IL-12", REASON, 3600, "sup1", **SUP)
    assert out.accepted, out.reason
    bid = out.payload["bypass"]
    assert byp.request("IL-12", REASON, 3600, "eng1", password="eng1-demo-2026",
                       meaning="responsibility").code == "STATE"  # one open bypass per rule
    assert not _released(run).allowed  # requested is not active
    assert byp.approve(bid, "sup1", **SUP).code == "PERMISSION"  # not QA (and the requester)
    assert byp.approve(bid, "qa1", password="wrong-pass-123", meaning="approval").code == "SIGNATURE"
    assert not _released(run).allowed


def test_approved_bypass_is_alarmed_recorded_per_use_and_ends_at_expiry(run):
    sup = run.sup
    rec = sup.record
    byp = sup.operator.bypasses
    bid = byp.request("IL-12", REASON, 600, "sup1", **SUP).payload["bypass"]
    out = byp.approve(bid, "qa1", reason="compensating measure checked on the floor", **QA)
    assert out.accepted, out.reason
    assert byp.approve(bid, "qa1", **QA).code == "STATE"  # a replay approves nothing
    run.advance(5)
    assert sup.alarms.state("CELL_BYPASS_ACTIVE") == "UNACK"  # standing alarm while active
    d = _released(run)
    assert d.allowed and [r.rule_id for r in d.bypassed] == ["IL-12"]
    # a critical rule in the same check is never bypassed
    sup.signals.update("isolator.decon_status", "BREACHED", sup.now(), "ISO1")
    d = sup.engine.check("product.open_container")
    assert not d.allowed and d.denied_by == ["IL-04"]
    entries = rec.entries(kinds=["command", "signature"])
    used = [e for e in entries if e.action == "product.open_container under bypass"]
    assert len(used) == 1 and used[0].payload["bypass"] == bid and used[0].payload["rule"] == "IL-12"
    sigs = [e for e in entries if e.kind == "signature"]
    assert {"sup1", "qa1"} <= {e.actor for e in sigs}
    assert {"bypass.request", "bypass.approve"} <= {e.action for e in entries}
    # expiry: removed automatically, alarm back to normal, the rule protects again
    run.advance(620)
    assert byp.items[bid].state == "EXPIRED"
    assert not _released(run).allowed
    run.advance(5)
    assert sup.alarms.state("CELL_BYPASS_ACTIVE") == "RTN_UNACK"  # returned to normal, not yet acknowledged
    assert any(e.action == "bypass.expired" for e in rec.entries(kinds=["command"]))
    assert byp.remove(bid, "sup1", "done").code == "STATE"


def test_removal_by_hand_and_the_catalogue_refuses_a_bypassable_critical_rule(run, tmp_path):
    import shutil

    byp = run.sup.operator.bypasses
    bid = byp.request("IL-12", REASON, 600, "sup1", **SUP).payload["bypass"]
    assert byp.approve(bid, "qa1", **QA).accepted
    run.advance(5)
    assert run.sup.alarms.state("CELL_BYPASS_ACTIVE") == "UNACK"
    assert byp.remove(bid, "op1", "repaired").code == "PERMISSION"
    assert byp.remove(bid, "sup1", "counter repaired").accepted
    assert not _released(run).allowed
    run.advance(5)
    assert run.sup.alarms.state("CELL_BYPASS_ACTIVE") == "RTN_UNACK"
    d = tmp_path / "config"
    shutil.copytree(REPO / "config", d)
    text = (d / "interlocks.yaml").read_text()
    text = text.replace("    severity: critical\n", "    severity: critical\n    bypassable: true\n", 1)
    (d / "interlocks.yaml").write_text(text)
    with pytest.raises(ConfigError, match="critical rule can never be bypassable"):
        load_config(d)


def test_bypass_and_deviation_commands_over_the_batch_command_service(run):
    """The HMI's path: /cell/batch/command carries ``bypass.request <rule> <duration_s>``, ...;
    the supervisor parses it strictly and applies the same checks."""
    sup = run.sup
    for bad in ("bypass.request IL-12", "bypass.request IL-12 forever", "bypass.approve", "bypass.launch IL-12"):
        out = sup.batch_command(bad, "sup1", reason=REASON, **SUP)
        assert not out.accepted and out.code in ("INVALID", "STATE"), (bad, out)
    out = sup.batch_command("bypass.request IL-12 600", "sup1", reason=REASON, **SUP)
    assert out.accepted, out.reason
    bid = out.payload["bypass"]
    assert sup.batch_command(f"bypass.approve {bid}", "qa1", reason="checked", **QA).accepted
    assert _released(run).allowed
    assert sup.batch_command(f"bypass.remove {bid}", "sup1", reason="repaired").accepted
    assert not _released(run).allowed
