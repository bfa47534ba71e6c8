"""The simulated cell: every device model on one clock, physically coupled.

The isolator's air is gassed by the VHP unit (shared :class:`~.common.Atmosphere`); the VHP
unit sees the robot through ``robot_safe``; door events of the autoclave's clean side and the
RTP raise particle bursts in the isolator. ``SimCell`` is the "physical world" behind both
the ``hardware: sim`` backends (through the ``sim_world`` node) and the OPC UA emulators.

Commands arrive by name with arguments checked against the device command catalogue
(:mod:`aseptic_cell.devices.commands`) and are dispatched to the model's idempotent methods.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..devices.commands import InvalidArguments, validate
from .arm import ArmModel
from .autoclave import AutoclaveModel
from .clock import SimClock
from .common import CommandRefused, InvalidCommand
from .isolator import IsolatorModel
from .vhp import VHPUnitModel

PROCESS_KINDS = ("incubator", "welder", "sealer", "centrifuge", "counter", "scanner")


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (np.floating,)):
        return _jsonable(float(value))
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    return value


class SimCell:
    """All simulated devices of one cell.

    Args:
        cfg: the validated :class:`aseptic_cell.config.CellConfig`.
        clock: injected sim clock (a new :class:`SimClock` by default).
        arm_checker: optional motion check the simulated robot controller applies before
            any motion (``checker(q, dt, speed_class) -> result``).
    """

    def __init__(self, cfg: Any, clock: SimClock | None = None,
                 arm_checker: Callable[..., Any] | None = None) -> None:
        self.cfg = cfg
        self.clock = clock or SimClock()
        layout = cfg.layout
        self.isolator = IsolatorModel(layout.isolator, self.clock, seed=layout.sim.seed)
        self.arm = ArmModel(cfg.arm, self.clock, checker=arm_checker)
        self.vhp = VHPUnitModel(layout.vhp_unit, self.isolator, self.clock, robot_safe=self.arm.safe_for_vhp)
        self.autoclave = AutoclaveModel(layout.autoclave, self.clock, programs=cfg.autoclave_programs)
        self.kinds = {
            layout.isolator.id: "isolator",
            layout.vhp_unit.id: "vhp",
            layout.autoclave.id: "autoclave",
            layout.robot.id: "arm",
        }
        self.models: dict[str, Any] = {
            layout.isolator.id: self.isolator,
            layout.vhp_unit.id: self.vhp,
            layout.autoclave.id: self.autoclave,
            layout.robot.id: self.arm,
        }
        self._unload_open = False
        self.process: dict[str, Any] = {}
        """kind -> model of the process equipment (issue 14 item 1), when the cell has it"""
        pe = getattr(layout, "process_equipment", None)
        if pe is not None and pe.enabled:
            self._add_process_equipment(pe, layout.sim.seed)

    # ------------------------------------------------------------------ time
    def now(self) -> float:
        return self.clock.now()

    def step(self, dt: float) -> None:
        """Advance every device by ``dt`` sim seconds (clock first, then the models)."""
        if not math.isfinite(dt) or dt < 0:
            raise InvalidCommand(f"dt must be finite and >= 0, got {dt!r}")
        self.clock.advance(dt)
        self.isolator.step(dt)
        self.vhp.step(dt)
        self.autoclave.step(dt)
        self.arm.step(dt)
        for m in self.process.values():
            m.step(dt)
        unload_open = self.autoclave.doors["unload"].state.value == "OPEN"
        if unload_open != self._unload_open:
            self._unload_open = unload_open
            self.isolator.note_intervention("door", port="autoclave_unload")

    def run_for(self, duration_s: float, dt: float | None = None) -> None:
        step = dt or self.cfg.layout.sim.step_s
        end = self.clock.now() + duration_s
        while self.clock.now() < end - 1e-9:
            self.step(min(step, end - self.clock.now()))

    def run_until(self, predicate: Callable[[], bool], timeout_s: float, dt: float | None = None) -> bool:
        """Step until ``predicate()`` is true or ``timeout_s`` sim seconds pass; returns the predicate."""
        step = dt or self.cfg.layout.sim.step_s
        end = self.clock.now() + timeout_s
        while not predicate():
            if self.clock.now() >= end:
                return False
            self.step(step)
        return True

    # ------------------------------------------------------------------ observation
    def kind(self, device_id: str) -> str:
        try:
            return self.kinds[device_id]
        except KeyError:
            raise InvalidArguments(f"unknown device {device_id!r}; known: {sorted(self.kinds)}") from None

    def readings(self, device_id: str) -> dict[str, Any]:
        """What the device's controller reports: its sensors plus its status, JSON-ready."""
        model = self.models.get(device_id)
        if model is None:
            self.kind(device_id)  # raises InvalidCommand naming the known devices
            raise KeyError(device_id)
        out = dict(model.sensors())
        status = model.status()
        for k, v in status.items():
            out.setdefault(f"status.{k}", v)
        out["t"] = self.clock.now()
        return _jsonable(out)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {d: self.readings(d) for d in self.models}

    # ------------------------------------------------------------------ commands
    def command(self, device_id: str, name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """Execute a catalogue command on a device.

        Returns a command-specific payload (e.g. ``{"run_id": ...}``).

        Raises:
            InvalidArguments / InvalidCommand: malformed command; nothing changed.
            CommandRefused: the device's own interlock refused it; nothing changed.
        """
        kind = self.kind(device_id)
        a = validate(kind, name, args)
        if kind in self.process:
            return _jsonable(self.process[kind].execute(name, a))
        handler = getattr(self, f"_{kind}_{name}", None)
        if handler is not None:
            return handler(**a) or {}
        model = self.models[device_id]
        result = getattr(model, name)(**a)
        return {"result": _jsonable(result)} if result is not None else {}

    def inject_fault(self, device_id: str, fault: str, **params: Any) -> None:
        self.kind(device_id)
        self.models[device_id].faults.inject(fault, **params)

    def clear_fault(self, device_id: str, fault: str | None = None) -> None:
        self.kind(device_id)
        self.models[device_id].faults.clear(fault)

    def _add_process_equipment(self, pe: Any, seed: int) -> None:
        from .incubator import IncubatorModel
        from .process_equipment import CentrifugeModel, CounterModel, ScannerModel, SealerModel, WelderModel

        self.process = {
            "incubator": IncubatorModel(pe.incubator, self.clock),
            "welder": WelderModel(pe.welder, self.clock, seed=seed * 1000 + 11),
            "sealer": SealerModel(pe.sealer, self.clock, seed=seed * 1000 + 13),
            "centrifuge": CentrifugeModel(pe.centrifuge, self.clock, seed=seed * 1000 + 17),
            "counter": CounterModel(pe.counter, self.clock),
            "scanner": ScannerModel(pe.scanner, self.clock),
        }
        for kind, model in self.process.items():
            dev = pe.unit(kind).id
            self.kinds[dev] = kind
            self.models[dev] = model

    # ---- commands needing translation from catalogue arguments to model calls
    def _isolator_safe_state(self, reason: str = "") -> dict[str, Any]:
        return {}  # the isolator holds its state: nothing is moved automatically

    def _vhp_start_cycle(self, cycle_id: str, operator: str, run_id: str | None = None) -> dict[str, Any]:
        try:
            recipe = self.cfg.vhp_cycles.get(cycle_id)
        except KeyError as exc:
            raise InvalidCommand(str(exc.args[0])) from None
        return {"run_id": self.vhp.start_cycle(recipe, operator, run_id)}

    def _vhp_get_result(self) -> dict[str, Any]:
        r = self.vhp.last_result
        return {"result": _jsonable(r.to_dict()) if r is not None else None}

    def _vhp_safe_state(self, reason: str = "") -> dict[str, Any]:
        if self.vhp.sensors().get("cycle_active"):
            self.vhp.abort("system", reason or "safe state requested")
        return {}

    def _autoclave_start_program(self, program_id: str, load_id: str | None = None,
                                 operator: str = "system", run_id: str | None = None) -> dict[str, Any]:
        try:
            program = self.cfg.autoclave_programs.get(program_id)
        except KeyError as exc:
            raise InvalidCommand(str(exc.args[0])) from None
        load = load_id or ("EMPTY-CHAMBER" if program.kind != "sterilise" else "")
        rid = self.autoclave.start_program(program, load_id=load, operator=operator, run_id=run_id)
        return {"run_id": rid}

    def _autoclave_get_result(self) -> dict[str, Any]:
        r = self.autoclave.last_result
        return {"result": _jsonable(r.to_dict()) if r is not None else None}

    def _autoclave_safe_state(self, reason: str = "") -> dict[str, Any]:
        if self.autoclave.cycle_running:
            self.autoclave.abort("system", reason or "safe state requested")
        return {}

    def _arm_execute_trajectory(self, q: list[list[float]], dt: float,
                                speed_class: str = "transit") -> dict[str, Any]:
        arr = np.asarray(q, dtype=np.float64)
        self.arm.execute_trajectory(arr, dt, speed_class)
        return {}

    def _arm_safe_state(self, reason: str = "") -> dict[str, Any]:
        self.arm.protective_stop(reason or "safe state requested")
        return {}


__all__ = ["SimCell", "CommandRefused", "InvalidCommand", "InvalidArguments"]
