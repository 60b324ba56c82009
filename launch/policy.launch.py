"""ros2 launch uwm_ros policy.launch.py bundle:=/path/to/bundle [use_rviz:=true] [urdf:=robot.urdf]

Starts the policy node with config/policy.yaml (overridable), optionally RViz with
config/rviz/uwm.rviz, and, given a URDF, a robot_state_publisher for the "ghost" robot that
shows the end of each predicted action chunk (frames prefixed ``ghost/``). With
``lifecycle:=true`` the node waits unconfigured for ``ros2 lifecycle set /uwm_policy configure``
(loads the engine) and ``activate`` (starts publishing), or a lifecycle manager.
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription


def _ghost_robot(context, *args, **kwargs):
    urdf = LaunchConfiguration("urdf").perform(context)
    if not urdf:
        return []
    return [
        Node(
            package="robot_state_publisher",
            executable="robot_state_publisher",
            name="ghost_state_publisher",
            namespace=LaunchConfiguration("namespace"),
            parameters=[{"robot_description": Path(urdf).read_text(), "frame_prefix": "ghost/"}],
            remappings=[("joint_states", "uwm_policy/predicted_joint_states")],
        )
    ]


def generate_launch_description():
    share = Path(get_package_share_directory("uwm_ros"))
    args = [
        DeclareLaunchArgument("bundle", description="policy bundle directory (uwm export)"),
        DeclareLaunchArgument("params_file", default_value=str(share / "config" / "policy.yaml")),
        DeclareLaunchArgument("backend", default_value="auto"),
        DeclareLaunchArgument("enabled", default_value="false", description="publish actions"),
        DeclareLaunchArgument(
            "lifecycle", default_value="false", description="managed node: wait for configure"
        ),
        DeclareLaunchArgument("use_rviz", default_value="true"),
        DeclareLaunchArgument("namespace", default_value=""),
        DeclareLaunchArgument("urdf", default_value="", description="URDF for the ghost robot"),
        DeclareLaunchArgument("joint_states", default_value="/joint_states"),
    ]
    policy = Node(
        package="uwm_ros",
        executable="policy_node",
        name="uwm_policy",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "bundle": LaunchConfiguration("bundle"),
                "backend": LaunchConfiguration("backend"),
                "enabled": LaunchConfiguration("enabled"),
                "lifecycle": LaunchConfiguration("lifecycle"),
                "joint_states_topic": LaunchConfiguration("joint_states"),
            },
        ],
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        arguments=["-d", str(share / "config" / "rviz" / "uwm.rviz")],
        condition=IfCondition(LaunchConfiguration("use_rviz")),
    )
    return LaunchDescription([*args, policy, rviz, OpaqueFunction(function=_ghost_robot)])
