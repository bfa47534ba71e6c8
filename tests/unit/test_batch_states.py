"""ISA-88 phase state machine [ISA88] [DELTAV]: the full (state, command) table written out
independently here, typed errors that change nothing, listeners, the PackML view, and a
hypothesis stateful test over random command sequences."""

from __future__ import annotations

import logging

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from aseptic_cell.batch.states import (
    IllegalCommand,
    PackMLState,
    PhaseCommand,
    PhaseState,
    PhaseStateMachine,
    Transition,
    to_packml,
)

# Written from the ISA-88 phase state table [ISA88], by state (not derived from the module's TRANSITIONS).
EXPECTED: dict[str, dict[str, str]] = {
    "Idle": {"start": "Running", "abort": "Aborting"},
    "Running": {"hold": "Holding", "pause": "Pausing", "stop": "Stopping", "abort": "Aborting",
                "done": "Complete"},
    "Holding": {"abort": "Aborting", "done": "Held"},
    "Held": {"restart": "Restarting", "stop": "Stopping", "abort": "Aborting"},
    "Restarting": {"abort": "Aborting", "done": "Running"},
    "Pausing": {"abort": "Aborting", "done": "Paused"},
    "Paused": {"resume": "Running", "stop": "Stopping", "abort": "Aborting"},
    "Stopping": {"abort": "Aborting", "done": "Stopped"},
    "Aborting": {"done": "Aborted"},
    "Complete": {"reset": "Idle"},
    "Stopped": {"reset": "Idle"},
    "Aborted": {"reset": "Idle"},
}
STATES = list(EXPECTED)
COMMANDS = ["start", "hold", "restart", "pause", "resume", "stop", "abort", "reset", "done"]
STABLE = {"Idle", "Complete", "Held", "Paused", "Stopped", "Aborted"}
FINAL = {"Complete", "Stopped", "Aborted"}


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t


def test_enums_cover_the_spec():
    assert {s.value for s in PhaseState} == set(STATES)
    assert {c.value for c in PhaseCommand} == set(COMMANDS)
    assert {s.value for s in PhaseState if s.stable} == STABLE
    assert {s.value for s in PhaseState if s.transient} == set(STATES) - STABLE
    assert {s.value for s in PhaseState if s.final} == FINAL


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("command", COMMANDS)
def test_every_state_command_pair(state, command):
    clock = Clock()
    clock.t = 5.0
    m = PhaseStateMachine(clock, initial=PhaseState(state))
    seen: list[Transition] = []
    m.add_listener(seen.append)
    target = EXPECTED[state].get(command)
    assert m.can(command) is (target is not None)
    if target is None:
        with pytest.raises(IllegalCommand) as exc:
            m.fire(command, actor="op1", reason="test")
        assert m.state.value == state and seen == [] and m.last_transition is None
        err = exc.value
        assert err.state.value == state and str(err.command) == command
        assert sorted(c.value for c in err.allowed) == sorted(EXPECTED[state])
        assert f"'{command}'" in str(err) and state in str(err)
        for c in EXPECTED[state]:
            assert c in str(err)
    else:
        tr = m.fire(command, actor="op1", reason="test")
        assert m.state.value == target
        assert seen == [tr] == [m.last_transition]
        assert (tr.old.value, tr.new.value, tr.command.value, tr.actor, tr.reason, tr.t) == (
            state, target, command, "op1", "test", 5.0)


@pytest.mark.parametrize("state", STATES)
def test_allowed_commands_match_table(state):
    m = PhaseStateMachine(Clock(), initial=PhaseState(state))
    assert sorted(c.value for c in m.allowed_commands()) == sorted(EXPECTED[state])


def test_unknown_command_is_illegal_and_changes_nothing():
    m = PhaseStateMachine(Clock())
    with pytest.raises(IllegalCommand, match="'jump'.*Idle.*allowed: start, abort"):
        m.fire("jump")
    assert m.state is PhaseState.IDLE and not m.can("jump")


def test_happy_path_with_hold_pause_and_reset():
    clock = Clock()
    m = PhaseStateMachine(clock)
    path = []
    m.add_listener(lambda tr: path.append((tr.command.value, tr.new.value, tr.t)))
    for cmd in ["start", "hold", "done", "restart", "done", "pause", "done", "resume", "done", "reset"]:
        clock.t += 1
        getattr(m, cmd)()
    assert [p[1] for p in path] == ["Running", "Holding", "Held", "Restarting", "Running", "Pausing",
                                    "Paused", "Running", "Complete", "Idle"]
    assert [p[2] for p in path] == [float(i) for i in range(1, 11)]
    assert path[2][0] == "done"


def test_listener_errors_are_logged_and_never_propagate(caplog):
    m = PhaseStateMachine(Clock(), name="P1")
    got = []

    def bad(tr):
        raise RuntimeError("hmi down")

    m.add_listener(bad)
    m.add_listener(got.append)
    with caplog.at_level(logging.ERROR, logger="aseptic_cell.batch.states"):
        tr = m.start(actor="op1")
    assert m.state is PhaseState.RUNNING and got == [tr]
    assert any("P1" in r.getMessage() and r.exc_info for r in caplog.records)


def test_listener_can_be_removed():
    m = PhaseStateMachine(Clock())
    got = []
    remove = m.add_listener(got.append)
    m.start()
    remove()
    m.done()
    assert len(got) == 1


@pytest.mark.parametrize("state, packml", [
    ("Idle", "Idle"), ("Running", "Execute"), ("Complete", "Complete"), ("Holding", "Holding"),
    ("Held", "Held"), ("Restarting", "Unholding"), ("Pausing", "Suspending"), ("Paused", "Suspended"),
    ("Stopping", "Stopping"), ("Stopped", "Stopped"), ("Aborting", "Aborting"), ("Aborted", "Aborted"),
])
def test_packml_mapping(state, packml):
    assert to_packml(PhaseState(state)) is PackMLState(packml)
    assert PhaseStateMachine(Clock(), initial=PhaseState(state)).packml_state.value == packml


def test_packml_has_seventeen_states():
    assert len(PackMLState) == 17


# ----------------------------------------------------------------------------- stateful
class PhaseMachineModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.m = PhaseStateMachine(self.clock)
        self.model = "Idle"
        self.log: list[Transition] = []
        self.m.add_listener(self.log.append)
        self.held_since_restart = False  # in Held (or came from it) without a restart since

    @rule(command=st.sampled_from(COMMANDS), dt=st.floats(0, 10), crash=st.booleans())
    def send(self, command: str, dt: float, crash: bool) -> None:
        self.clock.t += dt
        remove = self.m.add_listener(lambda tr: 1 / 0) if crash else None
        before = self.m.state.value
        target = EXPECTED[self.model].get(command)
        if target is None:
            with pytest.raises(IllegalCommand):
                self.m.fire(command, actor="hyp")
            assert self.m.state.value == before == self.model
        else:
            self.m.fire(command, actor="hyp")
            self.model = target
            # final states are left only by reset, and reset only leaves final states
            assert (before in FINAL) == (command == "reset")
            if before == "Held":
                assert command in ("restart", "stop", "abort")
            if target == "Running":
                assert (before, command) in {("Idle", "start"), ("Restarting", "done"), ("Paused", "resume")}
                assert not self.held_since_restart
            if target == "Held":
                self.held_since_restart = True
            if command in ("restart", "stop", "abort"):
                self.held_since_restart = False
        if remove:
            remove()

    @invariant()
    def agrees_with_model(self) -> None:
        assert self.m.state.value == self.model
        assert self.m.packml_state is to_packml(self.m.state)

    @invariant()
    def listener_log_is_a_chain(self) -> None:
        prev = "Idle"
        last_t = 0.0
        for tr in self.log:
            assert tr.old.value == prev and EXPECTED[prev][tr.command.value] == tr.new.value
            assert tr.t >= last_t
            prev, last_t = tr.new.value, tr.t
        assert prev == self.model


TestPhaseMachineStateful = PhaseMachineModel.TestCase
TestPhaseMachineStateful.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
