"""Random operator commands and device faults against the in-process cell, with the safety
invariants checked on every tick: shared by the hypothesis stateful test
(tests/unit/test_supervisor_stateful.py) and the soak script (benchmarks/soak.py)."""

from __future__ import annotations

from typing import Any

from ..auth import UserDirectory
from ..config import CellConfig
from .invariants import InvariantMonitor
from .runner import InProcessRun

OPERATOR_COMMANDS: list[tuple[str, str, dict[str, Any], str]] = [
    ("isolator", "open_door", {"door": "A"}, "op1"), ("isolator", "open_door", {"door": "B"}, "op1"),
    ("isolator", "close_door", {"door": "A"}, "op1"), ("isolator", "close_door", {"door": "B"}, "op1"),
    ("isolator", "mark_hatch_decontaminated", {}, "op1"),
    ("isolator", "dock_beta", {"rtp": "RTP1", "beta_id": "BX", "sterile_status": "sterile"}, "op1"),
    ("isolator", "lock_beta", {"rtp": "RTP1"}, "op1"), ("isolator", "unlock_beta", {"rtp": "RTP1"}, "op1"),
    ("isolator", "undock_beta", {"rtp": "RTP1"}, "op1"), ("isolator", "open_alpha", {"rtp": "RTP1"}, "op1"),
    ("isolator", "close_alpha", {"rtp": "RTP1"}, "op1"), ("isolator", "use_glove", {"port": "GP1"}, "op1"),
    ("isolator", "release_glove", {"port": "GP1"}, "op1"), ("isolator", "extend_glove", {"port": "GP2"}, "op1"),
    ("isolator", "start_leak_test", {}, "op1"), ("isolator", "start_glove_test", {"port": "GP1", "user": "op1"}, "op1"),
    ("vhp", "start_cycle", {"cycle_id": "VHP-ISO-SHORT", "operator": "op1"}, "op1"),
    ("vhp", "abort", {"user": "op1", "reason": "fuzz"}, "op1"),
    ("autoclave", "open_door", {"side": "load"}, "op1"), ("autoclave", "close_door", {"side": "load"}, "op1"),
    ("autoclave", "open_door", {"side": "unload"}, "op1"), ("autoclave", "close_door", {"side": "unload"}, "op1"),
    ("autoclave", "start_program", {"program_id": "P121-15", "load_id": "L"}, "op1"),
    ("autoclave", "override_unload", {"user": "op1", "reason": "fuzz"}, "op1"),
    ("arm", "enable_drives", {}, "sup1"), ("arm", "disable_drives", {}, "op1"),
    ("arm", "move_to_pose", {"pose": "decon"}, "sup1"), ("arm", "move_to_pose", {"pose": "park"}, "sup1"),
    ("arm", "move_to_pose", {"pose": "rtp_pick"}, "sup1"), ("arm", "reset_protective_stop", {}, "sup1"),
]
BATCH_COMMANDS: list[tuple[str, str]] = [
    ("run", "op1"), ("hold", "op1"), ("restart", "sup1"), ("pause", "op1"), ("resume", "op1"), ("stop", "sup1"),
    ("abort", "qa1"), ("reset", "sup1"), ("restart", "op1"),
]
FAULTS: list[tuple[str, str]] = [
    ("ISO1", "glove_breach:GP1"), ("AC1", "steam_failure"), ("ISO1", "particle_monitor_failure"),
    ("ISO1", "fan_failure"), ("VHP1", "injector_failure"), ("ARM1", "comm_loss"), ("ISO1", "comm_loss"),
]
PASSWORDS = {"op1": "op1-demo-2026", "sup1": "sup1-demo-2026", "qa1": "qa1-demo-2026"}


class FastSignUsers(UserDirectory):
    """The real directory (roles, signatures, meanings), with each user's PBKDF2 verification
    done once and remembered: for fuzzing only, never in the product."""

    _memo: dict[tuple[str, str], Any] = {}

    def authenticate(self, user_id: str, password: str) -> Any:
        key = (user_id, password)
        if key not in self._memo:
            self._memo[key] = super().authenticate(user_id, password)
        return self._memo[key]


class FuzzCell:
    """One fresh sequence: cell + supervisor + invariant monitor."""

    _engines: dict[int, Any] = {}

    def __init__(self, cfg: CellConfig, users: Any, *, tick_s: float = 2.0) -> None:
        from ..interlocks import InterlockEngine

        engine = self._engines.get(id(cfg))
        if engine is None:
            engine = self._engines[id(cfg)] = InterlockEngine.from_config(cfg, lambda: 0.0)
        self.run = InProcessRun(cfg, tick_s=tick_s, users=users, check_mode="samples", engine=engine)
        self.sup, self.cell = self.run.sup, self.run.cell
        self.mon = InvariantMonitor(self.cell, self.sup)
        self.mon.check()

    def operate(self, i: int) -> None:
        node, cmd, args, user = OPERATOR_COMMANDS[i % len(OPERATOR_COMMANDS)]
        self.sup.operate(node, cmd, dict(args), user, "fuzz")
        self.mon.check()

    def batch(self, i: int) -> None:
        cmd, user = BATCH_COMMANDS[i % len(BATCH_COMMANDS)]
        if cmd == "run":
            self.sup.run_batch("CART-TRANSDUCTION", "B-FUZZ", user)
        else:
            self.sup.batch_command(cmd, user, PASSWORDS.get(user, ""), "", "fuzz")
        self.mon.check()

    def fault(self, i: int, clear: bool = False) -> None:
        dev, fault = FAULTS[i % len(FAULTS)]
        if clear:
            self.cell.clear_fault(dev, fault)
        else:
            self.cell.inject_fault(dev, fault)

    def advance(self, seconds: float) -> None:
        end = self.run.now() + seconds
        while self.run.now() < end - 1e-9:
            self.run.tick_once()
            self.mon.check()

    @property
    def violations(self) -> list[str]:
        return self.mon.violations
