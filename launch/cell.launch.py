"""The aseptic cell's node graph for a full ROS 2 installation: ``ros2 launch aseptic_cell cell.launch.py``.

Mirrors ``aseptic_cell.nodes.graph.default_graph()`` (tests/ros/test_launcher.py compares
the two: node names, executables, parameter names, lifecycle manager lists). Where ROS 2
comes from PyPI wheels (no ``launch``), ``cellctl run`` starts the same graph.

Arguments: config_dir (default: the installed share/aseptic_cell/config), speed (sim-time
speed-up, 0 = as fast as possible), hardware (sim | opcua), arm (sim | mujoco | gazebo: the arm's
motion on the controller model, on MuJoCo physics (the mujoco_arm node), or in Gazebo (includes
gazebo.launch.py; Gazebo owns /clock and sim_world follows it: ``clock_source: ros``)).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription


def generate_launch_description():
    share = get_package_share_directory("aseptic_cell")
    config_dir = ParameterValue(LaunchConfiguration("config_dir"), value_type=str)
    speed = ParameterValue(LaunchConfiguration("speed"), value_type=float)
    hardware = ParameterValue(LaunchConfiguration("hardware"), value_type=str)
    arm = LaunchConfiguration("arm")
    # the arm node's hardware: the engine when the arm is on physics, else the cell's hardware
    arm_hardware = ParameterValue(
        PythonExpression(["'", arm, "' if '", arm, "' != 'sim' else '", LaunchConfiguration("hardware"), "'"]),
        value_type=str,
    )
    clock_source = ParameterValue(PythonExpression(["'ros' if '", arm, "' == 'gazebo' else 'own'"]), value_type=str)
    # physics time per wall second: the sim speed-up, at most 10 (physics.graph.physics_time_scale)
    time_scale = ParameterValue(
        PythonExpression(["min(float('", LaunchConfiguration("speed"), "') or 10.0, 10.0)"]), value_type=float
    )

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
            DeclareLaunchArgument("arm", default_value="sim", description="sim | mujoco | gazebo"),
            Node(
                package="aseptic_cell",
                executable="sim_world",
                name="sim_world",
                output="screen",
                parameters=[{"config_dir": config_dir, "speed": speed, "clock_source": clock_source}],
            ),
            # arm:=gazebo: Gazebo with the isolator world, the arm, the /clock bridge and the controllers
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(os.path.join(share, "launch", "gazebo.launch.py")),
                condition=IfCondition(PythonExpression(["'", arm, "' == 'gazebo'"])),
            ),
            # arm:=mujoco: the arm's physics in MuJoCo behind the same controller topics
            Node(
                package="aseptic_cell",
                executable="mujoco_arm",
                name="mujoco_arm",
                output="screen",
                condition=IfCondition(PythonExpression(["'", arm, "' == 'mujoco'"])),
                parameters=[{"config_dir": config_dir, "time_scale": time_scale, "publish_clock": False}],
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
                parameters=[{"use_sim_time": True, "config_dir": config_dir, "hardware": arm_hardware}],
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
