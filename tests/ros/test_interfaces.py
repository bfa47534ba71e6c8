"""cell_interfaces: generated types, field checks, and real DDS round trips (rclpy + Fast DDS)."""

from __future__ import annotations

import array
import json
import time
import uuid

import pytest
import rclpy  # a missing rclpy / cell_interfaces must fail the run, not skip
from builtin_interfaces.msg import Time
from cell_interfaces.action import RunCycle
from cell_interfaces.msg import Alarm, DeviceState
from cell_interfaces.srv import DeviceCommand
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy


def _unique(prefix: str) -> str:
    # Unique names: other runs on this machine may share the domain id.
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def _spin_until(executor: SingleThreadedExecutor, done, timeout_s: float = 10.0) -> None:
    """spin_once loop with a deadline (Jazzy's spin_until_future_complete is slow)."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout_s} s")
        executor.spin_once(timeout_sec=0.05)


def _device_state() -> DeviceState:
    return DeviceState(
        device_id="vhp1",
        kind="vhp",
        state="CONDITIONING",
        mode="AUTO",
        healthy=True,
        comm_ok=True,
        faults=["W_LOW_H2O2"],
        stamp=Time(sec=1_700_000_000, nanosec=123_456_789),
        keys=["h2o2_ppm", "rh_pct", "temp_c"],
        values=[250.5, 31.0, 24.25],
    )


# --- generated types ---------------------------------------------------------------


def test_field_checks_are_on():
    with pytest.raises(AssertionError):
        DeviceState(device_id=42)
    with pytest.raises(AssertionError):
        Alarm(priority=-1)  # uint16
    with pytest.raises(AssertionError):
        Alarm(priority=70000)


def test_message_fields_and_defaults():
    msg = _device_state()
    assert msg.values.tolist() == [250.5, 31.0, 24.25]  # float64[] is an array.array('d')
    assert isinstance(msg.values, array.array)
    assert msg.keys == ["h2o2_ppm", "rh_pct", "temp_c"]
    assert DeviceState().faults == [] and DeviceState().healthy is False

    alarm = Alarm(alarm_id="A-101", source="isolator", priority=1, state="UNACK_ACTIVE",
                  message="Glove breach", raised=Time(sec=5))
    assert (alarm.priority, alarm.raised.sec) == (1, 5)


def test_service_and_action_types():
    req = DeviceCommand.Request(device_id="autoclave1", command="start",
                                args_json='{"program": "P121_20MIN"}', user="op1", reason="load 4")
    assert json.loads(req.args_json) == {"program": "P121_20MIN"}
    resp = DeviceCommand.Response(accepted=False, reason="door open", code="INTERLOCK")
    assert not resp.accepted

    goal = RunCycle.Goal(device_id="vhp1", program_id="STD", batch_id="B-0001")
    assert goal.batch_id == "B-0001"
    assert RunCycle.Result(success=True, json_report="{}").success
    assert RunCycle.Feedback(phase="AERATION", progress=0.75).progress == 0.75
    # The action's hidden service/message types are generated too.
    assert RunCycle.Impl.SendGoalService.Request().goal.device_id == ""


# --- real round trips ---------------------------------------------------------------


def test_device_state_pub_sub_round_trip(ros_context):
    topic = _unique("/test/device_state")
    node = rclpy.create_node(_unique("iface_test_pubsub"), context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    try:
        qos = QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE,
                         durability=QoSDurabilityPolicy.VOLATILE)
        received: list[DeviceState] = []
        node.create_subscription(DeviceState, topic, received.append, qos)
        pub = node.create_publisher(DeviceState, topic, qos)
        _spin_until(executor, lambda: pub.get_subscription_count() > 0)

        sent = _device_state()
        # Republish until the first message arrives (discovery is asynchronous).
        deadline = time.monotonic() + 10.0
        while not received:
            assert time.monotonic() < deadline, "no DeviceState received"
            pub.publish(sent)
            for _ in range(5):
                executor.spin_once(timeout_sec=0.02)
                if received:
                    break

        got = received[0]
        assert got == sent
        assert (got.device_id, got.kind, got.state, got.mode) == ("vhp1", "vhp", "CONDITIONING", "AUTO")
        assert got.healthy and got.comm_ok
        assert got.faults == ["W_LOW_H2O2"]
        assert (got.stamp.sec, got.stamp.nanosec) == (1_700_000_000, 123_456_789)
        assert dict(zip(got.keys, got.values, strict=True)) == {"h2o2_ppm": 250.5, "rh_pct": 31.0, "temp_c": 24.25}
    finally:
        executor.shutdown()
        node.destroy_node()


def test_device_command_service_round_trip(ros_context):
    name = _unique("/test/device_command")
    server_node = rclpy.create_node(_unique("iface_test_server"), context=ros_context)
    client_node = rclpy.create_node(_unique("iface_test_client"), context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(server_node)
    executor.add_node(client_node)
    seen: list[DeviceCommand.Request] = []

    def handle(request: DeviceCommand.Request, response: DeviceCommand.Response):
        seen.append(request)
        args = json.loads(request.args_json)
        if request.command == "start" and args.get("program") == "P121_20MIN":
            response.accepted, response.reason, response.code = True, f"started by {request.user}", "OK"
            response.payload_json = json.dumps({"run_id": "R1"})
        else:
            response.accepted, response.reason, response.code = False, "unknown command", "BAD_COMMAND"
        return response

    try:
        server_node.create_service(DeviceCommand, name, handle)
        client = client_node.create_client(DeviceCommand, name)
        _spin_until(executor, client.service_is_ready)

        results = []
        for command in ("start", "explode"):
            future = client.call_async(DeviceCommand.Request(
                device_id="autoclave1", command=command, args_json='{"program": "P121_20MIN"}',
                user="op1", reason="test"))
            _spin_until(executor, future.done)
            results.append(future.result())

        ok, bad = results
        assert (ok.accepted, ok.reason, ok.code) == (True, "started by op1", "OK")
        assert json.loads(ok.payload_json) == {"run_id": "R1"}
        assert (bad.accepted, bad.code) == (False, "BAD_COMMAND")
        assert [r.command for r in seen] == ["start", "explode"]
        assert seen[0].device_id == "autoclave1" and seen[0].reason == "test"
    finally:
        executor.shutdown()
        client_node.destroy_node()
        server_node.destroy_node()
