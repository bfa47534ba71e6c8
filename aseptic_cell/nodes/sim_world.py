"""``sim_world``: the simulated physical world of the cell.

Owns one :class:`aseptic_cell.sim.cell.SimCell`, publishes ``/clock`` and steps the device
models on sim time at a configurable speed-up (``speed`` parameter; ``0`` = as fast as
possible). For each device it publishes ``/sim/<id>/readings`` (JSON, what the device's
controller reports) and serves ``/sim/<id>/command`` (cell_interfaces/DeviceCommand); faults
for tests and scenarios are injected through ``/sim/fault``.

Parameters: ``config_dir``, ``speed`` (sim s per wall s; 0 = max), ``step_s`` (sim step;
default from cell.yaml), ``publish_period_s`` (wall), ``clock_period_s`` (wall), ``paused``
(bool). ``speed`` and ``paused`` may be changed while running (``/sim_world/set_parameters``,
e.g. ``CellClient.set_sim_speed``): scenario runs slow the world down around their events.

``clock_source``: ``own`` (default: sim_world owns sim time and publishes ``/clock``) or ``ros``
(another process owns ``/clock`` -- Gazebo when the arm is ``hardware: gazebo``, whose bridge
publishes it; sim_world then publishes no clock and steps the device models up to the latest
``/clock`` time it received, so every device runs on the same ROS time as the physics arm;
``speed`` and ``paused`` are then the clock owner's and are refused here).

**Restart** (issue 12): a simulator that was killed is the simulated plant lost; a real plant does
not go back in time. With ``clock_source: own``, a starting sim_world first listens on
``/diagnostics`` (every device node publishes there on a wall timer, stamped with its ROS time =
the last ``/clock`` it received): when nodes of a running graph are there, the new world's clock
starts at the latest stamp it hears (never before the time the graph last saw), so signals and
stamps never go backwards; in a fresh graph (no publisher within ``resume_discovery_s``, default
3 s, or publishers silent for 1.5 s: device nodes publish only once configured) it starts at 0.
The world itself is new (glove tests, cycles, loads as at power-on).
"""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
import time
from typing import Any

log = logging.getLogger("sim_world")


class SimWorld:
    """The ROS adapter around SimCell (created inside an initialised rclpy context)."""

    def __init__(self, node: Any, cell: Any, *, speed: float, step_s: float,
                 publish_period_s: float, clock_period_s: float, follow_clock: bool = False) -> None:
        from cell_interfaces.srv import DeviceCommand
        from rosgraph_msgs.msg import Clock
        from std_msgs.msg import String

        self.node = node
        self.cell = cell
        self.speed = speed
        self.step_s = step_s
        self.publish_period_s = publish_period_s
        self.clock_period_s = clock_period_s
        self.paused = False
        self.follow_clock = follow_clock
        self.clock_target: float | None = None  # follow_clock: the latest /clock time received
        self.clock_messages = 0
        if follow_clock:
            self._clock_pub = None
            node.create_subscription(Clock, "/clock", self._on_clock, 10)
        else:
            self._clock_pub = node.create_publisher(Clock, "/clock", 10)
        self._clock_msg = Clock
        self._string = String
        self._pubs = {d: node.create_publisher(String, f"/sim/{d}/readings", 10) for d in cell.models}
        for d in cell.models:
            node.create_service(DeviceCommand, f"/sim/{d}/command",
                                lambda req, resp, dev=d: self._on_command(dev, req, resp))
        node.create_service(DeviceCommand, "/sim/fault", self._on_fault)
        self._wall0 = time.monotonic()
        self._sim0 = cell.now()
        self._last_pub = -math.inf
        self._last_clock = -math.inf
        self.steps = 0

    # ------------------------------------------------------------------ services
    def _on_command(self, device_id: str, req: Any, resp: Any) -> Any:
        from ..devices.commands import InvalidArguments
        from ..sim.common import CommandRefused, InvalidCommand

        try:
            args = json.loads(req.args_json) if req.args_json else {}
            if not isinstance(args, dict):
                raise InvalidArguments("args_json must be a JSON object")
            payload = self.cell.command(device_id, req.command, args)
            resp.accepted, resp.code, resp.reason = True, "OK", ""
            resp.payload_json = json.dumps(payload)
        except CommandRefused as exc:
            resp.accepted, resp.code, resp.reason = False, exc.code, exc.reason
        except (InvalidArguments, InvalidCommand, ValueError, TypeError) as exc:
            resp.accepted, resp.code, resp.reason = False, "INVALID", str(exc)
        if not resp.payload_json:
            resp.payload_json = "{}"
        self._publish_readings(force=True)
        return resp

    def _on_fault(self, req: Any, resp: Any) -> Any:
        """command = inject | clear; args_json = {"fault": name, ...params}."""
        try:
            args = json.loads(req.args_json) if req.args_json else {}
            fault = args.pop("fault", None)
            if req.command == "inject":
                if not fault:
                    raise ValueError("inject needs a 'fault' name")
                self.cell.inject_fault(req.device_id, fault, **args)
            elif req.command == "clear":
                self.cell.clear_fault(req.device_id, fault)
            else:
                raise ValueError(f"unknown fault command {req.command!r} (inject | clear)")
            resp.accepted, resp.code, resp.reason = True, "OK", ""
            log.warning("fault %s %s on %s %s", req.command, fault, req.device_id, args)
        except Exception as exc:  # bad input: a precise refusal, nothing changed
            resp.accepted, resp.code, resp.reason = False, "INVALID", str(exc)
        resp.payload_json = "{}"
        return resp

    # ------------------------------------------------------------------ time
    def _on_clock(self, msg: Any) -> None:
        t = msg.clock.sec + msg.clock.nanosec * 1e-9
        self.clock_messages += 1
        if self.clock_target is None or t > self.clock_target:  # ROS time never steps back here
            self.clock_target = t

    def set_speed(self, speed: float) -> None:
        """New speed-up from now on (re-anchored: no catch-up burst, no jump back)."""
        self._wall0, self._sim0 = time.monotonic(), self.cell.now()
        self.speed = speed

    def set_paused(self, paused: bool) -> None:
        if not paused and self.paused:
            self._wall0, self._sim0 = time.monotonic(), self.cell.now()
        self.paused = paused

    def _publish_readings(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_pub < self.publish_period_s:
            return
        self._last_pub = now
        for d, pub in self._pubs.items():
            pub.publish(self._string(data=json.dumps(self.cell.readings(d))))

    def _publish_clock(self, force: bool = False) -> None:
        if self._clock_pub is None:  # follow_clock: the clock's owner publishes it
            return
        now = time.monotonic()
        if not force and now - self._last_clock < self.clock_period_s:
            return
        self._last_clock = now
        t = self.cell.now()
        msg = self._clock_msg()
        msg.clock.sec = int(t)
        msg.clock.nanosec = int(round((t - int(t)) * 1e9)) % 1_000_000_000
        self._clock_pub.publish(msg)

    def advance(self, max_wall_s: float = 0.02) -> None:
        """Step the models towards the sim time the speed-up asks for (bounded wall time); with
        ``follow_clock``, towards the latest ``/clock`` time (catching up over several calls)."""
        if self.follow_clock:
            wall_end = time.monotonic() + max_wall_s
            target = self.clock_target
            while target is not None and self.cell.now() + self.step_s <= target + 1e-9 \
                    and time.monotonic() < wall_end:
                self.cell.step(self.step_s)
                self.steps += 1
            if target is not None and 0.0 < target - self.cell.now() < self.step_s:
                self.cell.step(target - self.cell.now())  # land on the clock's time
                self.steps += 1
            self._publish_readings()
            return
        if self.paused:
            self._publish_clock()
            self._publish_readings()
            return
        wall_end = time.monotonic() + max_wall_s
        if self.speed > 0:
            target = self._sim0 + (time.monotonic() - self._wall0) * self.speed
            while self.cell.now() + self.step_s <= target and time.monotonic() < wall_end:
                self.cell.step(self.step_s)
                self.steps += 1
            if self.cell.now() + self.step_s <= target and time.monotonic() >= wall_end:
                # falling behind: re-anchor so we do not try to catch up in a burst
                self._wall0, self._sim0 = time.monotonic(), self.cell.now()
        else:
            while time.monotonic() < wall_end:
                self.cell.step(self.step_s)
                self.steps += 1
        self._publish_clock()
        self._publish_readings()


def _on_set_parameters(world: SimWorld, params: list[Any]) -> Any:
    """Runtime ``speed`` (finite, >= 0; 0 = max) and ``paused``; anything else is read-only."""
    from rcl_interfaces.msg import SetParametersResult

    speed: float | None = None
    paused: bool | None = None
    for p in params:
        if world.follow_clock and p.name in ("speed", "paused"):
            return SetParametersResult(successful=False, reason=f"{p.name}: sim_world follows /clock "
                                       "(clock_source ros); the clock's owner (Gazebo) sets the pace")
        if p.name == "speed":
            v = p.value
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                return SetParametersResult(successful=False, reason=f"speed must be a finite number >= 0 "
                                                                    f"(0 = max), got {v!r}")
            speed = float(v)
        elif p.name == "paused":
            if not isinstance(p.value, bool):
                return SetParametersResult(successful=False, reason=f"paused must be a bool, got {p.value!r}")
            paused = p.value
        else:
            return SetParametersResult(successful=False, reason=f"{p.name} cannot change while running")
    if speed is not None:
        world.set_speed(speed)
        log.info("speed now %s", "max" if speed == 0 else f"{speed:g}x")
    if paused is not None:
        world.set_paused(paused)
    return SetParametersResult(successful=True)


def resume_time(node: Any, *, discovery_s: float = 3.0, message_s: float = 1.5, settle_s: float = 0.3) -> float:
    """The sim time a (re)starting world resumes from: the latest ``/diagnostics`` stamp of the
    running graph's nodes (their ROS time stopped at the last ``/clock`` of the lost world), or 0
    in a fresh graph: no publisher there within ``discovery_s``, or publishers that stay silent for
    ``message_s`` (device nodes of a fresh graph publish only once configured, which needs this
    world's readings)."""
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor

    stamps: list[float] = []
    sub = node.create_subscription(
        DiagnosticArray, "/diagnostics",
        lambda m: stamps.append(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9), 50)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    t0 = time.monotonic()
    first: float | None = None  # first message
    found: float | None = None  # first publisher discovered
    try:
        while True:
            executor.spin_once(timeout_sec=0.02)
            now = time.monotonic()
            if stamps and first is None:
                first = now
            if first is not None:
                if now - first >= settle_s:
                    break
                continue
            if found is None and node.count_publishers("/diagnostics") > 0:
                found = now
            if found is None and now - t0 >= discovery_s:
                break  # nobody there: a fresh graph
            if found is not None and now - found >= message_s:
                break  # nodes that do not publish yet: a fresh graph
    finally:
        executor.remove_node(node)
        executor.shutdown()
        node.destroy_subscription(sub)
    return max(stamps, default=0.0)


def main(argv: list[str] | None = None) -> int:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.signals import SignalHandlerOptions

    from ..config import ConfigError, default_config_dir, load_config
    from ..sim.cell import SimCell
    from ..sim.clock import SimClock

    logging.basicConfig(level=logging.INFO, format="[sim_world] %(levelname)s %(message)s")
    args = sys.argv if argv is None else argv
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = {"flag": False}

    def _stop(signum: int, _frame: Any) -> None:
        stop["flag"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    node = rclpy.create_node("sim_world")
    try:
        config_dir = node.declare_parameter("config_dir", "").value or str(default_config_dir())
        speed = float(node.declare_parameter("speed", -1.0).value)
        step_s = float(node.declare_parameter("step_s", 0.0).value)
        publish_period_s = float(node.declare_parameter("publish_period_s", 0.05).value)
        clock_period_s = float(node.declare_parameter("clock_period_s", 0.01).value)
        clock_source = str(node.declare_parameter("clock_source", "own").value)
        resume_discovery_s = float(node.declare_parameter("resume_discovery_s", 3.0).value)
        if clock_source not in ("own", "ros"):
            node.get_logger().error(f"clock_source must be own or ros, got {clock_source!r}")
            return 2
        try:
            cfg = load_config(config_dir)
        except ConfigError as exc:
            node.get_logger().error(f"invalid configuration in {config_dir}:\n{exc}")
            return 2
        if speed < 0:
            speed = cfg.layout.sim.speedup
        if not math.isfinite(speed):
            node.get_logger().error(f"speed must be finite (0 = max), got {speed}")
            return 2
        step_s = step_s if step_s > 0 else cfg.layout.sim.step_s
        start = 0.0
        if clock_source == "own":
            start = resume_time(node, discovery_s=resume_discovery_s)
            if start > 0:
                node.get_logger().warning(f"the graph last saw sim time {start:.3f} s: the new world starts "
                                          "there (a restarted simulator never goes back in time)")
        cell = SimCell(cfg, clock=SimClock(start=start))
        world = SimWorld(node, cell, speed=speed, step_s=step_s,
                         publish_period_s=publish_period_s, clock_period_s=clock_period_s,
                         follow_clock=clock_source == "ros")
        pace = "following /clock" if world.follow_clock else f"speed {'max' if speed == 0 else f'{speed:g}x'}"
        node.get_logger().info(
            f"simulating {', '.join(f'{d} ({k})' for d, k in cell.kinds.items())}; {pace}, step {step_s:g} s"
        )
        if not world.follow_clock:
            world.set_paused(bool(node.declare_parameter("paused", False).value))
        node.set_parameters([Parameter("speed", value=float(speed))])  # the effective value
        node.add_on_set_parameters_callback(lambda ps: _on_set_parameters(world, ps))
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not stop["flag"] and rclpy.ok():
            world.advance()
            busy = world.speed == 0 and not world.paused and not world.follow_clock
            executor.spin_once(timeout_sec=0.0 if busy else 0.002)
        executor.shutdown()
        return 0
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    sys.exit(main())
