"""The cell's node graph, declared once.

``default_graph()`` is the single source of truth for which processes make up the cell,
in which order they start, which parameters they get and which node depends on which.
It is used by

* the process launcher (``aseptic_cell.launcher.CellProcesses``, ``cellctl run``),
* the lifecycle manager (``managed_nodes`` / ``dependencies`` parameters are derived here),
* ``launch/cell.launch.py`` for full ROS 2 installations (kept in sync by a test).

Dependencies mean "needs it to be ACTIVE to work safely": the lifecycle manager brings a
node up only after everything it depends on, and when a node is lost it drives every node
that depends on it (transitively) to its safe state.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

KIND_SIM = "sim"
KIND_DEVICE = "device"
KIND_MANAGER = "manager"
KIND_SERVICE = "service"  # supervisor, hmi, ... (other issues)

LIFECYCLE_MANAGER = "lifecycle_manager"
SIM_WORLD = "sim_world"

# name -> (module, depends_on). Order = start order of the processes.
_DEVICES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("isolator", "aseptic_cell.devices.isolator.node", ()),
    ("vhp", "aseptic_cell.devices.vhp.node", ("isolator", "arm")),
    ("autoclave", "aseptic_cell.devices.autoclave.node", ("isolator",)),
    ("arm", "aseptic_cell.devices.arm.node", ("isolator",)),
)


@dataclass(frozen=True)
class NodeSpec:
    """One node = one OS process.

    Attributes:
        name: ROS node name (``-r __node:=name``); also the process name in logs.
        module: Python module run with ``python -m module``; a path ending in ``.py`` is run
            as a script instead (test helpers).
        params: ROS parameters (``-p key:=value``): bool, int, float, str or a non-empty
            list of one of those.
        depends_on: names of the nodes this node needs ACTIVE.
        lifecycle: True for rclpy LifecycleNodes (managed by the lifecycle manager).
        kind: ``sim`` | ``device`` | ``manager`` | ``service`` (free text for helpers).
    """

    name: str
    module: str
    params: Mapping[str, Any] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    lifecycle: bool = False
    kind: str = KIND_SERVICE
    argv: tuple[str, ...] | None = None  # a plain (non-ROS) process: these arguments instead of --ros-args

    @property
    def executable(self) -> str:
        """Console-script name under lib/aseptic_cell (what ``ros2 run`` / launch files use): the
        module's name, or ``<kind>_node`` for a device's ``aseptic_cell.devices.<kind>.node``."""
        if self.module.endswith(".py"):
            return Path(self.module).stem
        parts = self.module.split(".")
        return f"{parts[-2]}_node" if parts[-1] == "node" and len(parts) > 1 else parts[-1]

    def ros_args(self) -> list[str]:
        """``--ros-args -r __node:=<name> -p k:=v ...`` (no shell quoting needed: argv list)."""
        args = ["--ros-args", "-r", f"__node:={self.name}"]
        for key, value in self.params.items():
            args += ["-p", f"{key}:={param_to_yaml(value)}"]
        return args

    def command(self, python: str | None = None) -> list[str]:
        """The full argv of this node's process."""
        py = python or sys.executable
        head = [py, self.module] if self.module.endswith(".py") else [py, "-m", self.module]
        return head + (list(self.argv) if self.argv is not None else self.ros_args())


def param_to_yaml(value: Any) -> str:
    """Encode a parameter value as the YAML scalar/flow sequence rcl parses for ``-p k:=v``.

    Strings are always quoted (JSON strings are valid YAML) so ``"true"`` or ``"1.0"`` stay
    strings. Empty lists are refused: rcl cannot tell their element type.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"parameter value {value!r} is not finite")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(
                "empty list parameters cannot be passed on the command line (element type unknown)"
            )
        return "[" + ", ".join(param_to_yaml(v) for v in value) + "]"
    raise TypeError(f"unsupported parameter type {type(value).__name__}: {value!r}")


def bringup_order(specs: Iterable[NodeSpec]) -> list[str]:
    """Lifecycle nodes in declared order, moved later only as far as their dependencies need.

    A stable topological sort: among the nodes whose dependencies are all up, the earliest
    declared comes first. Dependencies on nodes outside ``specs`` are ignored.

    Raises:
        ValueError: on a dependency cycle.
    """
    lifecycle = [s for s in specs if s.lifecycle]
    names = {s.name for s in lifecycle}
    pending = list(lifecycle)
    done: list[str] = []
    while pending:
        for spec in pending:
            if all(d in done or d not in names for d in spec.depends_on):
                done.append(spec.name)
                pending.remove(spec)
                break
        else:
            raise ValueError(f"dependency cycle among {[s.name for s in pending]}")
    return done


def dependency_params(specs: Iterable[NodeSpec]) -> list[str]:
    """``["vhp:isolator,arm", ...]`` for the lifecycle manager (nodes with dependencies only)."""
    return [f"{s.name}:{','.join(s.depends_on)}" for s in specs if s.lifecycle and s.depends_on]


def lifecycle_manager_spec(
    managed: Sequence[NodeSpec],
    *,
    use_sim_time: bool = True,
    heartbeat_period_s: float = 0.5,
    heartbeat_timeout_s: float = 3.0,
    autostart: bool = True,
    extra_params: Mapping[str, Any] | None = None,
    name: str = LIFECYCLE_MANAGER,
) -> NodeSpec:
    """The lifecycle manager's spec for the lifecycle nodes among ``managed``."""
    order = bringup_order(managed)
    params: dict[str, Any] = {"use_sim_time": use_sim_time}
    if order:
        params["managed_nodes"] = order
    deps = dependency_params(managed)
    if deps:
        params["dependencies"] = deps
    params.update(
        heartbeat_period_s=float(heartbeat_period_s),
        heartbeat_timeout_s=float(heartbeat_timeout_s),
        autostart=autostart,
    )
    params.update(extra_params or {})
    return NodeSpec(name, "aseptic_cell.nodes.lifecycle_manager", params, (), False, KIND_MANAGER)


def default_graph(
    config_dir: str | Path,
    speed: float,
    hardware: str = "sim",
    extra: Sequence[NodeSpec] = (),
    nodes: Iterable[str] | None = None,
    process_equipment: bool = False,
) -> list[NodeSpec]:
    """The cell's processes in start order: sim_world, devices, ``extra``, lifecycle_manager.

    Args:
        config_dir: configuration directory passed to every node (``config_dir`` parameter).
        speed: sim-time speed-up of sim_world (sim seconds per wall second); ``inf`` ("max")
            is passed as ``0.0`` = as fast as possible.
        hardware: ``sim`` (in-process models) or ``opcua``; device nodes only.
        extra: further specs (supervisor, hmi, ...) started after the devices and before the
            lifecycle manager; lifecycle ones among them are managed too.
        nodes: keep only these node names (tests); dependencies on dropped nodes are dropped
            and the lifecycle manager's parameters follow the subset.
        process_equipment: also start the process-equipment process (the six nodes of
            :mod:`aseptic_cell.devices.process_node` in one process; issue 14 item 1); off unless
            asked (``cellctl run`` asks when ``config/cell.yaml`` enables it).

    Raises:
        ValueError: unknown names in ``nodes``, bad speed.
    """
    cfg = str(Path(config_dir))
    if speed != speed or speed < 0:
        raise ValueError(f"speed must be >= 0 or inf, got {speed!r}")
    sim_speed = 0.0 if math.isinf(speed) else float(speed)
    # hardware "sim": sim_world is the physical world and publishes /clock (sim time).
    # hardware "opcua": the devices are OPC UA servers (real controllers, or `cellctl emulate`
    # with its own clock): no sim_world, every node on wall time.
    sim = hardware == "sim"
    specs: list[NodeSpec] = []
    if sim:
        specs.append(NodeSpec(SIM_WORLD, "aseptic_cell.nodes.sim_world",
                              {"config_dir": cfg, "speed": sim_speed, "clock_source": "own"},
                              (), False, KIND_SIM))
    for name, module, deps in _DEVICES:
        params = {"use_sim_time": sim, "config_dir": cfg, "hardware": hardware}
        specs.append(NodeSpec(name, module, params, deps, True, KIND_DEVICE))
    if process_equipment:
        specs.append(process_equipment_spec(cfg, hardware))
    specs.extend(extra)

    if nodes is not None:
        wanted = list(nodes)
        known = {s.name for s in specs} | {LIFECYCLE_MANAGER}
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise ValueError(f"unknown node(s) {unknown}; known: {sorted(known)}")
        kept = {n for n in wanted}
        specs = [
            replace(s, depends_on=tuple(d for d in s.depends_on if d in kept))
            for s in specs
            if s.name in kept
        ]
        if LIFECYCLE_MANAGER not in kept:
            return _supervisor_sees_equipment(specs)
    specs = _supervisor_sees_equipment(specs)
    specs.append(lifecycle_manager_spec([*specs, *process_equipment_nodes(specs)], use_sim_time=sim))
    return specs


PROCESS_EQUIPMENT = "process_equipment"
PROCESS_EQUIPMENT_KINDS = ("incubator", "welder", "sealer", "centrifuge", "counter", "scanner")


def _supervisor_sees_equipment(specs: list[NodeSpec]) -> list[NodeSpec]:
    """The supervisor watches and commands every device the graph hosts: its ``process_equipment``
    parameter is set when the process-equipment process is in the graph (issue 14)."""
    if not any(s.name == PROCESS_EQUIPMENT for s in specs):
        return specs
    return [replace(s, params={**s.params, "process_equipment": True}) if s.name == "supervisor" else s
            for s in specs]


def process_equipment_spec(config_dir: str, hardware: str = "sim") -> NodeSpec:
    """The one process that hosts the six process-equipment lifecycle nodes (named after their
    kinds: the ``__node`` remap would rename all of them, so its arguments carry parameters only)."""
    argv = ("--ros-args", "-p", f"config_dir:={param_to_yaml(config_dir)}",
            "-p", f"use_sim_time:={param_to_yaml(hardware == 'sim')}", "-p", f"hardware:={param_to_yaml(hardware)}")
    return NodeSpec(PROCESS_EQUIPMENT, "aseptic_cell.devices.process_node", {}, ("isolator",), False, KIND_DEVICE,
                    argv=argv)


def process_equipment_nodes(specs: Iterable[NodeSpec]) -> list[NodeSpec]:
    """The lifecycle nodes inside the process-equipment process, for the lifecycle manager's
    parameters (managed like the other devices; they depend on the isolator)."""
    names = {s.name for s in specs}
    if PROCESS_EQUIPMENT not in names:
        return []
    deps = ("isolator",) if "isolator" in names else ()
    return [NodeSpec(k, "", {}, deps, True, KIND_DEVICE) for k in PROCESS_EQUIPMENT_KINDS]


def emulator_spec(config_dir: str | Path, speed: float | None = None) -> NodeSpec:
    """``cellctl emulate`` as a process: the emulated hardware (SimCell behind one OPC UA server
    per device, its own clock) for ``hardware: opcua`` when no real controllers are attached."""
    argv = ["--config-dir", str(Path(config_dir))]
    if speed is not None and math.isfinite(speed) and speed > 0:
        argv += ["--speed", repr(float(speed))]
    return NodeSpec("emulator", "aseptic_cell.opcua.emulator", {}, (), False, KIND_SIM, argv=tuple(argv))


def graph_by_name(specs: Iterable[NodeSpec]) -> dict[str, NodeSpec]:
    return {s.name: s for s in specs}


def service_specs(config_dir: str | Path, *, record_dir: str = "", supervisor: bool = True, hmi: bool = True,
                  opcua_server: bool = True) -> list[NodeSpec]:
    """The cell's service processes for ``cellctl run`` (``extra=`` of :func:`default_graph`):
    the supervisor (batch executive, interlock engine, record), the operator HMI and the OPC UA
    cell server. The HMI and the cell server only observe and forward commands: if one dies,
    supervision is unaffected (ARCHITECTURE rule 4)."""
    cfg = str(Path(config_dir))
    specs: list[NodeSpec] = []
    if supervisor:
        from .supervisor_node import supervisor_spec

        specs.append(supervisor_spec(cfg, record_dir))
    if hmi:
        specs.append(NodeSpec("hmi", "aseptic_cell.nodes.hmi_node", {"config_dir": cfg}, (), False, KIND_SERVICE))
    if opcua_server:
        specs.append(NodeSpec("opcua_server", "aseptic_cell.nodes.opcua_server_node", {"config_dir": cfg}, (),
                              False, KIND_SERVICE))
    return specs
