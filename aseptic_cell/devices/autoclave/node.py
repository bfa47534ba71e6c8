"""Autoclave node: state, door service (load/unload) and the program action
``/cell/autoclave/run_program``; enforces the double-ended steriliser door interlocks."""

from __future__ import annotations

import sys
from typing import Any

from cell_interfaces.msg import AutoclaveState

from ..backend import Readings
from ..cycle_node import CycleNode
from ..node import num as _f
from ..node import run_device_node

DOORS = {"autoclave_load": "load", "autoclave_unload": "unload"}



class AutoclaveNode(CycleNode):
    KIND = "autoclave"
    STATE_TYPE = AutoclaveState
    START_COMMAND = "start_program"
    START_ARG = "program_id"
    PROGRESS_KEYS = ("phase", "chamber_t_c", "chamber_p_kpa", "load_t_c", "f0_min")

    def __init__(self, node_name: str = "autoclave", **kwargs: Any) -> None:
        super().__init__(node_name, "run_program", **kwargs)
        from cell_interfaces.srv import DoorCommand

        self.create_service(DoorCommand, f"/cell/{node_name}/door", self._on_door)

    def default_device_id(self) -> str:
        return self.cfg.layout.autoclave.id

    def start_args(self, goal: Any) -> dict[str, Any]:
        return {"program_id": goal.program_id, "load_id": goal.batch_id or "LOAD", "operator": "supervisor"}

    def cycle_running(self, values: dict[str, Any]) -> bool:
        return bool(values.get("cycle_running"))

    def progress(self, values: dict[str, Any]) -> float:
        order = ["PULSE_VACUUM", "PULSE_PRESSURE", "HEATUP", "PLATEAU", "EXHAUST", "DRYING", "AIR_BREAK"]
        p = values.get("phase")
        return order.index(p) / len(order) if p in order else (1.0 if p == "COMPLETE" else 0.0)

    def summary(self, report: dict[str, Any]) -> dict[str, Any]:
        return {"f0_min": report.get("f0_min"), "program_id": report.get("program_id")}

    def _on_door(self, req: Any, resp: Any) -> Any:
        side = DOORS.get(req.door)
        if side is None or req.command not in ("open", "close"):
            resp.accepted, resp.code = False, "INVALID"
            resp.reason = (f"door must be one of {sorted(DOORS)} and command open|close; "
                           f"got door={req.door!r} command={req.command!r}")
            return resp
        out = self.execute(f"{req.command}_door", {"side": side}, user=req.user, reason=req.reason)
        resp.accepted, resp.code, resp.reason = out.accepted, out.code, out.reason
        return resp

    def fill_state(self, msg: AutoclaveState, r: Readings) -> None:
        v = r.values
        msg.cycle_active = bool(v.get("cycle_running"))
        msg.program_id = str(v.get("status.program_id") or "")
        msg.run_id = str(v.get("status.run_id") or "")
        msg.phase = str(v.get("phase") or "")
        msg.phase_elapsed_s = _f(v.get("status.phase_elapsed_s"))
        msg.chamber_t_c = _f(v.get("chamber_t_c"))
        msg.chamber_p_kpa = _f(v.get("chamber_p_kpa"))
        msg.load_probe_t_c = _f(v.get("load_t_c"))
        msg.monitor_probe_t_c = _f(v.get("chamber_t_mon_c"))
        msg.f0_min = _f(v.get("f0_min"))
        for side in ("load", "unload"):
            setattr(msg, f"door_{side}_open", bool(v.get(f"{side}_door_open")))
            setattr(msg, f"door_{side}_locked", bool(v.get(f"{side}_door_locked")))
            setattr(msg, f"door_{side}_gasket_ok", bool(v.get(f"{side}_door_gasket_ok")))
        phase = v.get("phase")
        msg.last_result = "PASS" if phase == "COMPLETE" else "FAIL" if phase == "FAILED" else "NONE"
        msg.sterile_load_available = bool(v.get("unload_released"))
        msg.faults = [str(f) for f in (v.get("status.faults") or [])]


def main(argv: list[str] | None = None) -> int:
    return run_device_node(AutoclaveNode, argv)


if __name__ == "__main__":
    sys.exit(main())
