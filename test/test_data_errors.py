"""Bad input: one clear error naming bag, topic and field, and nothing written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from data_helpers import (
    JOINTS,
    T0,
    Raw,
    convert,
    convert_config,
    edit_metadata,
    float_array_msg,
    frame_image,
    image_msg,
    joint_positions,
    joint_state_msg,
    leftovers,
    robot_messages,
    storage_file,
    truncate,
    write_bag,
)

from uwm_training.data.errors import BagError, ConfigError, DataError

Case = Callable[[Path], Path]


def robot_bag(path: Path, storage: str = "sqlite3", **kw: Any) -> Path:
    return write_bag(path, robot_messages(seconds=1.5, **kw), storage=storage)


def truncated(storage: str) -> Case:
    def make(tmp: Path) -> Path:
        bag = robot_bag(tmp / "bag", storage)
        truncate(storage_file(bag), 0.6)
        return bag

    return make


def corrupt_mcap(tmp: Path) -> Path:
    bag = robot_bag(tmp / "bag", "mcap")
    file = storage_file(bag)
    data = bytearray(file.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 4000] = b"\xff" * 4000
    file.write_bytes(bytes(data))
    return bag


def no_metadata(tmp: Path) -> Path:
    bag = robot_bag(tmp / "bag", "mcap")
    (bag / "metadata.yaml").unlink()
    return bag


def messages_replaced(tmp: Path, keep: Callable[[Any], bool], extra: list[Any]) -> Path:
    msgs = [m for m in robot_messages(seconds=1.5) if keep(m)] + extra
    return write_bag(tmp / "bag", msgs)


def missing_topic(tmp: Path) -> Path:
    return messages_replaced(tmp, lambda m: m[0] != "/wrist/image_raw", [])


def bad_encoding(tmp: Path) -> Path:
    imgs = [("/wrist/image_raw", T0 + i * 33_000_000,
             image_msg(T0 + i * 33_000_000, frame_image(i, 1), "yuv422"))
            for i in range(45)]  # fmt: skip
    return messages_replaced(tmp, lambda m: m[0] != "/wrist/image_raw", imgs)


def size_change(tmp: Path) -> Path:
    imgs = [("/wrist/image_raw", T0 + i * 33_000_000,
             image_msg(T0 + i * 33_000_000, frame_image(i, 1, (48, 64) if i < 20 else (60, 80))))
            for i in range(45)]  # fmt: skip
    return messages_replaced(tmp, lambda m: m[0] != "/wrist/image_raw", imgs)


def empty(tmp: Path) -> Path:
    return write_bag(tmp / "bag", [])


def stamps_backwards(tmp: Path) -> Path:
    stamps = [T0 + i * 33_000_000 for i in range(45)]
    stamps[30] = stamps[10]  # a camera driver restarting its clock
    imgs = [("/wrist/image_raw", T0 + i * 33_000_000 + 5_000_000, image_msg(s, frame_image(i, 1)))
            for i, s in enumerate(stamps)]  # fmt: skip
    return messages_replaced(tmp, lambda m: m[0] != "/wrist/image_raw", imgs)


def joint_stamps_backwards(tmp: Path) -> Path:
    stamps = list(range(T0, T0 + 1_500_000_000, 10_000_000))
    clock = [s - 400_000_000 if s > T0 + 800_000_000 else s for s in stamps]  # a clock reset
    joints = [("/joint_states", r, joint_state_msg(s, JOINTS, joint_positions(s)))
              for r, s in zip(stamps, clock)]  # fmt: skip
    return messages_replaced(tmp, lambda m: m[0] != "/joint_states", joints)


def joint_missing(tmp: Path) -> Path:
    joints = [("/joint_states", t, joint_state_msg(t, JOINTS[:2], joint_positions(t)[:2]))
              for t in range(T0, T0 + 1_500_000_000, 10_000_000)]  # fmt: skip
    return messages_replaced(tmp, lambda m: m[0] != "/joint_states", joints)


def count_mismatch(tmp: Path) -> Path:
    bag = robot_bag(tmp / "bag", "mcap")
    info = edit_metadata(bag)
    for topic in info["topics_with_message_count"]:
        if topic["topic_metadata"]["name"] == "/joint_states":
            topic["message_count"] += 10
    edit_metadata(bag, topics_with_message_count=info["topics_with_message_count"])
    return bag


def ros1_bag(tmp: Path) -> Path:
    path = tmp / "old.bag"
    path.write_bytes(b"#ROSBAG V2.0\n")
    return path


def undecodable_needed_topic(tmp: Path) -> Path:
    imgs = [("/wrist/image_raw", T0 + i * 33_000_000,
             Raw("vendor_msgs/msg/Frame", "not a definition {", b"\x00\x01\x00\x00"))
            for i in range(45)]  # fmt: skip
    return messages_replaced(tmp, lambda m: m[0] != "/wrist/image_raw", imgs)


CASES: dict[str, tuple[Case, str, str | None, str | None]] = {
    # name: (make bag, message fragment, topic named, field named)
    "truncated sqlite3": (truncated("sqlite3"), "cannot open", None, None),
    "truncated mcap": (truncated("mcap"), "cannot open", None, None),
    "corrupt mcap": (corrupt_mcap, "cannot ", None, None),
    "missing metadata.yaml": (no_metadata, "metadata.yaml is missing", None, None),
    "missing topic": (missing_topic, "topic missing", "/wrist/image_raw", None),
    "unknown encoding": (bad_encoding, "unsupported image encoding 'yuv422'", "/wrist/image_raw",
                         "encoding"),
    "image size change": (size_change, "changed mid-bag from 64x48 to 80x60", "/wrist/image_raw",
                          "height/width"),
    "empty bag": (empty, "empty bag", None, None),
    "stamps backwards": (stamps_backwards, "stamps go backwards", "/wrist/image_raw",
                         "header.stamp"),
    "joint stamps backwards": (joint_stamps_backwards, "stamps go backwards", "/joint_states",
                               "header.stamp"),
    "joint names missing": (joint_missing, "joints ['wrist'] never appear", "/joint_states",
                            "name"),
    "declared count mismatch": (count_mismatch, "read 375 messages but the bag declares 385",
                                "/joint_states", None),
    "ROS 1 bag file": (ros1_bag, "a ROS 1 bag file", None, None),
    "needed topic of an unknown type": (undecodable_needed_topic, "no message definition",
                                        "/wrist/image_raw", None),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_bad_bag_gives_one_clear_error_and_writes_nothing(tmp_path: Path, name: str) -> None:
    make, fragment, topic, field = CASES[name]
    bag = make(tmp_path)
    out = tmp_path / "out" / "ds"
    out.parent.mkdir()
    with pytest.raises(BagError) as err:
        convert([bag], out, convert_config(tmp_path))
    message = str(err.value)
    assert f"bag {bag}" in message and fragment in message, message
    assert err.value.topic == topic and err.value.field == field, message
    assert "\n" not in message
    assert not out.exists() and not leftovers(out.parent)


def test_failing_bag_leaves_an_appended_dataset_untouched(tmp_path: Path) -> None:
    cfg = convert_config(tmp_path)
    convert([robot_bag(tmp_path / "good")], tmp_path / "ds", cfg)
    before = sorted(
        (p.relative_to(tmp_path), p.stat().st_size) for p in (tmp_path / "ds").rglob("*")
    )
    bad = size_change(tmp_path)
    with pytest.raises(BagError):
        convert([robot_bag(tmp_path / "good2", seed=1), bad], tmp_path / "ds", cfg, append=True)
    after = sorted(
        (p.relative_to(tmp_path), p.stat().st_size) for p in (tmp_path / "ds").rglob("*")
    )
    assert before == after and not leftovers(tmp_path)


def test_existing_output_is_refused_without_append(tmp_path: Path) -> None:
    (tmp_path / "ds").mkdir()
    with pytest.raises(DataError, match="exists; pass --append"):
        convert([robot_bag(tmp_path / "bag")], tmp_path / "ds", convert_config(tmp_path))


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"fps": 0}, "fps: must be > 0"),
        ({"cameras": {"front": {"topic": "front"}}}, "cameras.front.topic: must be a topic name"),
        ({"cameras": {"action": {"topic": "/a"}}}, "cameras: name 'action'"),
        ({"joints": {"topic": "/js"}}, "joints.names: required key missing"),
        ({"action": {"source": "magic"}}, "action.source: must be one of"),
        ({"action": {"source": "deltas"}, "joints": None}, "action.source: 'deltas' needs"),
        ({"episodes": {"min_frames": 0}}, "episodes.min_frames: must be an integer >= 1"),
        ({"bogus": 1}, "bogus: unknown key"),
    ],
)
def test_config_errors_name_file_and_key(tmp_path: Path, overrides: Any, fragment: str) -> None:
    from uwm_training.data.config import load_config

    path = convert_config(tmp_path, **overrides)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: ") and fragment in str(err.value), str(err.value)


def test_header_and_receive_clocks_apart_is_explained(tmp_path: Path) -> None:
    msgs = [m for m in robot_messages(seconds=1.5) if m[0] != "/command"]
    for _, _, msg in msgs:  # sim-time header stamps: seconds since the simulation started
        msg.header.stamp.sec -= T0 // 10**9
    msgs += [("/command", T0 + i * 50_000_000, float_array_msg([1.0])) for i in range(30)]
    bag = write_bag(tmp_path / "bag", msgs)
    action = {"source": "command", "topic": "/command", "names": ["grip"]}
    with pytest.raises(BagError, match="sim time"):
        convert([bag], tmp_path / "ds", convert_config(tmp_path, action=action))


# ----- conversions that would lose data ---------------------------------------------------------
def slow_camera_bag(tmp: Path) -> Path:
    """A 1 Hz camera for 20 s with joints at 100 Hz."""
    msgs: list[Any] = [
        ("/front/image_raw", T0 + i * 10**9, image_msg(T0 + i * 10**9, frame_image(i, 0)))
        for i in range(20)
    ]
    msgs += [("/joint_states", t, joint_state_msg(t, JOINTS, joint_positions(t)))
             for t in range(T0, T0 + 20 * 10**9, 10_000_000)]  # fmt: skip
    return write_bag(tmp / "bag", msgs)


def slow_camera_config(tmp: Path, **overrides: Any) -> Path:
    cameras = {"front": {"topic": "/front/image_raw"}}
    return convert_config(tmp, cameras=cameras, action={"source": "none"}, **overrides)


def test_camera_slower_than_fps_fails_with_the_fix_unless_allowed(tmp_path: Path) -> None:
    """1 Hz camera, fps 10: 0 episodes (split at every gap) used to be a silent success."""
    bag, out = slow_camera_bag(tmp_path), tmp_path / "new" / "ds"
    cfg = slow_camera_config(tmp_path, episodes={"split_gap": 0.5, "min_frames": 5})
    with pytest.raises(DataError) as err:
        convert([bag], out, cfg)
    message = str(err.value)
    assert f"{bag}: no episodes from " in message and "\n" not in message
    assert "front runs at 1 Hz, slower than fps 10" in message
    assert "set fps: 1 (or cameras.front.max_skew: 0.5" in message
    assert "shorter than episodes.min_frames (5)" in message and "--allow-losses" in message
    assert not out.parent.exists()  # nothing on disk, not even the folder made for it
    (report,) = convert([bag], out, cfg, allow_losses=True)
    assert report["episodes"] == 0
    # the suggested fix works: every camera frame on the 1 fps grid, nothing lost
    (report,) = convert([bag], tmp_path / "fixed", slow_camera_config(tmp_path, fps=1))
    assert report["frames"] == 20 and report["dropped"] == 0


def test_too_many_dropped_frames_fail_in_the_cli_unless_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without episode splitting, a 1 Hz camera at fps 10 loses 90 % of the frames."""
    from uwm_training.cli import main

    args = ["convert", "--config", str(slow_camera_config(tmp_path)), "--out"]
    args_end = ["--quiet", str(slow_camera_bag(tmp_path))]
    assert main([*args, str(tmp_path / "a"), *args_end]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "lost 171 of 191 frames (90%" in err
    assert err.count("\n") == 1 and not leftovers(tmp_path)
    assert main([*args, str(tmp_path / "b"), "--allow-losses", *args_end]) == 0
    assert "20 frames in 1 episodes" in capsys.readouterr().out
