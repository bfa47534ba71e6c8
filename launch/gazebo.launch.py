"""The arm in Gazebo (Harmonic, ROS 2 Jazzy): ``ros2 launch aseptic_cell gazebo.launch.py``.

Starts Gazebo with the isolator world (sim/assets/isolator.sdf, walls and equipment only),
robot_state_publisher with the generated URDF (``use_sim_time``), spawns the arm from
``robot_description`` (the world does not contain it), the ros_gz_bridge for /clock (Gazebo
owns /clock), then the controller spawners in order: joint_state_broadcaster, then
joint_trajectory_controller, all in the hardware namespace ``/arm_hw``. The cell's arm node then
drives the arm with ``hardware: gazebo`` through ``/arm_hw/joint_trajectory_controller/joint_trajectory``
and ``/arm_hw/joint_states`` (the cell's ``/joint_states`` stays the arm node's).

The assets come from ``cellctl assets`` (generated from config/). No xacro: the controllers
YAML path is written into the URDF here as an absolute path.
"""

import os

PLACEHOLDER = "@CONTROLLERS_YAML@"  # aseptic_cell.assets.urdf.CONTROLLERS_PLACEHOLDER
NAMESPACE = "/arm_hw"  # aseptic_cell.assets.urdf.HW_NAMESPACE: gz_ros2_control's <ros><namespace>
ASSETS = ("aseptic_cell_arm.urdf", "isolator.sdf", "ros_gz_bridge.yaml", "controllers.yaml")


def assets_dir() -> str:
    """share/aseptic_cell/sim/assets when installed, else the source tree's sim/assets."""
    try:
        from ament_index_python.packages import get_package_share_directory

        installed = os.path.join(get_package_share_directory("aseptic_cell"), "sim", "assets")
        if os.path.isfile(os.path.join(installed, ASSETS[0])):
            return installed
    except Exception:  # no ament index (source tree, tests)
        pass
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sim", "assets")


def robot_description(directory: str) -> str:
    """The URDF text with the controllers YAML's absolute path substituted."""
    with open(os.path.join(directory, ASSETS[0]), encoding="utf-8") as f:
        urdf = f.read()
    return urdf.replace(PLACEHOLDER, os.path.abspath(os.path.join(directory, ASSETS[3])))


def generate_launch_description():
    from ament_index_python.packages import get_package_share_directory
    from launch.actions import IncludeLaunchDescription, RegisterEventHandler
    from launch.event_handlers import OnProcessExit
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from launch_ros.actions import Node

    from launch import LaunchDescription

    directory = assets_dir()
    world = os.path.join(directory, ASSETS[1])
    gz = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            os.path.join(get_package_share_directory("ros_gz_sim"), "launch", "gz_sim.launch.py")),
        launch_arguments={"gz_args": f"-r {world}", "on_exit_shutdown": "true"}.items(),
    )
    rsp = Node(package="robot_state_publisher", executable="robot_state_publisher", output="screen",
               parameters=[{"robot_description": robot_description(directory), "use_sim_time": True}],
               remappings=[("/joint_states", f"{NAMESPACE}/joint_states")])
    spawn = Node(package="ros_gz_sim", executable="create", output="screen",
                 arguments=["-topic", "robot_description", "-name", "aseptic_cell_arm"])
    bridge = Node(package="ros_gz_bridge", executable="parameter_bridge", output="screen",
                  parameters=[{"config_file": os.path.join(directory, ASSETS[2]), "use_sim_time": True}])
    cm = f"{NAMESPACE}/controller_manager"
    jsb = Node(package="controller_manager", executable="spawner", output="screen",
               arguments=["joint_state_broadcaster", "--controller-manager", cm])
    jtc = Node(package="controller_manager", executable="spawner", output="screen",
               arguments=["joint_trajectory_controller", "--controller-manager", cm])
    return LaunchDescription([
        gz, rsp, bridge, spawn,
        RegisterEventHandler(OnProcessExit(target_action=spawn, on_exit=[jsb])),
        RegisterEventHandler(OnProcessExit(target_action=jsb, on_exit=[jtc])),
    ])
