"""ROS 2 packaging checks that run without ROS: package.xml, msg/*.msg, CMakeLists.txt, colcon."""

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from catkin_pkg.package import parse_package
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

ROOT = Path(__file__).resolve().parents[1]
MSG_FILES = sorted((ROOT / "msg").glob("*.msg"))
BUILDTOOL = {"ament_cmake", "ament_cmake_python", "rosidl_default_generators"}
MSG_DEPS = {"builtin_interfaces", "std_msgs", "sensor_msgs"}  # build + exec: used by msg/*.msg
EXEC = MSG_DEPS | {
    "rclpy",
    "trajectory_msgs",
    "diagnostic_msgs",
    "launch_ros",
    "rviz2",
    "rosidl_default_runtime",
    "python3-numpy",
    "python3-yaml",
    "python3-tqdm",
    "python3-opencv",  # cv2 (image decoding)
    "tf2_ros",  # the ghost robot's static transform
    "lifecycle_msgs",  # the launch file's lifecycle autostart
}


def _names(deps):
    return {d.name for d in deps}


def _referenced_packages(text):
    """Packages named by field types such as `std_msgs/Header` or `sensor_msgs/Image[]`."""
    lines = (line.split("#", 1)[0].split() for line in text.splitlines())
    return {words[0].split("/")[0] for words in lines if words and "/" in words[0]}


def test_package_xml_declares_ros_dependencies():
    pkg = parse_package(ROOT / "package.xml")
    pkg.validate()
    assert (pkg.name, pkg.package_format, pkg.get_build_type()) == ("uwm_ros", 3, "ament_cmake")
    assert BUILDTOOL <= _names(pkg.buildtool_depends)
    assert MSG_DEPS <= _names(pkg.build_depends)
    assert EXEC <= _names(pkg.exec_depends)
    assert "rosidl_interface_packages" in _names(pkg.member_of_groups)


def test_colcon_test_runs_the_pytest_suite():
    cmake = re.sub(r"#[^\n]*", "", (ROOT / "CMakeLists.txt").read_text())
    assert re.search(r"ament_add_pytest_test\(\s*\w+\s+test\b", cmake)
    assert "ament_cmake_pytest" in _names(parse_package(ROOT / "package.xml").test_depends)


def test_cmakelists_generates_every_msg_file():
    assert MSG_FILES, "msg/ is empty"
    cmake = re.sub(r"#[^\n]*", "", (ROOT / "CMakeLists.txt").read_text())
    block = re.search(r"rosidl_generate_interfaces\(\s*\$\{PROJECT_NAME\}(.*?)\)", cmake, re.S)
    assert block, "rosidl_generate_interfaces(${PROJECT_NAME} ...) not found"
    body = block.group(1)
    assert set(re.findall(r"msg/\w+\.msg", body)) == {f"msg/{p.name}" for p in MSG_FILES}
    deps = set(body.partition("DEPENDENCIES")[2].split())
    for path in MSG_FILES:
        # Every package a .msg refers to must be a rosidl DEPENDENCY and a package.xml <depend>.
        assert _referenced_packages(path.read_text()) <= deps & MSG_DEPS, path.name


@pytest.mark.parametrize("path", MSG_FILES, ids=lambda p: p.name)
def test_msg_is_ascii(path):
    # Non-ASCII in .msg comments breaks some toolchains (ros2/rcl_interfaces#147).
    path.read_bytes().decode("ascii")


@pytest.fixture(params=[Stores.ROS2_HUMBLE, Stores.ROS2_JAZZY], ids=["humble", "jazzy"])
def typestore(request):
    store = get_typestore(request.param)
    for path in MSG_FILES:
        store.register(get_types_from_msg(path.read_text(), f"uwm_ros/msg/{path.stem}"))
    return store


def _assert_same(got, want):
    if dataclasses.is_dataclass(want):
        assert type(got).__name__ == type(want).__name__
        for field in dataclasses.fields(want):
            _assert_same(getattr(got, field.name), getattr(want, field.name))
    elif isinstance(want, np.ndarray):
        assert got.dtype == want.dtype and np.array_equal(got, want)
    elif isinstance(want, list):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            _assert_same(g, w)
    else:
        assert got == want


def test_cdr_round_trip(typestore):
    t = typestore.types
    time = t["builtin_interfaces/msg/Time"]
    header = t["std_msgs/msg/Header"](stamp=time(sec=12, nanosec=345), frame_id="base")
    chunk = t["uwm_ros/msg/ActionChunk"](
        header=header,
        start=time(sec=12, nanosec=400_000_000),
        dt=0.125,  # float32-exact values
        names=["j1", "j2"],
        kind="positions",
        horizon=3,
        action_dim=2,
        data=np.arange(6, dtype=np.float32) / 7,
        sequence=2**40 + 1,
        mode="policy",
        inference_ms=12.5,
    )
    image = t["sensor_msgs/msg/Image"](
        header=header,
        height=2,
        width=3,
        encoding="rgb8",
        is_bigendian=0,
        step=9,
        data=np.arange(18, dtype=np.uint8),
    )
    frames = t["uwm_ros/msg/PredictedFrames"](
        header=header,
        camera="wrist",
        stamps=[time(sec=13, nanosec=0)],
        frames=[image],
        mode="joint",
        sequence=7,
    )
    for msg in (chunk, frames):
        typename = msg.__msgtype__
        raw = typestore.serialize_cdr(msg, typename)
        _assert_same(typestore.deserialize_cdr(raw, typename), msg)


def test_colcon_lists_one_ament_cmake_package(tmp_path):
    pytest.importorskip("colcon_core")
    pytest.importorskip("colcon_ros")  # identifies package.xml packages (ros.*)
    pytest.importorskip("colcon_package_information")  # provides the `list` verb
    env = {**os.environ, "COLCON_HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "colcon", "--log-base", os.devnull, "list"]
    out = subprocess.run(
        [*cmd, "--base-paths", str(ROOT)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    rows = [line.split("\t") for line in out.stdout.splitlines() if line.strip()]
    assert [(name, kind) for name, _, kind in rows] == [("uwm_ros", "(ros.ament_cmake)")]
    assert Path(rows[0][1]).resolve() == ROOT
