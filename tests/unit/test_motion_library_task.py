"""A recipe's robot task whose straight moves collide runs through the approved paths of the
motion library (config/motion_library.yaml), each re-certified against the live keep-outs by
the arm's motion step of the command path; with the approval removed the same task is refused
and the batch held."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from aseptic_cell.config import default_config_dir, load_config
from aseptic_cell.devices.codes import RefusalCode
from aseptic_cell.motion.library import MotionLibrary
from aseptic_cell.supervisor.port import InProcessCell
from aseptic_cell.supervisor.runner import InProcessRun

TASK = "waypoints: [park, rtp_pick, park, incubator_approach, incubator_place, incubator_approach, park]"
DETOUR = "waypoints: [park, incubator_place, park]"  # both straight moves collide (front wall)


def _config(tmp_path: Path, *, approved: bool) -> Path:
    d = tmp_path / "config"
    shutil.copytree(default_config_dir(), d)
    recipe = d / "recipes" / "cart_transduction.yaml"
    text = recipe.read_text(encoding="utf-8")
    assert TASK in text
    recipe.write_text(text.replace(TASK, DETOUR), encoding="utf-8")
    if not approved:
        lib = MotionLibrary.load(d / "motion_library.yaml")
        for lp in lib.candidates("incubator_place"):  # a path from another station would be
            lib.revoke(lp.name)                     # reached by a certified straight lead-in
        lib.save()
    return d


def test_the_straight_moves_of_the_task_collide(tmp_path: Path) -> None:
    cfg = load_config(_config(tmp_path, approved=True))
    cell = InProcessCell(cfg)
    q0 = cell.motion.current_q(cell.sensors("arm"))
    q1 = np.array(cfg.arm.poses["incubator_place"])
    res = cell.scene.check_trajectory(np.linspace(q0, q1, 200), 0.02, speed_class="transit",
                                      conditions=set())
    assert not res.ok and res.kind == "collision"


@pytest.mark.parametrize("approved", [True, False])
def test_robot_task_through_approved_paths_only(tmp_path: Path, approved: bool) -> None:
    cfg = load_config(_config(tmp_path, approved=approved))
    run = InProcessRun(cfg, tick_s=5.0)
    moves: list[tuple[str, bool]] = []
    run.cell.listeners.append(
        lambda node, command, args, ok: moves.append((args["pose"], ok)) if command == "move_to_pose" else None)
    # the test edits the configured recipe: an engineering run (a recipe file), not a GMP batch
    run.run_batch(str(cfg.root / "recipes" / "cart_transduction.yaml"), "B-LIB", "op1")
    s = run.sup.summary()
    if approved:
        assert s["batch_state"] == "Complete", s["held_reason"]
        i = moves.index(("incubator_place", True))  # after the VHP phase's decon/park moves
        assert moves[i + 1] == ("park", True)
        assert not s["refusals"]
    else:
        assert s["batch_state"] == "Held"
        refused = [r for r in s["refusals"] if r["command"] == "move_to_pose"]
        assert refused and refused[0]["code"] == RefusalCode.MOTION_NO_APPROVED_PATH
        assert "straight move to incubator_place collides" in refused[0]["reason"]
        assert "park__incubator_place" in refused[0]["reason"] and "not approved" in refused[0]["reason"]
        assert moves[-1] == ("incubator_place", False) and ("incubator_place", True) not in moves
        assert run.cell.sensors("arm")["at_park"]  # nothing moved towards the incubator
