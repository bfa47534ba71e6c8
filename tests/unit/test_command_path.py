"""The one command path (aseptic_cell.devices.pipeline) and the supervisor's roles, in process:
the order of the gates, a failing check refused safely, the arm's keep-outs from the interlock
signals, bounded observation lists, and the restart timeout on an injected wall clock."""

from __future__ import annotations

import math
from typing import Any

import pytest

from aseptic_cell.config import default_config_dir, load_config
from aseptic_cell.devices import pipeline
from aseptic_cell.devices.arm.motion import keepout_conditions
from aseptic_cell.devices.codes import RefusalCode
from aseptic_cell.results import CommandResult
from aseptic_cell.supervisor.journal import Bounded
from aseptic_cell.supervisor.port import Handle, InProcessCell
from aseptic_cell.supervisor.runner import InProcessRun
from aseptic_cell.supervisor.trips import RESTART_TIMEOUT_S


@pytest.fixture(scope="module")
def cfg():
    return load_config(default_config_dir())


class FakeHost:
    """A device host whose state the test sets; records what reaches the backend."""

    def __init__(self, cfg: Any, kind: str = "isolator", values: dict[str, Any] | None = None) -> None:
        self.kind, self.device_id, self.cfg = kind, "DEV1", cfg
        self.life = "active"
        self.latched: str | None = None
        self.values = values
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.reports: list[tuple[str, CommandResult]] = []

    def lifecycle(self) -> str:
        return self.life

    def latched_reason(self) -> str | None:
        return self.latched

    def latch(self, why: str) -> None:
        self.latched = self.latched or why

    def fresh_values(self) -> dict[str, Any] | None:
        return self.values

    def cell_signals(self) -> dict[str, Any] | None:
        return None

    def send(self, name: str, typed: dict[str, Any], *, user: str, reason: str, timeout_s: float) -> CommandResult:
        self.sent.append((name, typed))
        return CommandResult(True)

    def report(self, name: str, args: Any, user: str, reason: str, result: CommandResult) -> None:
        self.reports.append((name, result))


SAFE_HATCH = {"hatch.door_A.closed": True, "hatch.door_B.closed": True, "hatch.seal_A.inflated": True,
              "hatch.seal_B.inflated": True, "hatch.dwell_remaining_s": 0.0, "dp_in_band": True}


@pytest.mark.parametrize("setup, command, code", [
    (lambda h: setattr(h, "life", "unconfigured"), "close_door", RefusalCode.NOT_CONFIGURED),
    (lambda h: setattr(h, "life", "inactive"), "open_door", RefusalCode.NOT_ACTIVE),
    (lambda h: setattr(h, "latched", "tripped"), "open_door", RefusalCode.LATCHED),
    (lambda h: setattr(h, "values", None), "open_door", RefusalCode.COMM_STALE),
    (lambda h: h.values.update({"hatch.door_B.closed": False}), "open_door", RefusalCode.HATCH_OTHER_DOOR_OPEN),
])
def test_each_gate_refuses_and_nothing_reaches_the_backend(cfg, setup, command, code):
    host = FakeHost(cfg, values=dict(SAFE_HATCH))
    setup(host)
    out = pipeline.execute(host, command, {"door": "A"}, user="op1")
    assert not out.accepted and out.code == code and out.reason
    assert host.sent == []
    assert host.reports == [(command, out)]  # every refusal is reported for the record


def test_validation_comes_first_and_names_the_problem(cfg):
    host = FakeHost(cfg, values=dict(SAFE_HATCH))
    host.life = "unconfigured"
    out = pipeline.execute(host, "open_door", {"door": "C"})
    assert out.code == RefusalCode.INVALID and "door" in out.reason and host.sent == []


def test_non_moving_commands_pass_an_inactive_or_stale_device_and_safe_state_latches_first(cfg):
    host = FakeHost(cfg, values=None)
    host.life = "inactive"
    out = pipeline.execute(host, "safe_state", {"reason": "trip"}, reason="trip")
    assert out.accepted and host.sent == [("safe_state", {"reason": "trip"})]
    assert host.latched == "trip"
    # latched: moving commands are refused until an explicit recovery
    host.life, host.values = "active", dict(SAFE_HATCH)
    assert pipeline.execute(host, "open_door", {"door": "A"}).code == RefusalCode.LATCHED


def test_an_exception_in_a_check_is_refused_as_internal_error_not_as_a_device_refusal(cfg, monkeypatch, caplog):
    def broken(*_a: Any) -> None:
        raise KeyError("dp_in_band")

    monkeypatch.setattr(pipeline, "precheck", broken)
    cell = InProcessCell(cfg)
    accepted, code, reason, _ = cell.execute("isolator", "open_door", {"door": "A"}, user="op1")
    assert not accepted and code == RefusalCode.INTERNAL_ERROR and "nothing was sent" in reason
    assert cell.sensors("isolator")["hatch.door_A.closed"] is True  # nothing moved
    assert any(r.levelname == "ERROR" and "command path" in r.getMessage() for r in caplog.records)
    assert cell.drain_events()[-1]["code"] == RefusalCode.INTERNAL_ERROR


def test_keepouts_from_signals_doors_count_closed_unless_confirmed_open_and_locked():
    known = {"glove_in_use:GP1", "glove_in_use:GP2", "door_closed:rtp1_alpha", "door_closed:hatch_b",
             "door_closed:autoclave_unload"}
    assert keepout_conditions(None, known) is None  # isolator unknown: no motion at all
    sig = {"isolator.glove.GP1.in_use": True, "isolator.glove.GP2.in_use": None,
           "door.rtp1_alpha.open": True, "door.rtp1_alpha.locked": True,
           "door.hatch_b.open": True, "door.hatch_b.locked": False}  # moving: not confirmed
    assert keepout_conditions(sig, known) == {"glove_in_use:GP1", "door_closed:hatch_b",
                                              "door_closed:autoclave_unload"}


def test_in_process_arm_refusal_keeps_the_failing_index_and_plans_at_plan_dt(cfg):
    import numpy as np

    cell = InProcessCell(cfg, plan_dt_s=0.05)
    assert cell.execute("arm", "enable_drives", {})[0]
    q0 = cell.motion.current_q(cell.sensors("arm"))
    q1 = q0.copy()
    q1[1] += 1.2
    accepted, code, _reason, payload = cell.execute(
        "arm", "execute_trajectory", {"q": np.linspace(q0, q1, 101).tolist(), "dt": 0.05})
    assert not accepted and code == RefusalCode.MOTION_COLLISION
    assert 0 < payload["first_failing_index"] <= 100
    accepted, code, _reason, payload = cell.execute("arm", "move_to_pose", {"pose": "decon"})
    assert accepted, code
    # planned at plan_dt_s (the arm node's parameter), not at a fixed 0.02 s
    assert payload["samples"] - 1 == math.ceil(payload["duration_s"] / 0.05 - 1e-9)


def test_observation_lists_are_bounded():
    b: Bounded[int] = Bounded(3)
    for i in range(10):
        b.append(i)
    assert b == [7, 8, 9]


def test_restart_waits_on_the_injected_wall_clock_then_holds_again(cfg):
    wall = [1000.0]
    run = InProcessRun(cfg, tick_s=5.0, wall=lambda: wall[0])
    sup = run.sup
    assert sup.run_batch("CART-TRANSDUCTION", "B1", "op1").accepted
    run.advance(20)
    run.cell.inject_fault("ISO1", "glove_breach:GP1")
    assert run.run_until(lambda: sup.sm.state.value == "Held", 2000)
    run.cell.clear_fault("ISO1", "glove_breach:GP1")
    silent: list[Handle] = []

    def never_answers(node: str, *, user: str, reason: str) -> Handle:
        h = Handle(node, "recover", {}, run.cell.now())
        silent.append(h)
        return h

    run.cell.recover = never_answers  # type: ignore[method-assign]
    out = sup.batch_command("restart", "sup1", password="sup1-demo-2026", meaning="responsibility",
                            reason="glove replaced")
    assert out.accepted, out
    run.advance(60)  # sim time passes, wall time does not: still waiting
    assert sup.sm.state.value == "Restarting" and silent
    wall[0] += RESTART_TIMEOUT_S + 1.0
    run.advance(5)
    assert sup.sm.state.value == "Held"
    assert "restart failed" in sup.held_reason and "no answer" in sup.held_reason


def test_typed_readings_a_missing_or_malformed_permissive_refuses(cfg):
    """Readings are parsed into each device's typed readings; unknown (missing, wrong type) is
    unsafe in the hard interlocks, never a default that lets a door open or the arm move."""
    from aseptic_cell.devices.autoclave.contract import AutoclaveReadings
    from aseptic_cell.devices.hard_interlocks import precheck

    cell = InProcessCell(cfg)
    ac = dict(cell.sensors("autoclave"))
    r = AutoclaveReadings.parse(ac, cfg)
    assert r.cycle_running is False and isinstance(r.chamber_t_c, float) and r.doors["load"].closed is True
    assert precheck("autoclave", "open_door", {"side": "load"}, ac, cfg) is None  # a cold, idle chamber
    for key, bad in (("cycle_running", None), ("cycle_running", "no"), ("chamber_t_c", "cold"),
                     ("unload_door_closed", 1)):
        values = {k: v for k, v in ac.items() if k != key}
        if bad is not None:
            values[key] = bad
        refusal = precheck("autoclave", "open_door", {"side": "load"}, values, cfg)
        assert refusal is not None, (key, bad)
    arm = dict(cell.sensors("arm"), drives_enabled="yes", protective_stop=False)
    assert precheck("arm", "move_to_pose", {"pose": "park"}, arm, cfg)[0] == RefusalCode.DRIVES_OFF
    iso = dict(cell.sensors("isolator"))
    del iso["hatch.door_B.closed"]
    assert precheck("isolator", "open_door", {"door": "A"}, iso, cfg)[0] == RefusalCode.HATCH_OTHER_DOOR_OPEN
