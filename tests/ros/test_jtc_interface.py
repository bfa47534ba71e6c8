"""The MuJoCo arm node as its own process, checked with the functions the launch_testing files
beside the launch files use (launch/*.launch_test.py, on ROS machines against Gazebo or this node);
plus what the launch_testing files cannot easily see: a broken trajectory is rejected and the
status reports tracking error and contacts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

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

    def on_status(m: Any) -> None:
        status.append(json.loads(m.data))

    node.create_subscription(String, f"{checks.NAMESPACE}/mujoco/status", on_status, 10)
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


class _Controller:
    """Stand-in for the controller model (sim_world's arm): accepts motion, drives on."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.pstop = False

    def connect(self, timeout_s: float) -> None:
        pass

    def close(self) -> None:
        pass

    def connected(self) -> bool:
        return True

    def latest(self):
        from aseptic_cell.devices.backend import Readings

        return Readings(values={"drives_enabled": True, "protective_stop": self.pstop, "mode": "AUTOMATIC"},
                        device_time=0.0, received_wall=time.monotonic())

    def command(self, name, args, *, user="", reason="", timeout_s=5.0):
        from aseptic_cell.devices.backend import CommandOutcome

        self.commands.append(name)
        if name == "protective_stop":
            self.pstop = True
        return CommandOutcome(True)


def _plan(q0, q1, seconds: float, dt: float = 0.02):
    import numpy as np

    s = np.linspace(0.0, 1.0, int(seconds / dt) + 1)[:, None]
    return (q0 + (q1 - q0) * (10 * s**3 - 15 * s**4 + 6 * s**5)).tolist(), dt


def test_backend_drives_the_physics_arm(mujoco_node):
    import numpy as np

    from aseptic_cell.devices.arm_jtc_backend import JtcArmBackend

    arm = load_config(default_config_dir()).arm
    names = [j.name for j in arm.joints]
    ctl = _Controller()
    backend = JtcArmBackend(device_id="ARM1", kind="arm", engine="mujoco", controller=ctl)
    backend.connect(20.0)
    try:
        def latest() -> Any:
            r = backend.latest()
            assert r is not None
            return r

        def q_now():
            r = latest()
            return np.array([r.get(f"joint.{n}.position_rad") for n in names]), r

        def wait(pred, timeout_s=20.0):
            t0 = time.monotonic()
            while time.monotonic() - t0 < timeout_s:
                if pred(backend.latest()):
                    return True
                time.sleep(0.02)
            return False

        q0, r = q_now()
        assert r.get("physics.engine") == "mujoco" and r.get("moving") is False
        far = np.array(arm.poses["park"])
        q, dt = _plan(q0, far, 3.0)
        out = backend.command("execute_trajectory", {"q": q, "dt": dt, "speed_class": "transit"})
        assert out.accepted, out
        assert latest().get("moving") is True  # at once, before the physics moved
        busy = backend.command("execute_trajectory", {"q": q, "dt": dt})
        assert (busy.accepted, busy.code) == (False, "ARM_MOVING")
        assert wait(lambda r: r.get("moving") is False and r.get("at_park"))
        # a trajectory that does not start where the physics arm is: refused before the controller
        bad = (np.array(q) + 0.05).tolist()
        before = list(ctl.commands)
        out = backend.command("execute_trajectory", {"q": bad, "dt": dt})
        assert (out.accepted, out.code) == (False, "TRAJECTORY_START_MISMATCH") and ctl.commands == before
        # a protective stop while moving holds the arm short of the goal
        q1, _ = q_now()
        goal = np.array(arm.poses["decon"])
        q, dt = _plan(q1, goal, 4.0)
        assert backend.command("execute_trajectory", {"q": q, "dt": dt}).accepted
        assert wait(lambda r: abs(r.get("joint.elbow_joint.velocity_rad_s") or 0.0) > 0.05, 10.0)
        assert backend.command("protective_stop", {"reason": "test"}).accepted
        assert wait(lambda r: r.get("moving") is False, 10.0)
        stopped, _ = q_now()
        time.sleep(0.5)
        held, r = q_now()
        assert float(np.max(np.abs(held - stopped))) < 1e-3  # held
        assert float(np.max(np.abs(held - goal))) > 0.1  # did not go on to the goal
        assert r.get("physics.contact_steps") == 0
    finally:
        backend.close()
