"""ros2 launch uwm_ros policy.launch.py bundle:=/path/to/bundle [enabled:=true] [urdf:=robot.urdf]

Starts the policy node with config/policy.yaml (keyed ``/**``, so ``namespace:=`` works;
overridable), optionally RViz with config/rviz/uwm.rviz moved under the namespace, and, given a
URDF, a robot_state_publisher for the "ghost" robot that shows the end of each predicted chunk
(frames prefixed ``ghost/``, placed by a static transform base_link -> ghost/base_link).

Topics are relative, so they follow ``namespace:=``; ``camera:=`` and ``joint_states:=`` remap
the inputs (the camera argument names the bundle's first camera's image topic). With
``lifecycle:=true`` the node is a managed LifecycleNode; ``autostart:=true`` (the default)
configures and activates it at once, ``autostart:=false`` leaves that to ``ros2 lifecycle set``
or a lifecycle manager. ``use_sim_time:=true`` takes the time from /clock (bag replay, sim).
"""

import tempfile
from pathlib import Path

import launch_ros.events.lifecycle
from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.conditions import IfCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from lifecycle_msgs.msg import Transition

from launch import LaunchDescription
from uwm_ros.nodes.rviz import namespaced_rviz

SHARE = Path(get_package_share_directory("uwm_ros"))


def _arg(name):
    return LaunchConfiguration(name)


def _policy_nodes(context, *args, **kwargs):
    """The policy node (plain or managed), its remappings, and the lifecycle autostart."""
    lifecycle = _arg("lifecycle").perform(context).lower() == "true"
    remappings = [("joint_states", _arg("joint_states"))]
    camera = _arg("camera").perform(context)
    if camera:
        remappings.append((f"camera/{_arg('camera_name').perform(context)}/image_raw", camera))
    common = dict(
        package="uwm_ros",
        executable="policy_node",
        name="uwm_policy",
        namespace=_arg("namespace"),
        output="screen",
        remappings=remappings,
        parameters=[
            _arg("params_file"),
            {
                "bundle": _arg("bundle"),
                "backend": _arg("backend"),
                "enabled": _arg("enabled"),
                "lifecycle": lifecycle,
                "use_sim_time": _arg("use_sim_time"),
            },
        ],
    )
    if not lifecycle:
        return [Node(**common)]
    node = LifecycleNode(**common)
    configure = EmitEvent(
        event=launch_ros.events.lifecycle.ChangeState(
            lifecycle_node_matcher=matches_action(node),
            transition_id=Transition.TRANSITION_CONFIGURE,
        ),
        condition=IfCondition(_arg("autostart")),
    )
    activate = RegisterEventHandler(
        OnStateTransition(
            target_lifecycle_node=node,
            goal_state="inactive",
            entities=[
                EmitEvent(
                    event=launch_ros.events.lifecycle.ChangeState(
                        lifecycle_node_matcher=matches_action(node),
                        transition_id=Transition.TRANSITION_ACTIVATE,
                    )
                )
            ],
        ),
        condition=IfCondition(_arg("autostart")),
    )
    return [node, activate, configure]


def _ghost_robot(context, *args, **kwargs):
    urdf = _arg("urdf").perform(context)
    if not urdf:
        return []
    ns = _arg("namespace")
    return [
        Node(
            package="robot_state_publisher",
            executable="robot_state_publisher",
            name="ghost_state_publisher",
            namespace=ns,
            parameters=[
                {
                    "robot_description": Path(urdf).read_text(),
                    "frame_prefix": "ghost/",
                    "use_sim_time": _arg("use_sim_time"),
                }
            ],
            remappings=[
                ("joint_states", "uwm_policy/predicted_joint_states"),
                ("robot_description", "ghost/robot_description"),
            ],
        ),
        Node(  # the ghost's root on top of the real robot's, so RViz can place it
            package="tf2_ros",
            executable="static_transform_publisher",
            name="ghost_base",
            namespace=ns,
            arguments=["--frame-id", "base_link", "--child-frame-id", "ghost/base_link"],
        ),
    ]


def _rviz(context, *args, **kwargs):
    text = (SHARE / "config" / "rviz" / "uwm.rviz").read_text()
    config = Path(tempfile.mkdtemp(prefix="uwm_rviz_")) / "uwm.rviz"
    config.write_text(namespaced_rviz(text, _arg("namespace").perform(context)))
    return [
        Node(
            package="rviz2",
            executable="rviz2",
            namespace=_arg("namespace"),
            arguments=["-d", str(config)],
            parameters=[{"use_sim_time": _arg("use_sim_time")}],
        )
    ]


def generate_launch_description():
    args = [
        DeclareLaunchArgument("bundle", description="policy bundle directory (uwm export)"),
        DeclareLaunchArgument("params_file", default_value=str(SHARE / "config" / "policy.yaml")),
        DeclareLaunchArgument("backend", default_value="auto"),
        DeclareLaunchArgument("enabled", default_value="false", description="publish actions"),
        DeclareLaunchArgument(
            "lifecycle", default_value="false", description="managed (lifecycle) node"
        ),
        DeclareLaunchArgument(
            "autostart", default_value="true", description="lifecycle: configure and activate"
        ),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="time: /clock"),
        DeclareLaunchArgument("use_rviz", default_value="true"),
        DeclareLaunchArgument("namespace", default_value=""),
        DeclareLaunchArgument("urdf", default_value="", description="URDF for the ghost robot"),
        DeclareLaunchArgument("joint_states", default_value="joint_states"),
        DeclareLaunchArgument("camera", default_value="", description="image topic to remap"),
        DeclareLaunchArgument("camera_name", default_value="front", description="its camera"),
    ]
    rviz = OpaqueFunction(function=_rviz, condition=IfCondition(_arg("use_rviz")))
    return LaunchDescription(
        [
            *args,
            OpaqueFunction(function=_policy_nodes),
            rviz,
            OpaqueFunction(function=_ghost_robot),
        ]
    )
