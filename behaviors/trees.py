"""The supervisor's behaviour trees: one factory per tree, and the batch procedure per recipe.

Every factory only *configures* behaviours (no device access), so each tree builds and
renders offline (``py_trees.display.unicode_tree``); the batch executive builds a fresh tree
for every batch run (HABITS 4). Tree ids are the keys of :data:`TREE_FACTORIES`.

Trees:

* ``glove_integrity_test``   start the pressure-decay test of each port, wait for the results
  (a FAIL fails the phase: IL-05).
* ``isolator_leak_test``     enclosure pressure-hold test (VHP pre-check [QB-ROOM]).
* ``vhp_decontamination``    robot to its decon pose, drives off, gloves extended → IL-07
  pre-checks → the cycle, with the pre-check conditions re-checked on every tick while it
  runs → release at the measured aeration endpoint (decon status DECONTAMINATED_RELEASED,
  H2O2 below the release limit).
* ``autoclave_transfer_in``  load door open/close → program → clean-side door only after a
  PASS (IL-10, IL-11, IL-11B/C/D) → transfer → clean-side door closed with the robot clear (RB-05).
* ``autoclave_test``         a test program (Bowie-Dick, leak test).
* ``rtp_transfer_in``        dock the beta with the sterility its own data prove (unknown:
  refused) and lock it → alpha opens only with it docked and
  locked and the isolator released (IL-02, IL-04, IL-12); closed and undocked again after the
  next robot task (IL-03, RB-05).
* ``robot_task``             drives on → each waypoint through a planned, collision-checked
  trajectory, with the process-motion interlocks (IL-08, RB-01..RB-03) re-checked on every
  tick, IL-09 per glove port and RB-04 for doors entered → drives off.
* ``process_hold``           timed hold with IL-04 re-checked every tick.
* ``operator_confirm``       waits for the operator's ``confirm``.
* ``batch_procedure``        the ISA-88 procedure of a recipe: unit procedures → operations →
  phases (:class:`~aseptic_cell.behaviors.base.PhaseNode`), with the IL-05 ``batch.start``
  gate after the start-of-batch glove tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import py_trees
from py_trees.composites import Sequence

from ..config import CellConfig
from .base import (
    DeviceCommand,
    HoldFor,
    InterlockGuard,
    MoveArm,
    OperatorConfirm,
    PhaseNode,
    RunCycle,
    SignalGuard,
    WaitFor,
    guarded,
)

DOOR_TIMEOUT_S = 120.0
PERMISSIVE_TIMEOUT_S = 900.0
"""How long a phase waits for a transient permissive (hatch dwell, a particle burst settling)
before it fails and the batch holds."""
LEAK_TEST_TIMEOUT_S = 3600.0
GLOVE_TEST_TIMEOUT_S = 3600.0
VHP_TIMEOUT_S = 6 * 3600.0
AUTOCLAVE_TIMEOUT_S = 4 * 3600.0
RELEASE_TIMEOUT_S = 900.0


def _seq(name: str, children: Iterable[py_trees.behaviour.Behaviour]) -> Sequence:
    s = Sequence(name, memory=True)
    s.add_children(list(children))
    return s


def _ports(ctx: Any, ports: Any) -> list[str]:
    allp = [g.id for g in ctx.cfg.layout.isolator.glove_ports]
    if ports in (None, "all"):
        return allp
    return [str(p) for p in (ports if isinstance(ports, list) else [ports])]


# ----------------------------------------------------------------------------- gloves
def glove_integrity_test(ctx: Any, ports: Any = "all", batch_id: str = "", operator: str = "supervisor"
                         ) -> py_trees.behaviour.Behaviour:
    plist = _ports(ctx, ports)
    starts = [DeviceCommand(f"start test {p}", ctx, "isolator", "start_glove_test",
                            {"port": p, "user": operator, **({"batch_id": batch_id} if batch_id else {})},
                            reason="glove integrity test (Annex 1 §4.24)") for p in plist]
    t0: dict[str, float] = {}

    def tested(c: Any, p: str) -> bool:
        age = c.signal(f"isolator.glove.{p}.test_age_h")
        return isinstance(age, (int, float)) and age * 3600.0 <= c.now() - t0.get("t", c.now()) + 1.0

    def done(c: Any) -> bool:
        return all(tested(c, p) for p in plist)

    def failed(c: Any) -> str | None:
        bad = [p for p in plist if tested(c, p) and c.signal(f"isolator.glove.{p}.last_test") != "PASS"]
        return f"glove integrity test FAIL on {', '.join(bad)} (IL-05: port blocked)" if bad else None

    class _Mark(py_trees.behaviour.Behaviour):
        def update(self) -> py_trees.common.Status:
            t0["t"] = ctx.now()
            return py_trees.common.Status.SUCCESS

    retract = [DeviceCommand(f"retract glove {p}", ctx, "isolator", "retract_glove", {"port": p}) for p in plist]
    return _seq("glove integrity test", [*retract, _Mark("note start time"), *starts,
                                         WaitFor("all ports tested", ctx, done, GLOVE_TEST_TIMEOUT_S, fail_if=failed)])


def isolator_leak_test(ctx: Any) -> py_trees.behaviour.Behaviour:
    return _seq("enclosure leak test", [
        DeviceCommand("start leak test", ctx, "isolator", "start_leak_test", reason="VHP pre-check [QB-ROOM]"),
        WaitFor("leak test passed", ctx, lambda c: c.signal("isolator.leak_test_passed") is True,
                LEAK_TEST_TIMEOUT_S),
    ])


# ----------------------------------------------------------------------------- VHP
def vhp_decontamination(ctx: Any, cycle: str, operator: str = "supervisor") -> py_trees.behaviour.Behaviour:
    cfg = ctx.cfg
    ports = [g.id for g in cfg.layout.isolator.glove_ports]
    rtps = [r.id for r in cfg.layout.isolator.rtps]
    release = float(cfg.interlocks.parameters.get("h2o2_release_ppm", 1.0))
    prepare = _seq("robot to decon pose, gloves extended", [
        DeviceCommand("drives on", ctx, "arm", "enable_drives", checks=[("arm.enable", {})]),
        MoveArm("to decon pose", ctx, "decon", "transit", checks=[("arm.move", {})]),
        DeviceCommand("drives off (STO)", ctx, "arm", "disable_drives"),
        *[DeviceCommand(f"extend glove {p}", ctx, "isolator", "extend_glove", {"port": p}) for p in ports],
    ])
    prechecks = permissive(ctx, "VHP pre-checks (IL-07)", [("vhp.start_cycle", {})], 600.0)
    watch = SignalGuard("IL-07 held during the cycle", ctx, [
        ("arm.at_decon", True), ("arm.drives_enabled", False), ("isolator.gloves_extended", True),
        ("isolator.any_glove_in_use", False), ("isolator.hatch.door_A.closed", True),
        ("isolator.hatch.door_B.closed", True), ("autoclave.door_unload.closed", True),
        *[(f"isolator.rtp.{r}.alpha_closed", True) for r in rtps],
    ])
    cycle_b = RunCycle(f"VHP cycle {cycle}", ctx, "vhp", {"cycle_id": cycle, "operator": operator}, "vhp",
                       timeout_s=VHP_TIMEOUT_S, checks=[("vhp.start_cycle", {})])

    def released(c: Any) -> bool:
        ppm = c.signal("vhp.h2o2_ppm")
        return (c.signal("isolator.decon_status") == "DECONTAMINATED_RELEASED"
                and isinstance(ppm, (int, float)) and ppm < release)

    return _seq("VHP decontamination", [
        prepare, prechecks, guarded("cycle under IL-07 watch", watch, cycle_b),
        WaitFor("released at the aeration endpoint", ctx, released, RELEASE_TIMEOUT_S),
        *[DeviceCommand(f"retract glove {p}", ctx, "isolator", "retract_glove", {"port": p}) for p in ports],
    ])


# ----------------------------------------------------------------------------- autoclave
def permissive(ctx: Any, name: str, checks: list[tuple[str, dict[str, str]]],
               timeout_s: float = PERMISSIVE_TIMEOUT_S) -> WaitFor:
    """Wait until the interlock engine allows ``checks`` (the command re-checks them when sent)."""
    return WaitFor(f"permissive: {name}", ctx, lambda c: c.check(checks)[0], timeout_s,
                   explain=lambda c: c.check(checks)[1])


def _door_wait(ctx: Any, name: str, signal: str, value: bool) -> WaitFor:
    return WaitFor(name, ctx, lambda c: c.signal(signal) is value, DOOR_TIMEOUT_S)


def autoclave_transfer_in(ctx: Any, program: str, load_id: str, operator: str = "supervisor"
                          ) -> py_trees.behaviour.Behaviour:
    return _seq("autoclave transfer in", [
        DeviceCommand("open load door", ctx, "autoclave", "open_door", {"side": "load"},
                      checks=[("autoclave.open_load", {})], reason=f"load {load_id}"),
        _door_wait(ctx, "load door open", "door.autoclave_load.open", True),
        DeviceCommand("close load door", ctx, "autoclave", "close_door", {"side": "load"},
                      checks=[("door.close", {"door": "autoclave_load"})]),
        WaitFor("load door sealed", ctx, lambda c: c.signal("autoclave.gaskets_ok") is True
                and c.signal("autoclave.door_load.closed") is True, DOOR_TIMEOUT_S),
        RunCycle(f"autoclave {program}", ctx, "autoclave",
                 {"program_id": program, "load_id": load_id, "operator": operator}, "autoclave",
                 timeout_s=AUTOCLAVE_TIMEOUT_S, checks=[("autoclave.start_program", {})]),
        permissive(ctx, "clean-side door", [("autoclave.open_unload", {}), ("autoclave.transfer_in", {}),
                                            ("product.open_container", {})]),
        DeviceCommand("open clean-side door (after PASS)", ctx, "autoclave", "open_door", {"side": "unload"},
                      checks=[("autoclave.open_unload", {}), ("autoclave.transfer_in", {}),
                              ("product.open_container", {})], reason=f"transfer {load_id} in"),
        _door_wait(ctx, "clean-side door open", "door.autoclave_unload.open", True),
        DeviceCommand("close clean-side door", ctx, "autoclave", "close_door", {"side": "unload"},
                      checks=[("door.close", {"door": "autoclave_unload"})]),
        _door_wait(ctx, "clean-side door closed", "autoclave.door_unload.closed", True),
    ])


def autoclave_test(ctx: Any, program: str, operator: str = "supervisor") -> py_trees.behaviour.Behaviour:
    return RunCycle(f"autoclave test {program}", ctx, "autoclave", {"program_id": program, "operator": operator},
                    "autoclave", timeout_s=AUTOCLAVE_TIMEOUT_S, checks=[("autoclave.start_program", {})])


# ----------------------------------------------------------------------------- RTP
class DockBeta(DeviceCommand):
    """Dock a beta with the sterility its own data prove (``supervisor/containers.py``: a supplier
    certificate, or this batch's PASS autoclave record of its load); unknown fails the phase."""

    def __init__(self, name: str, ctx: Any, rtp: str, beta_id: str) -> None:
        super().__init__(name, ctx, "isolator", "dock_beta", {"rtp": rtp, "beta_id": beta_id})
        self.beta_id = beta_id
        self.unknown = ""

    def initialise(self) -> None:
        from aseptic_cell.supervisor.containers import sterility

        status, why = sterility(self.ctx, self.beta_id)
        self.unknown = "" if status is not None else why
        if status is None:
            self.reason, self.handle = "", None
            return
        self.args["sterile_status"] = status
        self.why = f"dock {self.beta_id}: {why}"
        super().initialise()

    def update(self) -> py_trees.common.Status:
        if self.unknown:
            return self.fail(f"RTP transfer refused: {self.unknown}")
        return super().update()


def rtp_transfer_in(ctx: Any, rtp: str, beta_id: str) -> py_trees.behaviour.Behaviour:
    door = f"{rtp.lower()}_alpha"
    return _seq(f"RTP {rtp} transfer in", [
        DockBeta("dock beta (sterility from its own data)", ctx, rtp, beta_id),
        DeviceCommand("lock beta", ctx, "isolator", "lock_beta", {"rtp": rtp}),
        _door_wait(ctx, "beta locked", f"isolator.rtp.{rtp}.beta_locked", True),
        permissive(ctx, "alpha door", [("rtp.open_alpha", {"rtp": rtp}), ("product.open_container", {}),
                                       ("batch.start_processing", {})]),
        DeviceCommand("open alpha door", ctx, "isolator", "open_alpha", {"rtp": rtp},
                      checks=[("rtp.open_alpha", {"rtp": rtp}), ("product.open_container", {}),
                              ("batch.start_processing", {})], reason=f"transfer {beta_id} in"),
        _door_wait(ctx, "alpha door open", f"door.{door}.open", True),
    ])


def _lock_time(ctx: Any, rtp: str) -> float:
    for r in ctx.cfg.layout.isolator.rtps:
        if r.id == rtp:
            return float(getattr(r, "lock_time_s", 1.0))
    return 1.0


def rtp_close(ctx: Any, rtp: str) -> py_trees.behaviour.Behaviour:
    door = f"{rtp.lower()}_alpha"
    return _seq(f"RTP {rtp} close and undock", [
        DeviceCommand("close alpha door", ctx, "isolator", "close_alpha", {"rtp": rtp},
                      checks=[("door.close", {"door": door})]),
        _door_wait(ctx, "alpha closed", f"isolator.rtp.{rtp}.alpha_closed", True),
        DeviceCommand("unlock beta", ctx, "isolator", "unlock_beta", {"rtp": rtp},
                      checks=[("rtp.undock_beta", {"rtp": rtp})]),
        _door_wait(ctx, "beta unlocked", f"isolator.rtp.{rtp}.beta_locked", False),
        HoldFor("lock travel", ctx, _lock_time(ctx, rtp) + 0.5),
        DeviceCommand("undock beta", ctx, "isolator", "undock_beta", {"rtp": rtp},
                      checks=[("rtp.undock_beta", {"rtp": rtp})]),
    ])


# ----------------------------------------------------------------------------- robot
_SCENES: dict[int, tuple[Any, Any]] = {}


def _scene(cfg: CellConfig) -> Any:
    hit = _SCENES.get(id(cfg))
    if hit is None or hit[0] is not cfg:
        from aseptic_cell.motion import Scene

        hit = (cfg, Scene.from_config(cfg.arm, cfg.geometry))
        if len(_SCENES) > 8:
            _SCENES.clear()
        _SCENES[id(cfg)] = hit
    return hit[1]


def doors_entered(cfg: CellConfig, pose: str) -> list[str]:
    """Doors whose swept volume the arm occupies at ``pose`` (RB-04 applies to moves there)."""
    scene = _scene(cfg)
    q = np.array([cfg.arm.poses[pose]], dtype=float)
    out = []
    for b in cfg.geometry.boxes:
        kind, _, door = b.active.partition(":")
        if kind == "door_closed" and door not in out:
            if not scene.check_configs(q, conditions={b.active}, refine=True)[0]:
                out.append(door)
    return out


def motion_checks(cfg: CellConfig, pose: str, speed_class: str) -> list[tuple[str, dict[str, str]]]:
    checks: list[tuple[str, dict[str, str]]] = [("arm.move_process", {})]
    checks += [("arm.move_near_port", {"port": g.id}) for g in cfg.layout.isolator.glove_ports]
    checks += [("arm.enter_door", {"door": d}) for d in doors_entered(cfg, pose)]
    return checks


def robot_task(ctx: Any, waypoints: list[str], speed_class: str = "transit",
               duration_s: float | None = None) -> py_trees.behaviour.Behaviour:
    moves = [MoveArm(f"to {w}", ctx, w, speed_class, checks=motion_checks(ctx.cfg, w, speed_class))
             for w in waypoints]
    return _seq("robot task", [
        DeviceCommand("drives on", ctx, "arm", "enable_drives", checks=[("arm.enable", {})]),
        guarded("process motion interlocks", InterlockGuard("IL-08/IL-09/RB-01..03 (every tick)", ctx, [
            ("arm.move_process", {}),
            *[("arm.move_near_port", {"port": g.id}) for g in ctx.cfg.layout.isolator.glove_ports]]),
                _seq("waypoints", moves)),
        DeviceCommand("drives off", ctx, "arm", "disable_drives"),
    ])


# ----------------------------------------------------------------------------- holds, confirmations
def process_hold(ctx: Any, duration_s: float, description: str = "") -> py_trees.behaviour.Behaviour:
    return guarded("process hold", InterlockGuard("IL-04 (every tick)", ctx, [("batch.start_processing", {})]),
                   HoldFor(description or f"hold {duration_s:g} s", ctx, duration_s))


def operator_confirm(ctx: Any, prompt: str, phase_id: str = "", role: str = "operator"
                     ) -> py_trees.behaviour.Behaviour:
    return OperatorConfirm(f"confirm: {prompt}", ctx, phase_id, prompt)


# ----------------------------------------------------------------------------- procedure
def _phase_tree(ctx: Any, phase: Any, batch_id: str, operator: str) -> py_trees.behaviour.Behaviour:
    p = dict(phase.params)
    t = phase.type
    if t == "glove_test":
        return glove_integrity_test(ctx, p.get("ports", "all"), batch_id, operator)
    if t == "isolator_leak_test":
        return isolator_leak_test(ctx)
    if t == "vhp_decontaminate":
        return vhp_decontamination(ctx, p["cycle"], operator)
    if t == "autoclave_transfer_in":
        return autoclave_transfer_in(ctx, p["program"], p["load_id"], operator)
    if t == "autoclave_test":
        return autoclave_test(ctx, p["program"], operator)
    if t == "rtp_transfer_in":
        return rtp_transfer_in(ctx, p["rtp"], p["beta_id"])
    if t == "robot_task":
        return robot_task(ctx, list(p["waypoints"]), p.get("speed_class", "transit"), p.get("duration_s"))
    if t == "process_hold":
        return process_hold(ctx, float(p["duration_s"]), p.get("description", ""))
    if t == "operator_confirm":
        return operator_confirm(ctx, p["prompt"], phase.id, p.get("role", "operator"))
    raise ValueError(f"phase {phase.id}: unknown phase type {t!r}")


def phase_path(up: Any, op: Any, ph: Any) -> str:
    return f"{up.id}/{op.id}/{ph.id}"


def batch_procedure(ctx: Any, recipe: Any, batch_id: str = "", operator: str = "supervisor"
                    ) -> py_trees.behaviour.Behaviour:
    """The ISA-88 procedure of ``recipe`` as one tree (fresh per batch run)."""
    root = Sequence(f"{recipe.id} v{recipe.version}", memory=True)
    open_rtps: list[str] = []
    gated = False
    for up in recipe.procedure.unit_procedures:
        up_seq = Sequence(f"{up.id} ({up.unit})", memory=True)
        for op in up.operations:
            op_seq = Sequence(op.id, memory=True)
            for ph in op.phases:
                if not gated and ph.type != "glove_test":
                    gated = True
                    op_seq.add_child(InterlockGuard("IL-05 batch.start (gloves tested)", ctx, [("batch.start", {})]))
                body = _phase_tree(ctx, ph, batch_id, operator)
                if ph.type == "rtp_transfer_in":
                    open_rtps.append(ph.params["rtp"])
                elif ph.type == "robot_task" and open_rtps:
                    body = _seq(f"{ph.id} + close RTP", [body, *[rtp_close(ctx, r) for r in open_rtps]])
                    open_rtps = []
                op_seq.add_child(PhaseNode(f"{ph.id} [{ph.type}]", ctx, phase_path(up, op, ph), body))
            up_seq.add_child(op_seq)
        root.add_child(up_seq)
    if open_rtps:  # no robot task after the transfer: close at the end of the procedure
        root.add_child(_seq("close RTPs", [rtp_close(ctx, r) for r in open_rtps]))
    return root


TREE_FACTORIES: dict[str, Callable[..., py_trees.behaviour.Behaviour]] = {
    "glove_integrity_test": glove_integrity_test,
    "isolator_leak_test": isolator_leak_test,
    "vhp_decontamination": vhp_decontamination,
    "autoclave_transfer_in": autoclave_transfer_in,
    "autoclave_test": autoclave_test,
    "rtp_transfer_in": rtp_transfer_in,
    "rtp_close": rtp_close,
    "robot_task": robot_task,
    "process_hold": process_hold,
    "operator_confirm": operator_confirm,
    "batch_procedure": batch_procedure,
}
"""Tree id -> factory(ctx, **params)."""
