"""Foxglove live view: a plain WebSocket client (no Foxglove library) subscribes to /joint_states
and to the 3D scene and decodes what it receives."""

from __future__ import annotations

import asyncio
import json
import struct
import time

import websockets
from websockets.typing import Subprotocol

from aseptic_cell.config import default_config_dir, load_config
from aseptic_cell.liveview.server import LOOPBACK, SCENE_TOPIC, LiveView

SUBPROTOCOLS = [Subprotocol("foxglove.sdk.v1"), Subprotocol("foxglove.websocket.v1")]


async def _client(url: str, wanted: list[str], n_per_topic: int, timeout_s: float) -> tuple[dict, dict]:
    """Subscribe to ``wanted`` topics; return (channel by topic, list of payloads by topic)."""
    got: dict[str, list[bytes]] = {t: [] for t in wanted}
    channels: dict[str, dict] = {}
    subs: dict[int, str] = {}
    async with websockets.connect(url, subprotocols=SUBPROTOCOLS, max_size=None) as ws:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(len(v) < n_per_topic for v in got.values()):
            try:
                frame = await asyncio.wait_for(ws.recv(), timeout=max(0.05, deadline - time.monotonic()))
            except TimeoutError:
                break
            if isinstance(frame, str):
                msg = json.loads(frame)
                if msg.get("op") == "advertise":
                    new = []
                    for ch in msg["channels"]:
                        if ch["topic"] in wanted and ch["topic"] not in channels:
                            channels[ch["topic"]] = ch
                            sid = len(subs) + 1
                            subs[sid] = ch["topic"]
                            new.append({"id": sid, "channelId": ch["id"]})
                    if new:
                        await ws.send(json.dumps({"op": "subscribe", "subscriptions": new}))
            elif frame[0] == 0x01:  # message data: opcode, subscription id u32, log time u64, payload
                sid, _log_time = struct.unpack_from("<IQ", frame, 1)
                got[subs[sid]].append(bytes(frame[13:]))
    return channels, got


def test_plain_websocket_client_decodes_a_joint_state(ros_context):
    import rclpy
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import JointState

    cfg = load_config(default_config_dir())
    names = [j.name for j in cfg.arm.joints]
    node = rclpy.create_node("liveview_test_pub", context=ros_context)
    view = LiveView(cfg, port=0, scene_hz=10.0).start()
    stop = False
    try:
        assert view.url.startswith(f"ws://{LOOPBACK}:") and view.port > 0
        pub = node.create_publisher(JointState, "/joint_states", 10)

        import threading

        def publish() -> None:
            k = 0
            while not stop:
                k += 1
                pub.publish(JointState(name=names, position=[0.1 * k] + list(cfg.arm.poses["park"][1:])))
                time.sleep(0.05)

        th = threading.Thread(target=publish, daemon=True)
        th.start()
        channels, got = asyncio.run(_client(view.url, ["/joint_states", SCENE_TOPIC], 3, 20.0))
    finally:
        stop = True
        view.stop()
        node.destroy_node()
    js_channel = channels["/joint_states"]
    assert js_channel["encoding"] == "cdr" and js_channel["schemaName"] == "sensor_msgs/msg/JointState"
    assert "MSG: std_msgs/Header" in js_channel["schema"]
    assert len(got["/joint_states"]) >= 3
    msg = deserialize_message(got["/joint_states"][-1], JointState)
    assert list(msg.name) == names and msg.position[0] > 0.0
    assert channels[SCENE_TOPIC]["schemaName"] == "foxglove.SceneUpdate" and got[SCENE_TOPIC]


def test_scene_colours_keepouts_by_state_and_draws_the_arm():
    import numpy as np

    from aseptic_cell.liveview.scene import GREEN, RED, scene_parts, scene_update

    cfg = load_config(default_config_dir())
    q = np.array(cfg.arm.poses["park"])
    released = scene_parts(cfg, q, set())
    gloves = scene_parts(cfg, q, {"glove_in_use:GP1"})
    assert len(released["structure"]) == sum(b.kind != "keepout" for b in cfg.geometry.boxes)
    assert len(released["arm_cylinders"]) == len(cfg.arm.links) == len(released["arm_spheres"]) // 2
    idx = [b.name for b in cfg.geometry.boxes if b.kind == "keepout"].index("glove_gp1_reach")
    assert released["keepouts"][idx][3] == GREEN and gloves["keepouts"][idx][3] == RED
    # the flange sphere sits where the DH chain puts the tool capsule's end
    from aseptic_cell.motion import Scene

    frames = Scene.from_config(cfg.arm, cfg.geometry).fk(q).frames
    tool = cfg.arm.links[-1]
    expected = frames[6][:3, :3] @ np.asarray(tool.p1) + frames[6][:3, 3]
    assert np.allclose(released["arm_spheres"][-1][0], expected, atol=1e-12)
    assert scene_update(cfg, q, set()) is not None  # builds the foxglove message


def test_run_hook_starts_and_stops_the_view(ros_context, capsys):
    from aseptic_cell.cli import build_parser
    from aseptic_cell.liveview.server import live_view

    args = build_parser().parse_args(["run", "--foxglove", "--foxglove-port", "0"])
    assert args.foxglove and args.foxglove_port == 0
    with live_view(str(default_config_dir()), enabled=False) as none:
        assert none is None
    with live_view(str(default_config_dir()), enabled=True, port=0) as view:
        assert view is not None and view.server is not None
        url = view.url
    assert view.server is None and url in capsys.readouterr().out
