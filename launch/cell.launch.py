"""The aseptic cell's node graph for a full ROS 2 installation: ``ros2 launch aseptic_cell cell.launch.py``.

Mirrors ``aseptic_cell.nodes.graph.default_graph()`` (tests/ros/test_launcher.py compares
the two: node names, executables, parameter names, lifecycle manager lists). Where ROS 2
comes from PyPI wheels (no ``launch``), ``cellctl run`` starts the same graph.

Arguments: config_dir (default: the installed share/aseptic_cell/config), speed (sim-time
speed-up, 0 = as fast as possible), hardware (sim | opcua).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription


def generate_launch_description():
    share = get_package_share_directory("aseptic_cell")
    config_dir = ParameterValue(LaunchConfiguration("config_dir"), value_type=str)
    speed = ParameterValue(LaunchConfiguration("speed"), value_type=float)
    hardware = ParameterValue(LaunchConfiguration("hardware"), value_type=str)

    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "config_dir",
                default_value=os.path.join(share, "config"),
                description="configuration directory",
            ),
            DeclareLaunchArgument(
                "speed",
                default_value="1.0",
                description="sim-time speed-up (sim s per wall s); 0 = as fast as possible",
            ),
            DeclareLaunchArgument("hardware", default_value="sim", description="sim | opcua"),
            Node(
                package="aseptic_cell",
                executable="sim_world",
                name="sim_world",
                output="screen",
                parameters=[{"config_dir": config_dir, "speed": speed}],
            ),
            # device nodes (LifecycleNodes; the lifecycle manager configures/activates them)
            Node(
                package="aseptic_cell",
                executable="isolator_node",
                name="isolator",
                output="screen",
                parameters=[{"use_sim_time": True, "config_dir": config_dir, "hardware": hardware}],
            ),
            Node(
                package="aseptic_cell",
                executable="vhp_node",
                name="vhp",
                output="screen",
                parameters=[{"use_sim_time": True, "config_dir": config_dir, "hardware": hardware}],
            ),
            Node(
                package="aseptic_cell",
                executable="autoclave_node",
                name="autoclave",
                output="screen",
                parameters=[{"use_sim_time": True, "config_dir": config_dir, "hardware": hardware}],
            ),
            Node(
                package="aseptic_cell",
                executable="arm_node",
                name="arm",
                output="screen",
                parameters=[{"use_sim_time": True, "config_dir": config_dir, "hardware": hardware}],
            ),
            Node(
                package="aseptic_cell",
                executable="lifecycle_manager",
                name="lifecycle_manager",
                output="screen",
                parameters=[
                    {
                        "use_sim_time": True,
                        # bring-up order: dependencies first (graph.bringup_order)
                        "managed_nodes": ["isolator", "autoclave", "arm", "vhp"],
                        "dependencies": ["vhp:isolator,arm", "autoclave:isolator", "arm:isolator"],
                        "heartbeat_period_s": 0.5,
                        "heartbeat_timeout_s": 3.0,
                        "autostart": True,
                    }
                ],
            ),
        ]
    )
