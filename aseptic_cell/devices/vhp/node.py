"""VHP generator node: state and the decontamination cycle action ``/cell/vhp/run_cycle``."""

from __future__ import annotations

import sys
from typing import Any

from cell_interfaces.msg import VhpState

from ..backend import Readings
from ..cycle_node import CycleNode
from ..node import num as _f
from ..node import run_device_node

PHASES = ["PRECHECK", "DEHUMIDIFY", "CONDITION", "DECONTAMINATE", "AERATE"]



class VhpNode(CycleNode):
    KIND = "vhp"
    STATE_TYPE = VhpState
    START_COMMAND = "start_cycle"
    START_ARG = "cycle_id"
    PROGRESS_KEYS = ("phase", "h2o2_ppm", "rh_pct", "rs_pct", "temp_c", "injected_g")

    def __init__(self, node_name: str = "vhp", **kwargs: Any) -> None:
        super().__init__(node_name, "run_cycle", **kwargs)

    def default_device_id(self) -> str:
        return self.cfg.layout.vhp_unit.id

    def start_args(self, goal: Any) -> dict[str, Any]:
        return {"cycle_id": goal.program_id, "operator": goal.batch_id or "supervisor"}

    def cycle_running(self, values: dict[str, Any]) -> bool:
        return bool(values.get("cycle_active"))

    def progress(self, values: dict[str, Any]) -> float:
        phase = values.get("phase")
        return PHASES.index(phase) / len(PHASES) if phase in PHASES else (1.0 if phase == "COMPLETE" else 0.0)

    def summary(self, report: dict[str, Any]) -> dict[str, Any]:
        return {"aeration_end_ppm": report.get("aeration_end_ppm"), "recipe_id": report.get("recipe_id")}

    def fill_state(self, msg: VhpState, r: Readings) -> None:
        v = r.values
        msg.cycle_active = bool(v.get("cycle_active"))
        msg.cycle_id = str(v.get("status.recipe_id") or "")
        msg.run_id = str(v.get("status.run_id") or "")
        msg.phase = str(v.get("phase") or "")
        msg.phase_elapsed_s = _f(v.get("status.phase_elapsed_s"))
        msg.h2o2_ppm = _f(v.get("h2o2_ppm"))
        msg.h2o2_mg_l = msg.h2o2_ppm / 720.0  # 1 mg/L ~ 720 ppm (1 ppm = 1.39 mg/m3) [NIOSH-H2O2] [EPA-SUM]
        msg.rh_pct = _f(v.get("rh_pct"))
        msg.rs_pct = _f(v.get("rs_pct"))
        msg.temp_c = _f(v.get("temp_c"))
        msg.injected_g = _f(v.get("injected_g"))
        msg.reservoir_g = _f(v.get("reservoir_g"))
        failed = v.get("status.failed")
        msg.last_result = ("FAIL" if failed and not msg.cycle_active else
                           "PASS" if v.get("phase") == "COMPLETE" else "NONE")
        msg.faults = [str(f) for f in (v.get("status.faults") or [])]


def main(argv: list[str] | None = None) -> int:
    return run_device_node(VhpNode, argv)


if __name__ == "__main__":
    sys.exit(main())
