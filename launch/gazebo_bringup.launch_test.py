"""launch_testing test of the Gazebo bring-up, for a machine with ROS 2 Jazzy and Gazebo Harmonic:

    launch_test $(ros2 pkg prefix aseptic_cell)/share/aseptic_cell/launch/gazebo_bringup.launch_test.py

Starts launch/gazebo.launch.py and runs the checks of aseptic_cell.physics.checks (the same
functions tests/ros/test_jtc_interface.py runs here against the MuJoCo arm): the controller's
topics and types under /arm_hw, a joint state within the limits, a trajectory to the decon pose
arrives. Not collected by this project's pytest (launch_testing is not installable from PyPI).
"""

import os
import unittest

import launch_testing
import launch_testing.actions
import launch_testing.asserts
import pytest
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource

from launch import LaunchDescription


@pytest.mark.launch_test
def generate_test_description():
    here = os.path.dirname(os.path.abspath(__file__))
    gazebo = IncludeLaunchDescription(PythonLaunchDescriptionSource(os.path.join(here, "gazebo.launch.py")))
    return LaunchDescription([gazebo, launch_testing.actions.ReadyToTest()])


class TestTrajectoryInterface(unittest.TestCase):
    def test_interface(self):
        import rclpy

        from aseptic_cell.config import default_config_dir, load_config
        from aseptic_cell.physics.checks import run_interface_checks

        rclpy.init()
        node = rclpy.create_node("gazebo_bringup_check")
        try:
            arm = load_config(default_config_dir()).arm
            problems = run_interface_checks(node, lambda t: rclpy.spin_once(node, timeout_sec=t), arm,
                                            settle_s=60.0)
            self.assertEqual(problems, [])
        finally:
            node.destroy_node()
            rclpy.shutdown()


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
