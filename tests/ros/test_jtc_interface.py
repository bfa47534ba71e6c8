"""The MuJoCo arm node as its own process, checked with the functions the launch_testing files
beside the launch files use (launch/*.launch_test.py, on ROS machines against Gazebo or this node);
plus what the launch_testing files cannot easily see: a broken trajectory is rejected and the
status reports tracking error and contacts."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor

from aseptic_cell.config import default_config_dir, load_config
from aseptic_cell.physics import checks

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def mujoco_node():
    proc = subprocess.Popen([sys.executable, "-m", "aseptic_cell.nodes.mujoco_arm", "--ros-args",
                             "-p", "time_scale:=5.0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    yield proc
    proc.terminate()
    try:
        rc = proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 0, (proc.stdout.read() if proc.stdout else b"")[-2000:]


def test_shared_interface_checks_and_status(mujoco_node, ros_context):
    from std_msgs.msg import String

    arm = load_config(default_config_dir()).arm
    node = rclpy.create_node("jtc_interface_check", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    status: list[dict] = []
    node.create_subscription(String, f"{checks.NAMESPACE}/mujoco/status", lambda m: status.append(json.loads(m.data)),
                             10)
    try:
        problems = checks.run_interface_checks(node, lambda t: executor.spin_once(timeout_sec=t), arm,
                                               duration_s=2.0, settle_s=20.0)
        assert problems == []
        # a trajectory naming the wrong joints is rejected by the node, the arm stays where it is
        probe = checks.JtcProbe(node)
        from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

        probe.pub.publish(JointTrajectory(joint_names=["a", "b"], points=[JointTrajectoryPoint(positions=[0.0, 0.0])]))
        t0 = time.monotonic()
        while time.monotonic() - t0 < 10 and not (status and status[-1]["rejected"] >= 1):
            executor.spin_once(timeout_sec=0.05)
        last = status[-1]
        assert last["rejected"] == 1 and last["trajectories"] == 1
        assert last["contact_steps"] == 0 and 0.0 < last["max_tracking_error_rad"] < 0.01
        assert last["steps"] > 1000 and last["real_time_factor"] > 1.0
        assert checks.check_arrival(probe.latest or _latest(executor, probe), arm, list(arm.poses["decon"]),
                                    arm.pose_tolerance_rad) == []
        assert checks.check_interface_types([("/arm_hw/joint_states", ["std_msgs/msg/String"])]) != []
    finally:
        executor.shutdown()
        node.destroy_node()


def _latest(executor, probe):
    t0 = time.monotonic()
    while probe.latest is None and time.monotonic() - t0 < 5:
        executor.spin_once(timeout_sec=0.05)
    return probe.latest
