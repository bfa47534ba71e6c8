"""The arm's motion step of the command path: plan a ``move_to_pose``, establish the live
keep-out zones, and prove the whole trajectory safe before anything moves.

Used by the arm device node and the in-process cell alike (one implementation): the keep-out
zones come from the interlock signals of the isolator and the autoclave
(:mod:`aseptic_cell.devices.signals`), whichever transport delivered them.

Keep-out policy (ISO 10218-2 §5.10 safeguarded space; Annex 1 §8.8 first air): a glove port
in use adds its reach envelope; a door's swept volume is a keep-out unless the door is
confirmed fully open and locked in that end position; a door whose state is unknown counts
as closed.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np

from ...config import CellConfig
from ...results import CommandResult
from ..codes import RefusalCode, motion_code

MOTION_COMMANDS = ("move_to_pose", "execute_trajectory")
LIBRARY_FILE = "motion_library.yaml"
"""The approved paths, beside the other configuration files."""
PLAN_REFUSALS: dict[str, RefusalCode] = {
    "UNKNOWN_POSE": RefusalCode.INVALID, "INVALID": RefusalCode.INVALID,
    "NO_CELL_STATE": RefusalCode.NO_CELL_STATE, "LIMIT": RefusalCode.MOTION_LIMIT,
    "SPEED": RefusalCode.MOTION_SPEED, "NO_APPROVED_PATH": RefusalCode.MOTION_NO_APPROVED_PATH,
    "PATH_REFUSED": RefusalCode.MOTION_COLLISION}
"""The planner's refusal codes in the catalogue's names."""


def keepout_conditions(signals: Mapping[str, Any] | None, known: set[str]) -> set[str] | None:
    """Scene conditions (``glove_in_use:<port>``, ``container_open:<station>``, ``door_closed:<door>``)
    from the interlock signals of the isolator and the autoclave; ``None`` when the isolator's are
    unknown."""
    if signals is None:
        return None
    cond = set()
    fully_open = set()
    for name, value in signals.items():
        if name.startswith("isolator.glove.") and name.endswith(".in_use") and value is True:
            cond.add(f"glove_in_use:{name[len('isolator.glove.'):-len('.in_use')]}")
        elif name.startswith("isolator.station.") and name.endswith(".container_open") and value is True:
            cond.add(f"container_open:{name[len('isolator.station.'):-len('.container_open')]}")  # first air
        elif name.startswith("door.") and name.endswith(".open") and value is True:
            door = name[len("door."):-len(".open")]
            if signals.get(f"door.{door}.locked") is True:
                fully_open.add(door)
    cond |= {a for a in known if a.startswith("door_closed:") and a.split(":", 1)[1] not in fully_open}
    return {c for c in cond if c in known}


@functools.lru_cache(maxsize=8)
def _library(path: str, version: int) -> Any:
    from ...motion.library import MotionLibrary

    return MotionLibrary.load(path)


class ArmMotion:
    """Planning and the certified check of arm motions for one configuration.

    Args:
        cfg: the loaded cell configuration.
        scene: the collision scene (:class:`aseptic_cell.motion.Scene`), shared read-only.
        check_mode: ``certified`` (motion between samples proven), ``fixed`` or ``samples``.
        plan_dt_s: sample period of planned moves.
    """

    def __init__(self, cfg: CellConfig, scene: Any, *, check_mode: str = "certified",
                 plan_dt_s: float = 0.02) -> None:
        self.cfg = cfg
        self.scene = scene
        self.check_mode = check_mode
        self.plan_dt_s = plan_dt_s
        self.joint_names = [j.name for j in cfg.arm.joints]
        self._vmax = np.array([j.max_velocity for j in cfg.arm.joints])
        self._amax = np.array([j.max_acceleration for j in cfg.arm.joints])
        self.known_conditions = {b.active for b in cfg.geometry.boxes}
        self.library = self._load_library(cfg)

    @staticmethod
    def _load_library(cfg: CellConfig) -> Any:
        """The approved station-to-station paths (``config/motion_library.yaml``; none: empty),
        parsed once per file version (a cell is built often in tests: 10,000 in the fuzzing)."""
        path = cfg.root / LIBRARY_FILE
        try:
            version = path.stat().st_mtime_ns
        except FileNotFoundError:
            version = -1
        return _library(str(path), version)

    def current_q(self, values: Mapping[str, Any]) -> np.ndarray:
        """Joint positions from the arm's readings (NaN where missing)."""
        out = []
        for n in self.joint_names:
            v = values.get(f"joint.{n}.position_rad")
            out.append(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else np.nan)
        return np.array(out)

    def validate(self, name: str, typed: Mapping[str, Any]) -> CommandResult | None:
        if name == "move_to_pose" and typed["pose"] not in self.cfg.arm.poses:
            return CommandResult.refuse(RefusalCode.INVALID, f"unknown pose {typed['pose']!r}; "
                                        f"known: {sorted(self.cfg.arm.poses)}")
        return None

    def prepare(self, name: str, typed: Mapping[str, Any], values: Mapping[str, Any],
                cell_signals: Mapping[str, Any] | None) -> tuple[dict[str, Any], str] | CommandResult:
        """The backend's ``execute_trajectory`` arguments and a task label, or the refusal.

        ``move_to_pose`` takes the straight minimum-jerk move when it is proven safe, else an
        approved, unchanged path of the motion library re-certified against the live keep-outs
        (:func:`aseptic_cell.motion.planning.plan_pose_move`); no approved path is a refusal.
        Either way the result passes the certified check below before anything moves.
        """
        from ...motion.planning import MotionRefused, plan_pose_move

        speed_class = typed.get("speed_class", "transit")
        q0 = self.current_q(values)
        conditions = keepout_conditions(cell_signals, self.known_conditions)
        if name == "move_to_pose":
            pose = typed["pose"]
            limit = self.cfg.arm.speed_classes[speed_class].max_tcp_speed_m_s
            try:
                q, dt = plan_pose_move(self.scene, self.library, q0, pose, self._vmax, self._amax,
                                       speed_limit_m_s=limit, dt=self.plan_dt_s, conditions=conditions,
                                       speed_class=speed_class)
            except MotionRefused as exc:
                return CommandResult.refuse(PLAN_REFUSALS.get(exc.code, RefusalCode.MOTION_COLLISION), exc.reason)
            task = f"to {pose}"
        else:
            q, dt = np.asarray(typed["q"], dtype=np.float64), float(typed["dt"])
            task = "trajectory"
        refusal = self.check(q, dt, speed_class, conditions)
        if refusal is not None:
            return refusal
        return {"q": q.tolist(), "dt": dt, "speed_class": speed_class}, task

    def check(self, q: np.ndarray, dt: float, speed_class: str, conditions: set[str] | None
              ) -> CommandResult | None:
        """None if the motion is proven safe against the keep-outs ``conditions``, else the refusal."""
        if conditions is None:
            return CommandResult.refuse(RefusalCode.NO_CELL_STATE, "isolator state unknown or stale: keep-out "
                                        "zones cannot be established, motion refused")
        try:
            res = self.scene.check_trajectory(q, dt, mode=self.check_mode, speed_class=speed_class,
                                              conditions=conditions)
        except ValueError as exc:
            return CommandResult.refuse(RefusalCode.INVALID, f"trajectory rejected: {exc}")
        if not res.ok:
            return CommandResult.refuse(motion_code(res.kind),
                                        f"{res.reason}; minimum clearance {res.clearance * 1000:.1f} mm",
                                        first_failing_index=res.first_failing_index, clearance_m=res.clearance)
        return None
