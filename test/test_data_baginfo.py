"""``uwm bag info``: honest per-topic rates with their clock, the camera check, and a starting
convert config that converts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from data_helpers import (
    JOINTS,
    T0,
    frame_image,
    image_msg,
    joint_positions,
    joint_state_msg,
    robot_messages,
    string_msg,
    write_bag,
)

from uwm_training.cli import main
from uwm_training.data.baginfo import NO_CAMERA, bag_info, format_bag_info
from uwm_training.data.starter import camera_name, supported_fps


def test_rates_come_from_each_topics_own_stamps(tmp_path: Path) -> None:
    """A camera recording 1 s of a 4 s bag is 30 Hz, not 7.5; a single message has no rate."""
    msgs = [m for m in robot_messages(seconds=4.0, drop=()) if m[0] != "/front/image_raw"]
    msgs += [(topic, t, msg) for topic, t, msg in robot_messages(seconds=1.0, drop=())
             if topic == "/front/image_raw"]  # fmt: skip
    msgs.append(("/task", T0 + 2 * 10**9, string_msg("pick")))
    bag = write_bag(tmp_path / "bag", msgs)
    for scan in (False, True):
        info = bag_info(bag, scan=scan)
        topics = info["topics"]
        assert topics["/front/image_raw"]["rate_hz"] == pytest.approx(30, rel=0.1)
        assert topics["/joint_states"]["rate_hz"] == pytest.approx(250, rel=0.05)
        assert topics["/task"]["rate_hz"] is None
        text = format_bag_info(info)
        assert "/task" in text and "each topic's median interval between its own stamps" in text
    assert bag_info(bag)["rates"] == "receive time, whole bag"
    scanned = bag_info(bag, scan=True)
    assert scanned["rates"].startswith("header stamps")
    assert scanned["topics"]["/task"]["clock"] == "receive"  # std_msgs/String has no header
    assert scanned["topics"]["/joint_states"]["clock"] == "header"


def test_long_bag_rates_read_only_the_first_seconds(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "bag", robot_messages(seconds=12.0, joint_hz=50, drop=()))
    info = bag_info(bag)
    assert info["rates"] == "receive time, first 10 s"
    assert info["topics"]["/wrist/image_raw"]["rate_hz"] == pytest.approx(30, rel=0.05)


def test_camera_less_bag_says_it_cannot_feed_the_model(tmp_path: Path) -> None:
    msgs = [m for m in robot_messages(seconds=1.0) if "image" not in m[0]]
    info = bag_info(write_bag(tmp_path / "bag", msgs))
    assert NO_CAMERA in info["problems"] and "cannot feed the model" in format_bag_info(info)
    assert NO_CAMERA not in bag_info(write_bag(tmp_path / "cam", robot_messages(1.0)))["problems"]
    out = tmp_path / "c.yaml"
    assert main(["bag", "info", str(tmp_path / "bag"), "--config-out", str(out)]) == 2
    assert not out.exists()


def test_config_out_writes_a_config_the_first_conversion_works_with(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    msgs = robot_messages(seconds=3.0, drop=()) + [("/episode", T0, string_msg("pick"))]
    bag = write_bag(tmp_path / "bag", msgs, storage="mcap")
    out = tmp_path / "cfg" / "convert.yaml"
    assert main(["bag", "info", str(bag), "--config-out", str(out)]) == 0
    assert f"wrote {out}: fps 10" in capsys.readouterr().err
    cfg = yaml.safe_load(out.read_text())
    assert cfg["fps"] == 10 and cfg["max_skew"] == 0.05
    assert cfg["cameras"] == {"front": {"topic": "/front/image_raw"},
                              "wrist": {"topic": "/wrist/image_raw"}}  # fmt: skip
    assert cfg["joints"] == {"topic": "/joint_states", "names": ["wrist", "shoulder", "elbow"]}
    assert cfg["action"]["source"] == "command" and cfg["action"]["topic"] == "/command"
    assert cfg["episodes"] == {"marker_topic": "/episode", "split_gap": 0.5}
    ds = tmp_path / "ds"
    assert main(["convert", "--config", str(out), "--out", str(ds), "--quiet", str(bag)]) == 0
    assert "30 frames in 1 episodes, action command; 0 frames dropped" in capsys.readouterr().out


def test_config_out_picks_an_fps_the_cameras_support(tmp_path: Path) -> None:
    """A 4 Hz camera and no command topic: fps 4, actions from the joint states."""
    msgs = [("/cam/color/image_raw", T0 + i * 250_000_000,
             image_msg(T0 + i * 250_000_000, frame_image(i, 0))) for i in range(24)]  # fmt: skip
    msgs += [("/joint_states", t, joint_state_msg(t, JOINTS, joint_positions(t)))
             for t in range(T0, T0 + 6 * 10**9, 10_000_000)]  # fmt: skip
    bag = write_bag(tmp_path / "bag", msgs)
    out = tmp_path / "convert.yaml"
    assert main(["bag", "info", str(bag), "--config-out", str(out)]) == 0
    cfg = yaml.safe_load(out.read_text())
    assert cfg["fps"] == 4 and cfg["cameras"] == {"cam": {"topic": "/cam/color/image_raw"}}
    assert cfg["action"] == {"source": "next_positions"}
    args = ["convert", "--config", str(out), "--out", str(tmp_path / "ds"), "--quiet", str(bag)]
    assert main(args) == 0


def test_camera_names_and_fps_choices() -> None:
    assert camera_name("/camera/front/image_raw", set()) == "front"
    assert camera_name("/wrist_cam/color/image_raw/compressed", set()) == "wrist_cam"
    assert camera_name("/camera/image_raw", {"camera"}) == "camera_2"
    assert camera_name("/action/image_raw", set()) == "cam_action"
    assert supported_fps([30.0, 15.0]) == 10 and supported_fps([29.97]) == 10
    assert supported_fps([5.02, 30.0]) == 5 and supported_fps([0.5]) == 0.5
