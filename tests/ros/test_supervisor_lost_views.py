"""SUPERVISOR LOST as the operator sees it (issue 12 item 2), in process on a test domain: the
real HMI backend (aseptic_cell/hmi/ros_backend.py) and the real OPC UA server's ROS bridge
(aseptic_cell/opcua/server/ros_bridge.py) receive the real messages: a supervisor stand-in
publishes /cell/batch/status and its alarm list /cell/alarms/active, then falls silent; the
lifecycle manager's own watchdog (SupervisorWatch, 1 s timeout here) publishes
CELL_SUPERVISOR_LOST on /cell/alarms with the manager's QoS and priority. Both views must then
show the alarm (the supervisor's list is stale or frozen), and the HMI must not show the dead
supervisor's list as current."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

pytestmark = [pytest.mark.timeout(60)]


class _Hub:
    def publish_state(self, _snap):
        pass

    def publish_event(self, _ev):
        pass


def _wait(pred, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not (v := pred()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return v


def test_hmi_and_opcua_bridge_show_supervisor_lost_when_the_supervisor_goes_silent():
    import cell_interfaces.msg as cim

    from aseptic_cell.alarms.models import database_severity
    from aseptic_cell.hmi import HmiConfig
    from aseptic_cell.hmi.ros_backend import RosBackend
    from aseptic_cell.nodes import rosutil
    from aseptic_cell.nodes.background import BackgroundRos
    from aseptic_cell.nodes.lifecycle_manager import ALARM_QOS
    from aseptic_cell.nodes.supervisor_watch import ALARM_ID, SupervisorWatch
    from aseptic_cell.opcua.server.ros_bridge import RosBridge

    # the OPC UA server's bridge on its own asyncio loop; its sink collects what reaches the server
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    shown: dict[str, object] = {}

    async def sink(source, payload):
        shown[source] = payload

    bridge = RosBridge(loop, sink, devices=[], node_name="opcua_server_test")
    hmi = RosBackend(HmiConfig(), node_name="hmi_test")
    feeder = BackgroundRos("supervisor_standin", thread_name="feeder")
    try:
        bridge.start()
        hmi.start(_Hub())
        n = feeder.node
        status_pub = n.create_publisher(cim.BatchStatus, "/cell/batch/status", 10)
        active_pub = n.create_publisher(cim.AlarmArray, "/cell/alarms/active", 10)
        alarm_pub = n.create_publisher(cim.Alarm, "/cell/alarms", ALARM_QOS)
        silent = threading.Event()

        def publish_alarm(alarm_id, source, state, message):  # as LifecycleManager._publish_alarm
            alarm_pub.publish(cim.Alarm(alarm_id=alarm_id, source=source, priority=database_severity(alarm_id),
                                        state=state, message=message, raised=rosutil.stamp_now(n)))

        watch = SupervisorWatch(n, 1.0, publish_alarm, lambda _name, _why: None)
        iso_door = cim.Alarm(alarm_id="ISO1_DOOR_OPEN", source="ISO1", priority=2, state="ACTIVE",
                             message="door", raised=rosutil.stamp_now(n))

        def supervisor_tick():
            if not silent.is_set():
                status_pub.publish(cim.BatchStatus(batch_id="B-VIEW-001", state="RUNNING", phase="PH-VHP"))
                active_pub.publish(cim.AlarmArray(alarms=[iso_door]))
            watch.check()

        feeder.every(0.1, supervisor_tick)
        feeder.start()

        # while the supervisor runs: its list is what both show
        _wait(lambda: hmi.snapshot()["alarms"]["source"] == "supervisor", 15.0, "HMI: the supervisor's list")
        _wait(lambda: "alarms" in shown, 15.0, "OPC UA: the supervisor's list")
        assert [a["alarm_id"] for a in shown["alarms"]["alarms"]] == ["ISO1_DOOR_OPEN"]
        _wait(lambda: watch.last_heard is not None, 10.0, "the watchdog heard the supervisor")

        silent.set()  # the supervisor dies
        t_kill = time.monotonic()
        _wait(lambda: watch.lost_at is not None, 5.0, "SUPERVISOR LOST raised")

        def hmi_lost():
            view = hmi.snapshot()["alarms"]
            return view["source"] == "nodes" and [a for a in view["list"] if a["alarm_id"] == ALARM_ID]

        lost = _wait(hmi_lost, 10.0, "HMI shows SUPERVISOR LOST")[0]
        assert lost["state"] == "ACTIVE" and "SUPERVISOR LOST" in lost["message"] and "B-VIEW-001" in lost["message"]
        assert lost["priority"] == database_severity(ALARM_ID)
        hmi_s = time.monotonic() - t_kill

        def opcua_lost():
            return [a for a in shown["alarms"]["alarms"] if a["alarm_id"] == ALARM_ID]  # type: ignore[index]

        op = _wait(opcua_lost, 10.0, "OPC UA server shows SUPERVISOR LOST")[0]
        assert op["state"] == "ACTIVE" and "SUPERVISOR LOST" in op["message"]
        assert not hmi.snapshot()["supervisor"]  # the dead supervisor's batch is not shown as current
        print(f"SUPERVISOR LOST shown by the HMI {hmi_s:.2f} s after the supervisor's last message (timeout 1 s)")
    finally:
        feeder.close()
        hmi.stop()
        bridge.close()
        loop.call_soon_threadsafe(loop.stop)
