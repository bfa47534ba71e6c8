"""Isolator device node: state, hatch/RTP/glove services and the isolator's own hard interlocks.

Topics: ``/cell/isolator/state`` (cell_interfaces/IsolatorState).
Services: ``/cell/isolator/door`` (DoorCommand: hatch_a | hatch_b), ``/cell/isolator/port``
(PortCommand), ``/cell/isolator/glove`` (GloveCommand), ``/cell/isolator/command``,
``/cell/isolator/recover``.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from cell_interfaces.msg import GlovePortState, IsolatorState, RtpState

from ..backend import Readings
from ..node import DeviceNode, run_device_node
from ..node import num as _f

HATCH_DOORS = {"hatch_a": "A", "hatch_b": "B"}
PORT_COMMANDS = {"dock_beta", "lock_beta", "unlock_beta", "undock_beta", "open_alpha", "close_alpha"}
GLOVE_COMMANDS = {"use": "use_glove", "release": "release_glove", "extend": "extend_glove",
                  "retract": "retract_glove", "test": "start_glove_test"}



class IsolatorNode(DeviceNode):
    KIND = "isolator"
    STATE_TYPE = IsolatorState

    def __init__(self, node_name: str = "isolator", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        from cell_interfaces.srv import DoorCommand, GloveCommand, PortCommand

        self.create_service(DoorCommand, f"/cell/{node_name}/door", self._on_door)
        self.create_service(PortCommand, f"/cell/{node_name}/port", self._on_port)
        self.create_service(GloveCommand, f"/cell/{node_name}/glove", self._on_glove)
        self.glove_ids: list[str] = []
        self.rtp_ids: list[str] = []

    def default_device_id(self) -> str:
        return self.cfg.layout.isolator.id

    def on_configured(self) -> None:
        self.glove_ids = [g.id for g in self.cfg.layout.isolator.glove_ports]
        self.rtp_ids = [r.id for r in self.cfg.layout.isolator.rtps]

    # ------------------------------------------------------------------ services
    def _on_door(self, req: Any, resp: Any) -> Any:
        door = HATCH_DOORS.get(req.door)
        if door is None or req.command not in ("open", "close"):
            resp.accepted, resp.code = False, "INVALID"
            resp.reason = (f"door must be one of {sorted(HATCH_DOORS)} and command open|close; "
                           f"got door={req.door!r} command={req.command!r}")
            self.emit("refusal", command=f"door.{req.command}", user=req.user, code="INVALID", detail=resp.reason)
            return resp
        out = self.execute(f"{req.command}_door", {"door": door}, user=req.user, reason=req.reason)
        resp.accepted, resp.code, resp.reason = out.accepted, out.code, out.reason
        return resp

    def _on_port(self, req: Any, resp: Any) -> Any:
        if req.command not in PORT_COMMANDS:
            resp.accepted, resp.code = False, "INVALID"
            resp.reason = f"command must be one of {sorted(PORT_COMMANDS)}, got {req.command!r}"
            return resp
        args: dict[str, Any] = {"rtp": req.rtp_id}
        if req.command == "dock_beta":
            args.update(beta_id=req.beta_id, sterile_status=req.beta_sterile_status)
        out = self.execute(req.command, args, user=req.user, reason=req.reason)
        resp.accepted, resp.code, resp.reason = out.accepted, out.code, out.reason
        return resp

    def _on_glove(self, req: Any, resp: Any) -> Any:
        name = GLOVE_COMMANDS.get(req.command)
        if name is None:
            resp.accepted, resp.code = False, "INVALID"
            resp.reason = f"command must be one of {sorted(GLOVE_COMMANDS)}, got {req.command!r}"
            return resp
        args: dict[str, Any] = {"port": req.port_id}
        if name in ("use_glove", "start_glove_test"):
            args["user"] = req.user or "operator"
        out = self.execute(name, args, user=req.user, reason=req.reason)
        resp.accepted, resp.code, resp.reason = out.accepted, out.code, out.reason
        return resp

    # ------------------------------------------------------------------ state
    def fill_state(self, msg: IsolatorState, r: Readings) -> None:
        v = r.values
        msg.dp_pa = _f(v.get("dp_pa"))
        msg.dp_alarm = bool(v.get("dp_alarm"))
        msg.hatch_door_a_open = not v.get("hatch.door_A.closed", False)
        msg.hatch_door_b_open = not v.get("hatch.door_B.closed", False)
        msg.hatch_seal_a_inflated = bool(v.get("hatch.seal_A.inflated"))
        msg.hatch_seal_b_inflated = bool(v.get("hatch.seal_B.inflated"))
        msg.hatch_dwell_remaining_s = _f(v.get("hatch.dwell_remaining_s"))
        msg.rtps = [RtpState(rtp_id=i, alpha_open=not v.get(f"rtp.{i}.alpha_closed", True),
                             # locked = the door is at an end position (fully open or closed and latched)
                             alpha_locked=v.get(f"rtp.{i}.alpha_door") in ("open", "closed"),
                             beta_docked=bool(v.get(f"rtp.{i}.beta_docked")),
                             beta_locked=bool(v.get(f"rtp.{i}.beta_locked")),
                             beta_id=str(v.get(f"rtp.{i}.beta_id") or ""),
                             beta_sterile_status=str(v.get(f"rtp.{i}.beta_sterile_status") or ""))
                    for i in self.rtp_ids]
        now_t = r.device_time
        gloves = []
        for g in self.glove_ids:
            t_last = v.get(f"glove.{g}.last_test_time")
            age = (now_t - t_last) / 3600.0 if isinstance(t_last, (int, float)) else math.nan
            gloves.append(GlovePortState(
                port_id=g, in_use=bool(v.get(f"glove.{g}.in_use")), extended=bool(v.get(f"glove.{g}.extended")),
                blocked=v.get(f"glove.{g}.last_test") == "FAIL",
                last_test_result=str(v.get(f"glove.{g}.last_test") or "NONE"),
                last_test_drop_pa=_f(v.get(f"glove.{g}.last_test_value_pa")),
                last_test_limit_pa=_f(v.get(f"glove.{g}.last_test_limit_pa")),
                last_test_age_h=age, last_test_user=str(v.get(f"glove.{g}.last_test_user") or ""),
                glove_lot=next((gp.glove_lot for gp in self.cfg.layout.isolator.glove_ports if gp.id == g), "")))
        msg.glove_ports = gloves
        msg.particles_0_5_per_m3 = _f(v.get("particles.0_5_per_m3"))
        msg.particles_5_0_per_m3 = _f(v.get("particles.5_0_per_m3"))
        msg.particle_alert = bool(v.get("particles.0_5_alert") or v.get("particles.5_0_alert"))
        msg.particle_action = bool(v.get("particles.action_excursion"))
        msg.particle_monitor_running = bool(v.get("particles.monitor_running"))
        msg.sample_flow_l_min = _f(v.get("particles.sample_flow_l_min"))
        msg.airflow_m_s = _f(v.get("airflow_m_s"))
        msg.temp_c = _f(v.get("temp_c"))
        msg.rh_pct = _f(v.get("rh_pct"))
        msg.h2o2_ppm = _f(v.get("h2o2_ppm"))  # NaN: the isolator has no H2O2 sensor of its own
        msg.decon_status = str(v.get("decon_status") or "")
        msg.leak_test_result = ("RUNNING" if v.get("leak_test.running") else
                                "PASS" if v.get("leak_test.passed") else "NONE")
        msg.faults = [str(f) for f in (v.get("status.faults") or [])]


def main(argv: list[str] | None = None) -> int:
    return run_device_node(IsolatorNode, argv)


if __name__ == "__main__":
    sys.exit(main())
