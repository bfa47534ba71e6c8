"""launch_testing test of the MuJoCo arm node, for a machine with a full ROS 2 installation:

    launch_test $(ros2 pkg prefix aseptic_cell)/share/aseptic_cell/launch/mujoco_arm.launch_test.py

Starts ``python3 -m aseptic_cell.nodes.mujoco_arm`` and runs the checks of
aseptic_cell.physics.checks (the same functions tests/ros/test_jtc_interface.py runs here under
pytest). Not collected by this project's pytest (launch_testing is not installable from PyPI).
"""

import sys
import unittest

import launch_testing
import launch_testing.actions
import launch_testing.asserts
import pytest
from launch.actions import ExecuteProcess

from launch import LaunchDescription


@pytest.mark.launch_test
def generate_test_description():
    node = ExecuteProcess(cmd=[sys.executable, "-m", "aseptic_cell.nodes.mujoco_arm", "--ros-args",
                               "-p", "time_scale:=5.0"], output="screen")
    return LaunchDescription([node, launch_testing.actions.ReadyToTest()])


class TestTrajectoryInterface(unittest.TestCase):
    def test_interface(self):
        import rclpy

        from aseptic_cell.config import default_config_dir, load_config
        from aseptic_cell.physics.checks import run_interface_checks

        rclpy.init()
        node = rclpy.create_node("mujoco_arm_check")
        try:
            arm = load_config(default_config_dir()).arm
            problems = run_interface_checks(node, lambda t: rclpy.spin_once(node, timeout_sec=t), arm)
            self.assertEqual(problems, [])
        finally:
            node.destroy_node()
            rclpy.shutdown()


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
