"""MCAP recording: real DDS traffic recorded raw, decoded by an independent reader (mcap_ros2,
which decodes CDR from the message-definition text alone, not with our rclpy classes)."""

from __future__ import annotations

import json
import time

from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory

from aseptic_cell.bag.schema import SEPARATOR, message_definition


def test_definitions_are_complete():
    d = message_definition("cell_interfaces/msg/ArmState")
    assert f"{SEPARATOR}\nMSG: builtin_interfaces/Time\n" in d
    assert "string protective_stop_reason" in d.split(SEPARATOR)[0]
    js = message_definition("sensor_msgs/msg/JointState")
    assert "MSG: std_msgs/Header" in js and js.count("MSG: builtin_interfaces/Time") == 1


def decode_counts(path):
    """Topic -> list of decoded messages, with mcap_ros2's decoder."""
    out: dict[str, list] = {}
    with open(path, "rb") as f:
        for _schema, channel, _message, decoded in make_reader(f, decoder_factories=[DecoderFactory()]) \
                .iter_decoded_messages():
            out.setdefault(channel.topic, []).append(decoded)
    return out


def test_record_and_decode_independently(ros_context, tmp_path, capsys):
    import rclpy
    from cell_interfaces.msg import ArmState
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import JointState

    from aseptic_cell.bag.recorder import Recorder
    from aseptic_cell.cli import main

    path = tmp_path / "t.mcap"
    node = rclpy.create_node("bag_test_pub", context=ros_context)
    try:
        js_pub = node.create_publisher(JointState, "/bagtest/joint_states", QoSProfile(depth=1000))
        arm_pub = node.create_publisher(ArmState, "/bagtest/arm_state", QoSProfile(depth=1000))
        other = node.create_publisher(JointState, "/bagtest/not_recorded", 10)
        rec = Recorder(path, ["/bagtest/joint_states", "/bagtest/arm_state"]).start()
        deadline = time.monotonic() + 15
        while (js_pub.get_subscription_count() == 0 or arm_pub.get_subscription_count() == 0) \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        assert js_pub.get_subscription_count() == 1 and arm_pub.get_subscription_count() == 1
        n_js, n_arm = 600, 60
        for i in range(n_js):
            js_pub.publish(JointState(name=["shoulder_pan_joint"], position=[i * 0.001]))
            other.publish(JointState(name=["x"], position=[0.0]))
            if i % 10 == 0:
                arm_pub.publish(ArmState(device_id="ARM1", joint_positions=[float(i), 2.5], faults=["F1"],
                                         tcp_xyz=[0.1, 0.2, 0.3], moving=True))
            if i % 100 == 99:
                time.sleep(0.01)
        deadline = time.monotonic() + 10
        while rec.stats.messages < n_js + n_arm and time.monotonic() < deadline:
            time.sleep(0.02)
        stats = rec.stop()
    finally:
        node.destroy_node()
    assert stats.counts == {"/bagtest/joint_states": n_js, "/bagtest/arm_state": n_arm}

    decoded = decode_counts(path)
    expected = {"/bagtest/joint_states": n_js, "/bagtest/arm_state": n_arm}
    assert {t: len(v) for t, v in decoded.items()} == expected
    assert [m.position[0] for m in decoded["/bagtest/joint_states"]] == [i * 0.001 for i in range(n_js)]
    arm = decoded["/bagtest/arm_state"][-1]
    assert (arm.device_id, list(arm.joint_positions), list(arm.faults), arm.moving) == ("ARM1", [590.0, 2.5],
                                                                                         ["F1"], True)
    with open(path, "rb") as f:
        summary = make_reader(f).get_summary()
    assert summary is not None
    schemas = {s.name: s for s in summary.schemas.values()}
    assert schemas["cell_interfaces/msg/ArmState"].encoding == "ros2msg"
    assert all("offered_qos_profiles" in c.metadata for c in summary.channels.values())

    assert main(["bag", "info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["profile"] == "ros2" and info["messages"] == n_js + n_arm
    assert info["topics"]["/bagtest/arm_state"] == {"type": "cell_interfaces/msg/ArmState", "encoding": "cdr",
                                                     "count": n_arm}


def test_bag_record_command(ros_context, tmp_path, capsys):
    import threading

    import rclpy
    from std_msgs.msg import String

    from aseptic_cell.cli import main

    node = rclpy.create_node("bag_cli_pub", context=ros_context)
    pub = node.create_publisher(String, "/bagcli/events", 10)
    stop = threading.Event()

    def publish() -> None:
        while not stop.is_set():
            pub.publish(String(data="{}"))
            time.sleep(0.02)

    th = threading.Thread(target=publish, daemon=True)
    th.start()
    path = tmp_path / "cli.mcap"
    try:
        assert main(["bag", "record", "/bagcli/events", "-o", str(path), "--duration", "2.0"]) == 0
    finally:
        stop.set()
        th.join()
        node.destroy_node()
    out = capsys.readouterr().out
    assert "/bagcli/events" in out and "std_msgs/msg/String" in out
    n = len(decode_counts(path)["/bagcli/events"])
    assert n > 10 and f"{n} messages on 1 topics" in out
