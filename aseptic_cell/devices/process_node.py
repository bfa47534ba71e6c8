"""The process-equipment process: the incubator, welder, sealer, centrifuge, counter and scanner
nodes in ONE OS process on one executor (as ROS 2 composition does), so the cell's process
equipment costs one process, not six.

Each is a lifecycle :class:`~aseptic_cell.devices.node.DeviceNode` named after its kind
(``/cell/<kind>/command``, ``/cell/<kind>/signals``, ``/cell/<kind>/state``, ``/cell/<kind>/recover``),
managed by the lifecycle manager like the other devices (the graph lists the six names), on
the one command path. State goes out as ``cell_interfaces/DeviceState`` (numeric readings in
``keys``/``values``); when a run of a run-style unit ends, the node publishes its report as a
``cycle_result`` event (the VHP and autoclave nodes do the same at the end of their cycles).

Run it with ``python -m aseptic_cell.devices.process_node --ros-args -p config_dir:=... -p
use_sim_time:=true`` (parameters apply to all six nodes; no ``__node`` remap).
"""

from __future__ import annotations

import sys
from typing import Any

from cell_interfaces.msg import DeviceState

from .backend import Readings
from .node import DeviceNode, run_device_node
from .process_equipment import PROCESS_KINDS, RUN_KINDS, equipment


class ProcessEquipmentState(DeviceState):
    """``DeviceState`` plus the ``lifecycle_state`` attribute the device node base fills in
    (not serialised: the lifecycle state is in ``state``)."""

    __slots__ = ("lifecycle_state",)


class ProcessEquipmentNode(DeviceNode):
    STATE_TYPE = ProcessEquipmentState

    def __init__(self, kind: str, node_name: str | None = None, **kwargs: Any) -> None:
        if kind not in PROCESS_KINDS:
            raise ValueError(f"unknown process equipment kind {kind!r}; known: {list(PROCESS_KINDS)}")
        self.KIND = kind
        super().__init__(node_name or kind, **kwargs)
        self._reported_run = ""
        self._seen_busy_run = ""

    def default_device_id(self) -> str:
        return str(equipment(self.cfg).unit(self.KIND).id)

    def fill_state(self, msg: Any, r: Readings) -> None:
        v = r.values
        msg.kind = self.KIND
        msg.state = f"{msg.lifecycle_state}: {v.get('phase') or ('door open' if v.get('door_open') else 'idle')}"
        msg.mode = "sim" if self.backend is not None and type(self.backend).__name__ == "SimBackend" else "device"
        faults = v.get("status.faults")
        msg.faults = [str(f) for f in faults] if isinstance(faults, list) else []
        msg.healthy = bool(msg.comm_ok) and not msg.faults and not self.latched
        keys, values = [], []
        for k, x in v.items():
            if isinstance(x, bool):
                keys.append(k)
                values.append(1.0 if x else 0.0)
            elif isinstance(x, (int, float)):
                keys.append(k)
                values.append(float(x))
        msg.keys, msg.values = keys, values

    def _tick(self) -> None:
        super()._tick()
        if self.KIND in RUN_KINDS:
            self._report_run_end()

    def _report_run_end(self) -> None:
        """A run that ended since the last tick: its report as a ``cycle_result`` event."""
        r = self.readings()
        if r is None or self.backend is None:
            return
        run_id = str(r.values.get("status.run_id") or "")
        if not run_id or run_id == self._reported_run:
            return
        if r.values.get("busy") is not False or r.values.get("last_result") not in ("PASS", "FAIL"):
            return
        res = self.backend.command("get_result", {}, timeout_s=2.0)
        report = res.payload.get("result") if res.accepted else None
        if not isinstance(report, dict) or report.get("run_id") != run_id:
            return  # try again on the next tick
        self._reported_run = run_id
        self.emit("cycle_result", run_id=run_id, result=str(report.get("result", "UNKNOWN")), kind=self.KIND,
                  summary=report)


def make_nodes() -> list[ProcessEquipmentNode]:
    return [ProcessEquipmentNode(k) for k in PROCESS_KINDS]


SHARED_CONFIG_S = 30.0
"""The six nodes configure one after the other: a configuration parsed less than this long ago
(wall) is reused instead of parsed and validated again (~0.5 s CPU each); a later configure
(after ``cleanup``) reads the files again."""


def _share_config_loads() -> None:
    """In this process only: ``aseptic_cell.config.load_config`` (what each node's configure
    calls) answers from a parse of the same directory made less than ``SHARED_CONFIG_S`` ago."""
    import time

    from .. import config as config_pkg

    original = config_pkg.load_config
    cache: dict[str, tuple[float, Any]] = {}

    def load_config(config_dir: Any = None, *args: Any, **kwargs: Any) -> Any:
        key = str(config_dir)
        hit = cache.get(key)
        if args or kwargs or hit is None or time.monotonic() - hit[0] > SHARED_CONFIG_S:
            cfg = original(config_dir, *args, **kwargs)
            if not args and not kwargs:
                cache[key] = (time.monotonic(), cfg)
            return cfg
        return hit[1]

    config_pkg.load_config = load_config  # type: ignore[assignment]


def main(argv: list[str] | None = None) -> int:
    _share_config_loads()
    return run_device_node(make_nodes, argv)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
