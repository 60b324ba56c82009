"""Launch files compile, node parameters in config/ match the node, installed scripts run."""

from __future__ import annotations

import os
import py_compile
import re
from pathlib import Path

import yaml

from uwm_ros.nodes.policy_node import DEFAULTS
from uwm_ros.nodes.rviz import namespaced_rviz

ROOT = Path(__file__).resolve().parents[1]


def test_launch_files_compile(tmp_path: Path) -> None:
    files = sorted((ROOT / "launch").glob("*.launch.py"))
    assert files
    for f in files:
        py_compile.compile(str(f), cfile=str(tmp_path / (f.name + "c")), doraise=True)


def test_policy_yaml_names_only_real_parameters() -> None:
    text = (ROOT / "config" / "policy.yaml").read_text()
    params = yaml.safe_load(text)["/**"]["ros__parameters"]  # any node name or namespace
    commented = set(re.findall(r"^\s*#\s*(\w+):", text, re.M))
    assert set(params) | commented == set(DEFAULTS)  # every parameter documented, none invented
    for key, value in params.items():
        assert type(value) is type(DEFAULTS[key]), key  # ROS parameter types are strict


def test_rviz_config_shows_cameras_predictions_and_ghost() -> None:
    rviz = yaml.safe_load((ROOT / "config" / "rviz" / "uwm.rviz").read_text())
    displays = {d["Name"]: d for d in rviz["Visualization Manager"]["Displays"]}
    assert displays["Predicted"]["Topic"]["Value"].endswith("/predicted/front/image_raw")
    assert displays["GhostRobot"]["TF Prefix"] == "ghost"


def test_rviz_config_follows_the_namespace() -> None:
    text = (ROOT / "config" / "rviz" / "uwm.rviz").read_text()
    assert namespaced_rviz(text, "") == text
    rviz = yaml.safe_load(namespaced_rviz(text, "/arm1/"))
    displays = {d["Name"]: d for d in rviz["Visualization Manager"]["Displays"]}
    assert displays["Camera"]["Topic"]["Value"] == "/arm1/camera/front/image_raw"
    assert displays["Predicted"]["Topic"]["Value"] == "/arm1/uwm_policy/predicted/front/image_raw"
    assert displays["GhostRobot"]["Description Topic"]["Value"] == "/arm1/ghost/robot_description"
    assert rviz["Visualization Manager"]["Global Options"]["Fixed Frame"] == "base_link"


def test_launch_file_is_ros_conventional() -> None:
    """What a ROS user expects (the launch file cannot run here without ROS 2)."""
    text = (ROOT / "launch" / "policy.launch.py").read_text()
    for needle in ("LifecycleNode(", "TRANSITION_CONFIGURE", "TRANSITION_ACTIVATE",
                   '"use_sim_time"', "static_transform_publisher", '"ghost/base_link"',
                   "namespaced_rviz", 'remappings=remappings'):  # fmt: skip
        assert needle in text, needle
    assert "joint_states_topic" not in text and "camera_topics" not in text  # no topic params


def test_node_scripts_are_executable_python() -> None:
    for script in (ROOT / "scripts").iterdir():
        assert os.access(script, os.X_OK), script
        assert script.read_text().startswith("#!/usr/bin/env python3"), script


ROS_PACKAGES = {  # top-level modules that come from ROS packages, not from PyPI
    "rclpy",
    "rcl_interfaces",
    "launch",
    "launch_ros",
    "ament_index_python",
    "sensor_msgs",
    "std_msgs",
    "trajectory_msgs",
    "diagnostic_msgs",
    "builtin_interfaces",
    "cv_bridge",
}


def test_package_xml_declares_every_ros_package_the_code_imports() -> None:
    from catkin_pkg.package import parse_package

    pkg = parse_package(str(ROOT / "package.xml"))
    declared = {d.name for d in pkg.build_depends + pkg.exec_depends + pkg.test_depends}
    sources = [*(ROOT / "uwm_ros").rglob("*.py"), *(ROOT / "launch").glob("*.py")]
    imported = set()
    for src in sources:
        for mod in re.findall(r"^\s*(?:from|import)\s+([a-z_0-9]+)", src.read_text(), re.M):
            imported.add(mod)
    ros_imports = imported & ROS_PACKAGES
    assert ros_imports >= {"rclpy", "launch_ros"}  # the scan sees the adapter and the launch file
    assert ros_imports <= declared, sorted(ros_imports - declared)
