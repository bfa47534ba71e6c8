"""The HMI's ROS 2 side: its own rclpy Context and executor on a background thread.

Subscribes (observation only) to the device states, ``/cell/events``, ``/cell/alarms`` and the
supervisor's topics; a wall timer builds one JSON-able snapshot at ``snapshot_rate_hz`` and
hands it to the :class:`~.hub.Hub` (which never blocks). Commands are service calls made from
the web server's worker threads; they wait on a future with a deadline, never on the
executor thread.

Topic QoS: state-like topics (latest value wins) are subscribed BEST_EFFORT/VOLATILE so they
match any publisher; events and alarm transitions RELIABLE/VOLATILE.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from typing import Any

from ..client import NEW_CLIENT_SETTLE_S
from .backend import CellUnavailable, CommandResult
from .config import HmiConfig
from .hub import Hub

log = logging.getLogger("aseptic_cell.hmi.ros")

DEVICE_STATES = {
    "isolator": "IsolatorState",
    "vhp": "VhpState",
    "autoclave": "AutoclaveState",
    "arm": "ArmState",
}
TRENDS: dict[str, tuple[str, ...]] = {
    "isolator": ("dp_pa", "particles_0_5_per_m3", "particles_5_0_per_m3"),
    "vhp": ("h2o2_ppm", "rh_pct", "rs_pct", "temp_c"),
    "autoclave": ("chamber_t_c", "chamber_p_kpa", "load_probe_t_c", "f0_min"),
    "arm": ("tcp_speed_m_s",),
}
PROCESS_EQUIPMENT = ("incubator", "welder", "sealer", "centrifuge", "counter", "scanner")  # /cell/<kind>/signals
STALE_AFTER_S = 2.0  # a device state older than this (wall) is shown as stale / unknown
SUPERVISOR_TOPICS_STALE_S = 3.0


def plain(value: Any) -> Any:
    """ROS message -> JSON-able data; non-finite floats -> None (unknown)."""
    from aseptic_cell.nodes.rosutil import msg_to_dict

    return _finite(msg_to_dict(value))


def _finite(v: Any) -> Any:
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v


def _stamp(msg: Any) -> float:
    return msg.stamp.sec + msg.stamp.nanosec * 1e-9


def isa_priority(severity: int) -> str:
    """OPC UA severity (Alarm.priority) -> ISA-18.2 priority (bands of aseptic_cell.alarms.models)."""
    from aseptic_cell.alarms.models import SEVERITY_BANDS

    for name, (lo, hi) in SEVERITY_BANDS.items():
        if lo <= severity <= hi:
            return name
    return "low"


class RosBackend:
    """:class:`~.backend.CellBackend` over ROS 2."""

    def __init__(
        self,
        cfg: HmiConfig,
        *,
        domain_id: int | None = None,
        node_name: str | None = None,
        ros_args: Sequence[str] = (),
    ) -> None:
        import cell_interfaces.msg as cim
        from cell_interfaces.action import RunBatch
        from cell_interfaces.srv import AcknowledgeAlarm, BatchCommand, DeviceCommand, RecoverDevice, ShelveAlarm
        from rclpy.action import ActionClient
        from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy
        from std_msgs.msg import String

        from aseptic_cell.nodes.background import BackgroundRos

        self.cfg = cfg
        # every request to the supervisor is signed as the front end "hmi" (issue 12): the
        # supervisor refuses unsigned ones and checks the user and role itself
        from aseptic_cell.security import SecurityError, Signer

        try:
            self._signer: Signer | None = Signer("hmi")
        except SecurityError as exc:
            self._signer = None
            log.error("no hmi key: the supervisor will refuse every command (%s)", exc)
        self._ros = BackgroundRos(node_name or "hmi", domain_id=domain_id, thread_name="hmi-ros",
                                  args=["hmi", *ros_args])
        self._ctx = self._ros.context
        self.node = self._ros.node
        self._lock = threading.Lock()
        self._hub: Hub | None = None
        latest = QoSProfile(
            depth=1, reliability=QoSReliabilityPolicy.BEST_EFFORT, durability=QoSDurabilityPolicy.VOLATILE
        )
        reliable = QoSProfile(
            depth=100, reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.VOLATILE
        )
        latched = QoSProfile(
            depth=1, reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL
        )
        self._msgs: dict[str, tuple[float, Any]] = {}  # key -> (wall monotonic, plain data)
        self._events: deque[dict[str, Any]] = deque(maxlen=100)
        self._raw_alarms: dict[str, dict[str, Any]] = {}
        self._trends: dict[str, dict[str, Any]] = {
            u: {
                "t": deque(maxlen=cfg.trend_points),
                "series": {k: deque(maxlen=cfg.trend_points) for k in ks},
            }
            for u, ks in TRENDS.items()
        }
        self._pending_trend: dict[str, dict[str, Any]] = {}
        n = self.node
        for name, typ in DEVICE_STATES.items():
            n.create_subscription(
                getattr(cim, typ), f"/cell/{name}/state", functools.partial(self._on_device, name), latest
            )
        for kind in PROCESS_EQUIPMENT:  # process equipment tiles (issue 14 item 1): its signals JSON
            n.create_subscription(String, f"/cell/{kind}/signals", functools.partial(self._on_signals, kind), latest)
        n.create_subscription(
            cim.BatchStatus, "/cell/batch/status", lambda m: self._store("batch", m), latest
        )
        n.create_subscription(
            cim.InterlockStatusArray, "/cell/interlocks", lambda m: self._store("interlocks", m), latest
        )
        n.create_subscription(cim.TreeSnapshot, "/cell/tree", lambda m: self._store("tree", m), latest)
        # issue 14 item 7: the patient batches' view (JSON, aseptic_cell.supervisor.batch_view)
        n.create_subscription(String, "/cell/batches", functools.partial(self._on_signals, "batches"), latest)
        n.create_subscription(
            cim.AlarmArray, "/cell/alarms/active", lambda m: self._store("alarms", m), latest
        )
        n.create_subscription(cim.Alarm, "/cell/alarms", self._on_alarm, reliable)
        n.create_subscription(String, "/cell/events", self._on_event, reliable)
        n.create_subscription(String, "/lifecycle_manager/status", self._on_lm_status, latched)
        self._operate = n.create_client(DeviceCommand, "/cell/operate")
        self._batch_cmd = n.create_client(BatchCommand, "/cell/batch/command")
        self._ack = n.create_client(AcknowledgeAlarm, "/cell/alarms/acknowledge")
        self._recover = n.create_client(RecoverDevice, "/cell/recover")
        self._shelve = n.create_client(ShelveAlarm, "/cell/alarms/shelve")
        self._run = ActionClient(n, RunBatch, "/cell/batch/run")
        self._ready_since: dict[str, float] = {}
        self._types = {
            "DeviceCommand": DeviceCommand,
            "BatchCommand": BatchCommand,
            "AcknowledgeAlarm": AcknowledgeAlarm,
            "RecoverDevice": RecoverDevice,
            "ShelveAlarm": ShelveAlarm,
            "RunBatch": RunBatch,
        }
        from aseptic_cell.nodes.rosutil import wall_timer

        wall_timer(n, 1.0 / cfg.snapshot_rate_hz, self._tick)
        self._executor = self._ros.executor
        self.tick_seconds: deque[float] = deque(maxlen=200)  # snapshot build + publish time (measured)

    # ------------------------------------------------------------------ life
    def start(self, hub: Hub) -> None:
        self._hub = hub
        self._ros.start()

    def stop(self) -> None:
        self._ros.close()

    # ------------------------------------------------------------------ callbacks (executor thread)
    def _store(self, key: str, msg: Any) -> None:
        try:
            data = plain(msg)
        except Exception:  # noqa: BLE001 - observation never becomes control
            log.exception("cannot convert %s", key)
            return
        with self._lock:
            self._msgs[key] = (time.monotonic(), data)

    def _on_signals(self, kind: str, msg: Any) -> None:
        try:
            data = json.loads(msg.data)
        except ValueError:
            return
        with self._lock:
            self._msgs[f"pe:{kind}"] = (time.monotonic(), data)

    def _on_device(self, name: str, msg: Any) -> None:
        self._store(name, msg)
        try:
            t = _stamp(msg)
            tr = self._trends[name]
            with self._lock:
                if tr["t"] and t < tr["t"][-1]:  # sim time restarted
                    tr["t"].clear()
                    for d in tr["series"].values():
                        d.clear()
                if not tr["t"] or t - tr["t"][-1] >= self.cfg.trend_min_dt_s:
                    sample: dict[str, Any] = {"t": t}
                    tr["t"].append(t)
                    for k, d in tr["series"].items():
                        v = float(getattr(msg, k))
                        v2 = v if math.isfinite(v) else None
                        d.append(v2)
                        sample[k] = v2
                    self._pending_trend[name] = sample
        except Exception:  # noqa: BLE001
            log.exception("trend update failed for %s", name)

    def _on_event(self, msg: Any) -> None:
        try:
            ev = json.loads(msg.data)
            if not isinstance(ev, dict):
                return
        except ValueError:
            return
        ev = _finite(ev)
        with self._lock:
            self._events.append(ev)
        if self._hub is not None:
            self._hub.publish_event({"kind": "cell_event", **ev})

    def _on_alarm(self, msg: Any) -> None:
        a = plain(msg)
        a["isa_priority"] = isa_priority(int(msg.priority))
        a["wall"] = time.time()
        with self._lock:
            self._raw_alarms[msg.alarm_id] = a
        if self._hub is not None:
            self._hub.publish_event({"kind": "alarm", **a})

    def _on_lm_status(self, msg: Any) -> None:
        try:
            data = json.loads(msg.data)
        except ValueError:
            return
        with self._lock:
            self._msgs["lifecycle"] = (time.monotonic(), _finite(data))

    def _tick(self) -> None:
        t0 = time.perf_counter()
        try:
            snap = self.snapshot()
            with self._lock:
                snap["trend"], self._pending_trend = self._pending_trend, {}
            if self._hub is not None:
                self._hub.publish_state(snap)
        except Exception:  # noqa: BLE001 - observation never becomes control
            log.exception("snapshot failed")
        self.tick_seconds.append(time.perf_counter() - t0)

    # ------------------------------------------------------------------ CellBackend: state
    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            msgs = dict(self._msgs)
            events = list(self._events)[-30:]
            raw_alarms = list(self._raw_alarms.values())

        def get(key: str, stale_s: float) -> tuple[Any, float | None, bool]:
            if key not in msgs:
                return None, None, True
            t, data = msgs[key]
            return data, now - t, (now - t) > stale_s

        devices: dict[str, Any] = {}
        for name in DEVICE_STATES:
            data, age, stale = get(name, STALE_AFTER_S)
            if data is not None:
                data = dict(data)
                data["t"] = data["stamp"]["sec"] + data["stamp"]["nanosec"] * 1e-9
                del data["stamp"]
            devices[name] = {"present": data is not None, "age_s": age, "stale": stale, "state": data}
        process: dict[str, Any] = {}
        for kind in PROCESS_EQUIPMENT:
            data, age, stale = get(f"pe:{kind}", STALE_AFTER_S)
            if data is not None:
                process[kind] = {"stale": stale or not data.get("comm_ok"), "latched": data.get("latched", ""),
                                 "device": data.get("device", ""), "signals": _finite(data.get("signals") or {})}
        batch, b_age, b_stale = get("batch", SUPERVISOR_TOPICS_STALE_S)
        if batch is not None:
            batch.pop("stamp", None)
        inter, _, i_stale = get("interlocks", SUPERVISOR_TOPICS_STALE_S)
        tree, _, t_stale = get("tree", SUPERVISOR_TOPICS_STALE_S)
        active, _, a_stale = get("alarms", SUPERVISOR_TOPICS_STALE_S)
        lifecycle, _, _ = get("lifecycle", 1e9)
        batches, _, bv_stale = get("pe:batches", SUPERVISOR_TOPICS_STALE_S)
        if active is not None and not a_stale:
            alarms = [dict(a, isa_priority=isa_priority(int(a["priority"]))) for a in active["alarms"]]
            alarm_view = {"source": "supervisor", "flood": bool(active.get("flood")), "list": alarms}
        else:  # no supervisor: what the nodes raised (cannot be acknowledged here)
            alarm_view = {
                "source": "nodes",
                "flood": False,
                "list": [a for a in raw_alarms if a.get("state") not in ("RTN", "NORMAL", "CLEARED")],
            }
        rules = inter["rules"] if inter is not None else []
        return {
            "devices": devices,
            "process_equipment": process,
            "supervisor": batch is not None and not b_stale,
            "batch": batch,
            "batch_stale": b_stale,
            "interlocks": {
                "stale": i_stale,
                "rules": rules,
                "violated": sum(1 for r in rules if r["state"] == "VIOLATED"),
                "unknown": sum(1 for r in rules if r["state"] == "UNKNOWN"),
            }
            if inter is not None
            else None,
            "tree": dict(tree, stale=t_stale) if tree is not None else None,
            "alarms": alarm_view,
            "lifecycle": lifecycle,
            "events": events,
            "batches": dict(_finite(batches), stale=bv_stale) if isinstance(batches, dict) else None,
        }

    def trends(self) -> dict[str, Any]:
        with self._lock:
            return {
                u: {"t": list(tr["t"]), "series": {k: list(d) for k, d in tr["series"].items()}}
                for u, tr in self._trends.items()
            }

    def record_path(self) -> str:
        with self._lock:
            entry = self._msgs.get("batch")
        return str(entry[1].get("record_path") or "") if entry else ""

    # ------------------------------------------------------------------ CellBackend: commands
    def _wait(self, future: Any, timeout_s: float, what: str) -> Any:
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(timeout_s):
            future.cancel()
            raise CellUnavailable(
                f"{what}: no answer within {timeout_s:.0f} s (outcome unknown: check the record)"
            )
        return future.result()

    def _ready(self, client: Any, name: str, timeout_s: float = 2.0) -> None:
        deadline = time.monotonic() + timeout_s
        ready = client.server_is_ready if hasattr(client, "server_is_ready") else client.service_is_ready
        while not ready():
            if time.monotonic() > deadline:
                raise CellUnavailable(f"{name} is not available (is the supervisor running?)")
            time.sleep(0.02)
        # "ready" means our request writer matched the server; its reply writer may match our
        # reader a moment later and a reply sent before that is lost (commands are not retried):
        # the first use waits until the server has been seen ready for NEW_CLIENT_SETTLE_S
        first = self._ready_since.setdefault(name, time.monotonic())
        wait = first + NEW_CLIENT_SETTLE_S - time.monotonic()
        if wait > 0:
            time.sleep(wait)

    def _sign(self, target: str, req: Any) -> Any:
        return self._signer.sign(target, req) if self._signer is not None else req

    def operate(
        self, device: str, command: str, args: dict[str, Any], *, user: str, reason: str = ""
    ) -> CommandResult:
        self._ready(self._operate, "/cell/operate")
        req = self._types["DeviceCommand"].Request(
            device_id=device, command=command, args_json=json.dumps(args), user=user, reason=reason
        )
        self._sign("/cell/operate", req)
        r = self._wait(self._operate.call_async(req), self.cfg.command_timeout_s, f"{device}.{command}")
        try:
            payload = json.loads(r.payload_json or "{}")
        except ValueError:
            payload = {}
        return CommandResult(r.accepted, r.code, r.reason, payload if isinstance(payload, dict) else {})

    def batch_command(
        self, command: str, *, user: str, password: str = "", meaning: str = "", reason: str = "", batch: str = ""
    ) -> CommandResult:
        self._ready(self._batch_cmd, "/cell/batch/command")
        req = self._types["BatchCommand"].Request(
            command=command, user=user, password=password, meaning=meaning, reason=reason, batch_id=batch
        )
        self._sign("/cell/batch/command", req)
        r = self._wait(self._batch_cmd.call_async(req), self.cfg.command_timeout_s, f"batch {command}")
        return CommandResult(r.accepted, r.code, r.reason, state=r.state)

    def batch_start(self, *, recipe_id: str, batch_id: str, user: str, coi: str = "", din: str = "") -> CommandResult:
        """RunBatch; ``coi`` and ``din`` start a patient batch (issue 14), both empty a campaign batch."""
        from aseptic_cell.nodes.rosutil import on_executor

        self._ready(self._run, "/cell/batch/run")
        goal = self._types["RunBatch"].Goal(recipe_id=recipe_id, batch_id=batch_id, user=user, coi=coi, din=din)
        # sent from the executor thread: see rosutil.on_executor (a race in rclpy's action client)
        self._sign("/cell/batch/run", goal)
        gh = self._wait(on_executor(self._executor, self._run.send_goal_async, goal),
                        self.cfg.command_timeout_s, "batch start")
        if not gh.accepted:
            return CommandResult(
                False,
                "REJECTED",
                f"the supervisor rejected batch {batch_id} (recipe {recipe_id}); see the events list for why",
            )
        # a refusal after acceptance arrives as a quick unsuccessful result
        fut = on_executor(self._executor, gh.get_result_async)
        done = threading.Event()
        fut.add_done_callback(lambda _f: done.set())
        if done.wait(1.0):
            res = fut.result().result
            if not res.success:
                return CommandResult(
                    False,
                    res.state or "FAILED",
                    res.reason or "the batch ended at once (see the events)",
                    state=res.state,
                )
            return CommandResult(True, "OK", res.reason, state=res.state)
        return CommandResult(
            True,
            "OK",
            f"batch {batch_id} running (goal {uuid.UUID(bytes=bytes(gh.goal_id.uuid))})",
            state="RUNNING",
        )

    def shelve_alarm(
        self, alarm_id: str, *, user: str, password: str, meaning: str, reason: str, duration_s: float
    ) -> CommandResult:
        self._ready(self._shelve, "/cell/alarms/shelve")
        req = self._types["ShelveAlarm"].Request(
            alarm_id=alarm_id, user=user, password=password, meaning=meaning, reason=reason,
            duration_s=float(duration_s),
        )
        what = f"{'shelve' if duration_s > 0 else 'unshelve'} {alarm_id}"
        self._sign("/cell/alarms/shelve", req)
        r = self._wait(self._shelve.call_async(req), self.cfg.command_timeout_s, what)
        return CommandResult(r.accepted, r.code, r.reason)

    def recover_device(
        self, device: str, *, user: str, password: str, meaning: str, reason: str
    ) -> CommandResult:
        self._ready(self._recover, "/cell/recover")
        req = self._types["RecoverDevice"].Request(
            device_id=device, user=user, password=password, meaning=meaning, reason=reason
        )
        self._sign("/cell/recover", req)
        r = self._wait(self._recover.call_async(req), self.cfg.command_timeout_s + 10.0, f"recover {device}")
        return CommandResult(r.accepted, r.code, r.reason)

    def acknowledge(self, alarm_id: str, *, user: str, comment: str = "") -> CommandResult:
        self._ready(self._ack, "/cell/alarms/acknowledge")
        req = self._types["AcknowledgeAlarm"].Request(alarm_id=alarm_id, user=user, comment=comment)
        self._sign("/cell/alarms/acknowledge", req)
        r = self._wait(self._ack.call_async(req), self.cfg.command_timeout_s, f"acknowledge {alarm_id}")
        return CommandResult(r.accepted, "OK" if r.accepted else "REFUSED", r.reason)
