"""What ``cellctl demo --arm ENGINE --bag FILE`` adds to the demo: the arm on a physics engine, an
MCAP recording of the batch's topics, and the physics figures (contacts, tracking error) in the
summary. A contact during the batch fails the demo."""

from __future__ import annotations

import json
from typing import Any


class DemoExtras:
    def __init__(
        self, config_dir: str, *, arm: str | None, bag: str | None, speed: float, domain_id: int | None
    ) -> None:
        self.config_dir, self.arm, self.bag, self.speed, self.domain_id = (
            config_dir,
            arm,
            bag,
            speed,
            domain_id,
        )
        self.recorder: Any = None
        self.status: dict[str, Any] = {}

    def specs(self, specs: list[Any]) -> list[Any]:
        if not self.arm or self.arm == "sim":
            return specs
        from .graph import with_arm_engine

        return with_arm_engine(specs, self.config_dir, self.arm, speed=self.speed)

    def start(self) -> None:
        if self.bag:
            from ..bag.recorder import Recorder

            self.recorder = Recorder(self.bag, domain_id=self.domain_id).start()

    def attach(self, client: Any) -> None:
        if self.arm in ("mujoco", "gazebo"):  # gazebo: the status of the MuJoCo stand-in, if one runs
            from std_msgs.msg import String

            from ..devices.arm_jtc_backend import NAMESPACE

            def on_status(m: Any) -> None:
                self.status = json.loads(m.data)

            client.node.create_subscription(String, f"{NAMESPACE}/mujoco/status", on_status, 10)

    def finish(self, summary: dict[str, Any], code: int) -> int:
        if self.recorder is not None:
            st = self.recorder.stop()
            summary["bag"] = {
                "file": str(st.path),
                "messages": st.messages,
                "topics": dict(sorted(st.counts.items())),
                "wall_s": round(st.wall_s, 2),
                "messages_per_s": round(st.messages / st.wall_s, 1) if st.wall_s > 0 else 0.0,
            }
        if self.arm == "gazebo" and self.status:  # the MuJoCo stand-in's figures (Gazebo has none)
            summary["arm_physics"] = dict(self.status)
        if self.arm == "mujoco":
            s = self.status
            summary["arm_physics"] = {
                k: s.get(k)
                for k in (
                    "t",
                    "steps",
                    "steps_per_cpu_s",
                    "real_time_factor",
                    "trajectories",
                    "rejected",
                    "max_tracking_error_rad",
                    "contact_steps",
                    "contact_events",
                )
            }
            if not s:
                summary["result"], code = "FAIL", 1
                summary.setdefault("error", "no status from the MuJoCo arm")
            elif s.get("contact_steps") or s.get("rejected") or not s.get("trajectories"):
                summary["result"], code = "FAIL", 1
                summary.setdefault(
                    "error",
                    f"MuJoCo arm: {s.get('contact_steps')} contact steps, "
                    f"{s.get('rejected')} rejected, {s.get('trajectories')} trajectories",
                )
        return code
