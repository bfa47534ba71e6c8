"""How the supervisor talks to the devices: the :class:`CellPort` protocol and the in-process
implementation used by unit tests, the stateful test, the soak and the benchmark.

Behaviours never block: :meth:`CellPort.send` returns a :class:`Handle` at once, and the
behaviour polls ``handle.done`` in ``update()``. The latest device signals (the names of
:data:`aseptic_cell.interlocks.KNOWN_SIGNALS`) are pushed into the interlock engine's
:class:`~aseptic_cell.interlocks.SignalTable` by :meth:`CellPort.refresh`.

:class:`InProcessCell` wraps a :class:`~aseptic_cell.sim.cell.SimCell` behind the same
command path as the device nodes (``aseptic_cell/devices/node.py``): catalogue
validation, latch after ``safe_state`` (process commands refused until an explicit
``recover``), the device layer's own hard interlocks on the readings
(:mod:`aseptic_cell.devices.hard_interlocks`), and for the arm, planning and the collision
check of every motion against the keep-out zones the live cell state activates.
Time is the SimClock (ARCHITECTURE rule 5).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..config import CellConfig
from ..devices import pipeline
from ..devices.arm.motion import ArmMotion
from ..devices.codes import RefusalCode
from ..devices.commands import InvalidArguments
from ..devices.signals import SignalMemo
from ..interlocks import SignalTable
from ..results import CommandResult

NODES = ("isolator", "vhp", "autoclave", "arm")


@dataclass
class Handle:
    """A device command in flight. ``done`` turns True when the device answered."""

    node: str
    command: str
    args: dict[str, Any]
    t_sent: float
    done: bool = False
    accepted: bool = False
    code: str = ""
    reason: str = ""
    payload: dict[str, Any] = field(default_factory=dict)
    cancelled: bool = False
    t_done_wall: float = 0.0
    """monotonic wall time of the answer (signals received later reflect the command)."""

    def finish(self, accepted: bool, code: str, reason: str, payload: Mapping[str, Any] | None = None) -> None:
        import time

        self.t_done_wall = time.monotonic()
        self.done, self.accepted, self.code, self.reason = True, accepted, code, reason
        self.payload = dict(payload or {})


class CellPort(Protocol):
    """What the supervisor core needs from the cell (in-process sim, or the ROS graph)."""

    @property
    def node_devices(self) -> Mapping[str, str]:
        """node name -> device id (``isolator`` -> ``ISO1``)."""

    def now(self) -> float:
        """Time in the signals' time base (sim time)."""

    def send(self, node: str, command: str, args: Mapping[str, Any] | None = None, *,
             user: str = "supervisor", reason: str = "") -> Handle:
        """Send a catalogue command; never blocks. The handle completes later (or at once)."""

    def cancel(self, handle: Handle) -> None:
        """Forget a pending command (its effect, if any, stays; the caller makes things safe)."""

    def recover(self, node: str, *, user: str, reason: str) -> Handle:
        """Explicit operator recovery of a latched device node."""

    def refresh(self, table: SignalTable) -> None:
        """Push the latest signals of every device into ``table`` (lost devices marked)."""

    def latched(self, node: str) -> str | None:
        """Why the node is latched in its safe state, or None."""

    def drain_events(self) -> list[dict[str, Any]]:
        """Device events since the last call (command, refusal, latched, recovered, ...)."""


def door_box_ids(cfg: CellConfig) -> list[str]:
    """Door ids that have a swept-volume keep-out box in geometry.yaml (``door_closed:<id>``)."""
    out = []
    for b in cfg.geometry.boxes:
        kind, _, ref = b.active.partition(":")
        if kind == "door_closed" and ref not in out:
            out.append(ref)
    return out


def all_door_ids(cfg: CellConfig) -> list[str]:
    """Every door the robot rules name (hatch, autoclave, RTP alphas, equipment doors)."""
    doors = ["hatch_a", "hatch_b", "autoclave_load", "autoclave_unload",
             *(f"{r.id.lower()}_alpha" for r in cfg.layout.isolator.rtps)]
    return list(dict.fromkeys([*doors, *door_box_ids(cfg)]))


def clear_of_doors(scene: Any, q: Any, cfg: CellConfig) -> dict[str, bool]:
    """``arm.clear_of.<door>`` for joint positions ``q``: False if the arm occupies the door's
    swept-volume box; doors without a box in the isolator are outside the arm's reach (True)."""
    if q is None or len(q) != 6 or any(not isinstance(x, float) or not math.isfinite(x) for x in q):
        return {}
    boxes = set(door_box_ids(cfg))
    qa = np.array([q], dtype=float)
    return {d: (bool(scene.check_configs(qa, conditions={f"door_closed:{d}"}, refine=True)[0]) if d in boxes
                else True) for d in all_door_ids(cfg)}


_SCENES: dict[int, tuple[Any, Any]] = {}


def _shared_scene(cfg: CellConfig) -> Any:
    """One collision scene per configuration object (read-only: conditions are passed per call)."""
    from ..motion import Scene

    hit = _SCENES.get(id(cfg))
    if hit is None or hit[0] is not cfg:
        hit = (cfg, Scene.from_config(cfg.arm, cfg.geometry))
        if len(_SCENES) > 8:
            _SCENES.clear()
        _SCENES[id(cfg)] = hit
    return hit[1]


class InProcessCell:
    """The simulated cell in-process, behind the device nodes' command path.

    Args:
        cfg: loaded :class:`~aseptic_cell.config.CellConfig`.
        sim: an existing :class:`~aseptic_cell.sim.cell.SimCell` (a new one by default).
        check_mode: motion check mode for arm moves (``certified`` like the arm node;
            ``samples`` is faster for the stateful test).
        plan_dt_s: sample period of planned arm moves (the arm node's ``plan_dt_s``).
    """

    def __init__(self, cfg: CellConfig, sim: Any = None, *, check_mode: str = "certified",
                 plan_dt_s: float = 0.02) -> None:
        from ..sim.cell import SimCell

        self.cfg = cfg
        self.sim = sim if sim is not None else SimCell(cfg)
        lay = cfg.layout
        self.node_devices: dict[str, str] = {"isolator": lay.isolator.id, "vhp": lay.vhp_unit.id,
                             "autoclave": lay.autoclave.id, "arm": lay.robot.id}
        if lay.process_equipment.enabled:  # issue 14 item 1: node = kind
            from ..devices.process_equipment import PROCESS_KINDS

            self.node_devices.update({k: lay.process_equipment.unit(k).id for k in PROCESS_KINDS})
        self.kinds = {n: n for n in self.node_devices}
        self._latched: dict[str, str | None] = {n: None for n in self.node_devices}
        self.comm_lost: set[str] = set()
        """Nodes whose communication is (simulated as) lost: signals unknown, commands refused."""
        self.events: list[dict[str, Any]] = []
        self.scene = _shared_scene(cfg)
        self.motion = ArmMotion(cfg, self.scene, check_mode=check_mode, plan_dt_s=plan_dt_s)
        self._hosts = {n: _InProcessDevice(self, n) for n in self.node_devices}
        self._joint_names = [j.name for j in cfg.arm.joints]
        self._clear_key: tuple[Any, ...] = ()
        self._clear: dict[str, bool] = {}
        self._cache_t = -math.inf
        self._cache: dict[str, dict[str, Any]] = {}
        self._arm_rest: dict[str, Any] | None = None
        self._memo = {n: SignalMemo(n, cfg) for n in self.node_devices}
        """Per node: readings → signals, parsed again only when a reading changed (issue 14)."""
        self.listeners: list[Callable[[str, str, dict[str, Any], bool], None]] = []
        """Called as ``listener(node, command, args, accepted)`` after every command (tests)."""

    # ------------------------------------------------------------------ time
    def now(self) -> float:
        return float(self.sim.now())

    def step(self, dt: float) -> None:
        self.sim.step(dt)

    # ------------------------------------------------------------------ observation
    def sensors(self, node: str) -> dict[str, Any]:
        """The device's readings (sensors + ``t``), cached per sim instant."""
        t = self.sim.now()
        if t != self._cache_t:
            self._cache, self._cache_t = {}, t
        r = self._cache.get(node)
        if r is None:
            if node == "arm":
                r = self._arm_sensors()
            else:
                r = dict(self.sim.models[self.node_devices[node]].sensors())
            r["t"] = t
            self._cache[node] = r
        return r

    def _arm_sensors(self) -> dict[str, Any]:
        # a resting arm reports the same values: reuse them (forward kinematics is the cost);
        # any command or fault invalidates the cache
        arm = self.sim.arm
        if arm.moving or self._arm_rest is None:
            r = dict(arm.sensors())
            self._arm_rest = None if arm.moving else r
            return dict(r)
        return dict(self._arm_rest)

    def invalidate(self) -> None:
        self._cache_t = -math.inf
        self._arm_rest = None

    def signals(self, node: str) -> dict[str, Any]:
        """The node's signals now (a fresh dict; :meth:`refresh` uses the memo's own)."""
        return dict(self._memo[node](self.sensors(node)))

    def refresh(self, table: SignalTable) -> None:
        t = self.sim.now()
        for node, dev in self.node_devices.items():
            if node in self.comm_lost:
                table.mark_comm_lost(dev)
                continue
            table.mark_comm_ok(dev)
            # every signal re-stamped at t (a value only re-validated when it changed)
            table.update_from(self._memo[node](self.sensors(node)), t, dev)
        if "arm" not in self.comm_lost and "isolator" not in self.comm_lost:
            for door, clear in self.arm_clear_of().items():
                table.update(f"arm.clear_of.{door}", clear, t, self.node_devices["arm"])

    def arm_clear_of(self) -> dict[str, bool]:
        """Is the arm outside each door's swept volume? (signal ``arm.clear_of.<door>``)."""
        arm = self.sensors("arm")
        q = [arm.get(f"joint.{n}.position_rad") for n in self._joint_names]
        key = tuple(q)
        if key != self._clear_key:
            self._clear_key, self._clear = key, clear_of_doors(self.scene, q, self.cfg)
        return self._clear

    def latched(self, node: str) -> str | None:
        return self._latched[node]

    def updated_since(self, node: str, t_wall: float) -> bool:
        """Signals refreshed after ``t_wall``? (in-process: always, commands are synchronous)."""
        return True

    def drain_events(self) -> list[dict[str, Any]]:
        out, self.events = self.events, []
        return out

    # ------------------------------------------------------------------ commands
    def send(self, node: str, command: str, args: Mapping[str, Any] | None = None, *,
             user: str = "supervisor", reason: str = "") -> Handle:
        h = Handle(node, command, dict(args or {}), self.sim.now())
        accepted, code, why, payload = self.execute(node, command, dict(args or {}), user=user, reason=reason)
        h.finish(accepted, code, why, payload)
        return h

    def cancel(self, handle: Handle) -> None:
        handle.cancelled = True

    def execute(self, node: str, name: str, args: dict[str, Any], *, user: str = "", reason: str = ""
                ) -> tuple[bool, str, str, dict[str, Any]]:
        """The one command path (:func:`aseptic_cell.devices.pipeline.execute`), in-process."""
        host = self._hosts.get(node)
        if host is None:
            return False, RefusalCode.INVALID, f"unknown device node {node!r}; known: {list(self._hosts)}", {}
        out = pipeline.execute(host, name, args, motion=self.motion if node == "arm" else None,
                               user=user, reason=reason)
        self.invalidate()
        for listener in tuple(self.listeners):
            listener(node, name, args, out.accepted)
        return out.accepted, out.code, out.reason, dict(out.payload)

    def _latch(self, node: str, why: str) -> None:
        if not self._latched[node]:
            self._latched[node] = why
            self.events.append({"event": "latched", "node": node, "device": self.node_devices[node],
                                "t": self.sim.now(), "reason": why})

    def recover(self, node: str, *, user: str, reason: str) -> Handle:
        h = Handle(node, "recover", {}, self.sim.now())
        if node not in self._latched:
            h.finish(False, "INVALID", f"unknown node {node!r}")
        elif not user.strip() or not reason.strip():
            h.finish(False, "INVALID", "recovery needs the operator's user id and a reason")
        elif node in self.comm_lost:
            h.finish(False, "COMM_LOST", f"{self.node_devices[node]}: no fresh data; cannot recover")
        else:
            was = self._latched[node]
            self._latched[node] = None
            self.events.append({"event": "recovered", "node": node, "device": self.node_devices[node],
                                "t": self.sim.now(), "user": user, "reason": reason, "was": was or ""})
            h.finish(True, "OK", f"recovered (was: {was or 'not latched'})")
        return h

    # ------------------------------------------------------------------ faults (tests, scenarios)
    def inject_fault(self, device_id: str, fault: str, **params: Any) -> None:
        if fault == "comm_loss":
            self.comm_lost.add(self._node_of(device_id))
            return
        self.sim.inject_fault(device_id, fault, **params)
        self.invalidate()

    def clear_fault(self, device_id: str, fault: str | None = None) -> None:
        if fault in (None, "comm_loss"):
            self.comm_lost.discard(self._node_of(device_id))
            if fault == "comm_loss":
                return
        self.sim.clear_fault(device_id, fault)
        self.invalidate()

    def _node_of(self, device_id: str) -> str:
        for n, d in self.node_devices.items():
            if device_id in (n, d):
                return n
        raise InvalidArguments(f"unknown device {device_id!r}; known: {sorted(self.node_devices.values())}")


class _InProcessDevice:
    """One simulated device of the in-process cell as a host of the command path."""

    def __init__(self, cell: InProcessCell, node: str) -> None:
        self.cell = cell
        self.node = node
        self.kind = cell.kinds[node]
        self.device_id = cell.node_devices[node]
        self.cfg = cell.cfg

    def lifecycle(self) -> str:
        return "active"

    def latched_reason(self) -> str | None:
        return self.cell.latched(self.node)

    def latch(self, why: str) -> None:
        self.cell._latch(self.node, why)

    def fresh_values(self) -> Mapping[str, Any] | None:
        return None if self.node in self.cell.comm_lost else self.cell.sensors(self.node)

    def cell_signals(self) -> Mapping[str, Any] | None:
        if "isolator" in self.cell.comm_lost:
            return None
        out = dict(self.cell.signals("isolator"))
        if "autoclave" not in self.cell.comm_lost:
            out.update(self.cell.signals("autoclave"))
        return out

    def send(self, name: str, typed: dict[str, Any], *, user: str, reason: str,
             timeout_s: float) -> CommandResult:
        from ..sim.common import CommandRefused, InvalidCommand

        if self.node in self.cell.comm_lost:
            return CommandResult.refuse(RefusalCode.COMM_LOST, f"no connection to {self.device_id}")
        try:
            payload = self.cell.sim.command(self.device_id, name, typed)
        except CommandRefused as exc:
            return CommandResult.refuse(exc.code, exc.reason)
        except (InvalidCommand, InvalidArguments) as exc:
            return CommandResult.refuse(RefusalCode.INVALID, str(exc))
        return CommandResult(True, "OK", "", payload or {})

    def report(self, name: str, args: Mapping[str, Any], user: str, reason: str,
               result: CommandResult) -> None:
        self.cell.events.append({"event": "command" if result.accepted else "refusal", "node": self.node,
                                 "device": self.device_id, "t": self.cell.sim.now(), "command": name,
                                 "args": pipeline.loggable_args(args), "user": user, "reason": reason,
                                 "code": str(result.code), "detail": result.reason})
