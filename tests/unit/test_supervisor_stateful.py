"""Hypothesis stateful test: random operator commands (through the supervisor: role check +
interlock engine), batch commands and device faults against the in-process cell; the safety
invariants (aseptic_cell.supervisor.invariants) are checked after every rule and every tick.

10,000 sequences (derandomized: reproducible), short sequences on sim time."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from aseptic_cell.config import default_config_dir, load_config
from aseptic_cell.supervisor.fuzz import BATCH_COMMANDS, FAULTS, OPERATOR_COMMANDS, FastSignUsers, FuzzCell
from aseptic_cell.supervisor.runner import InProcessRun

pytestmark = pytest.mark.timeout(900)  # CPU ~8 ms per sequence; wall time on a shared machine varies

CFG = load_config(default_config_dir())
USERS = FastSignUsers(CFG.users, type("Clock", (), {"now": lambda self: 0.0})())
SEQUENCES = int(os.environ.get("SUPERVISOR_STATEFUL_SEQUENCES", "10000"))
COUNT = {"sequences": 0}


class SupervisedCell(RuleBasedStateMachine):
    @initialize()
    def fresh_cell(self):
        COUNT["sequences"] += 1
        self.f = FuzzCell(CFG, USERS, tick_s=2.0)

    @rule(i=st.integers(0, len(OPERATOR_COMMANDS) - 1))
    def operator_command(self, i):
        self.f.operate(i)

    @rule(i=st.integers(0, len(BATCH_COMMANDS) - 1))
    def batch_command(self, i):
        self.f.batch(i)

    @rule(i=st.integers(0, len(FAULTS) - 1), clear=st.booleans())
    def device_fault(self, i, clear):
        self.f.fault(i, clear)

    @rule(seconds=st.sampled_from([2.0, 6.0]))
    def time_passes(self, seconds):
        self.f.advance(seconds)

    @invariant()
    def safe(self):
        if hasattr(self, "f"):
            assert not self.f.violations, self.f.violations


TestSupervisedCell = SupervisedCell.TestCase
TestSupervisedCell.settings = settings(max_examples=SEQUENCES, stateful_step_count=5, derandomize=True,
                                       deadline=None, database=None, print_blob=True,
                                       suppress_health_check=list(HealthCheck))


def _assert_every_sequence_ran(cls) -> None:
    """After the stateful test class: the suite really drove >= 10,000 sequences (a failure
    here is reported as an error of the class; it cannot be skipped or run elsewhere)."""
    assert COUNT["sequences"] >= SEQUENCES, f"only {COUNT['sequences']} of {SEQUENCES} sequences ran"


TestSupervisedCell.tearDownClass = classmethod(_assert_every_sequence_ran)


def test_invariant_monitor_catches_violations():
    """The checker must be able to fail: feed it readings that break each invariant."""
    from aseptic_cell.batch.states import PhaseStateMachine
    from aseptic_cell.supervisor.invariants import InvariantMonitor

    run = InProcessRun(CFG, tick_s=1.0, users=USERS)
    real = {n: dict(run.cell.sensors(n)) for n in ("isolator", "vhp", "autoclave", "arm")}

    class FakeCell:
        cfg = CFG
        readings = {n: dict(v) for n, v in real.items()}

        def sensors(self, node):
            return self.readings[node]

        def now(self):
            return 0.0

    class FakeSup:
        sm = PhaseStateMachine(lambda: 0.0)

    cell = FakeCell()
    mon = InvariantMonitor(cell, FakeSup())
    assert mon.check() == []
    cell.readings["isolator"].update({"hatch.door_A": "open", "hatch.door_B": "opening"})
    cell.readings["isolator"]["rtp.RTP1.alpha_closed"] = False
    cell.readings["arm"]["moving"] = True
    cell.readings["vhp"]["cycle_active"] = True
    cell.readings["autoclave"]["unload_door_closed"] = False
    found = " | ".join(mon.check())
    for text in ("both hatch doors open", "alpha door open without a docked, locked beta",
                 "alpha opened (product exposed)", "robot moving while VHP active",
                 "clean-side autoclave door opened without a PASS cycle"):
        assert text in found, found
    sm = FakeSup.sm
    sm.start("op1"), sm.hold("op1"), sm.done("system"), sm.restart("system")
    assert any("auto-resume" in v for v in mon.violations)
