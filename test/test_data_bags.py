"""Messy field bags convert like clean ones; ``bag info`` describes any input, no tracebacks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from data_helpers import (
    T0,
    Raw,
    convert,
    convert_config,
    downgrade_metadata,
    downgrade_sqlite,
    edit_metadata,
    header,
    robot_messages,
    split_bag,
    storage_file,
    write_bag,
)

from uwm_training.data.baginfo import bag_info, format_bag_info
from uwm_training.data.config import load_config
from uwm_training.data.convert import bag_jobs, build_dataset
from uwm_training.data.errors import BagError
from uwm_training.data.store import Store

MSGS = robot_messages(seconds=1.5)


def clean(tmp: Path) -> Path:
    return write_bag(tmp / "bag", MSGS)


def dot_bag_folder(tmp: Path) -> Path:
    return write_bag(tmp / "recording.bag", MSGS)


def standalone_mcap(tmp: Path) -> Path:
    bag = write_bag(tmp / "bag", MSGS, storage="mcap")
    return storage_file(bag).rename(tmp / "alone.mcap")


def old_metadata(version: int, qos_column: bool) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        bag = write_bag(tmp / "bag", MSGS, version=8)
        downgrade_metadata(bag, version)
        downgrade_sqlite(bag, with_qos=qos_column)
        return bag

    return make


def ros1_names(tmp: Path) -> Path:
    return write_bag(tmp / "bag", MSGS, storage="mcap", ros1_names=True)


def unknown_and_service_topics(tmp: Path) -> Path:
    extra = [
        ("/vendor/blob", T0 + i, Raw("vendor_msgs/msg/Blob", "not a definition {", b"\0\1\0\0"))
        for i in range(5)
    ] + [
        ("/add/_service_event", T0 + 10 + i,
         Raw("example_interfaces/srv/AddTwoInts_Event", "service_msgs/ServiceEventInfo info\n"
             "AddTwoInts_Request[<=1] request\nAddTwoInts_Response[<=1] response\n", b"\0\1\0\0"))
        for i in range(3)
    ]  # fmt: skip
    return write_bag(tmp / "bag", MSGS + extra, storage="mcap")


def compressed(
    mode: str, storage: str, pass_file: bool = False, alone: bool = False
) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        bag = write_bag(tmp / "bag", MSGS, storage=storage, compression=mode)
        if alone:  # the storage file without its metadata.yaml
            return storage_file(bag).rename(tmp / storage_file(bag).name)
        return storage_file(bag) if pass_file else bag

    return make


def split(tmp: Path) -> Path:
    return split_bag(tmp / "split", MSGS, parts=3)


def qos_edited(tmp: Path) -> Path:
    bag = write_bag(tmp / "bag", MSGS, storage="mcap")
    info = edit_metadata(bag)
    qos = {"history": "keep_last", "depth": 7, "reliability": "best_effort",
           "durability": "volatile", "deadline": {"sec": 0, "nsec": 0},
           "lifespan": {"sec": 0, "nsec": 0}, "liveliness": "automatic",
           "liveliness_lease_duration": {"sec": 0, "nsec": 0},
           "avoid_ros_namespace_conventions": False}  # fmt: skip
    for topic in info["topics_with_message_count"]:
        topic["topic_metadata"]["offered_qos_profiles"] = [qos]
    edit_metadata(bag, topics_with_message_count=info["topics_with_message_count"])
    return bag


def unnormalized_nanosec(tmp: Path) -> Path:
    msgs = robot_messages(seconds=1.5)
    for _, _, msg in msgs[::3]:
        if hasattr(msg, "header"):  # the same instant, written as (sec - 1, nanosec + 1e9)
            stamp = msg.header.stamp
            msg.header.stamp.sec, msg.header.stamp.nanosec = stamp.sec - 1, stamp.nanosec + 10**9
    return write_bag(tmp / "bag", msgs)


MESSY: dict[str, tuple[Callable[[Path], Path], str | None]] = {
    # name: (make the bag, a warning the report must carry)
    "rosbag2 folder named .bag": (dot_bag_folder, None),
    "standalone .mcap without metadata.yaml": (standalone_mcap, None),
    "metadata v4 + sqlite without definitions": (old_metadata(4, True), None),
    "metadata v5 + sqlite without QoS column": (old_metadata(5, False), None),
    "ROS 1-style type names": (ros1_names, "ROS 1-style type 'sensor_msgs/Image'"),
    "unknown types and service events": (unknown_and_service_topics, "service events"),
    "zstd per message (sqlite3)": (compressed("message", "sqlite3"), None),
    "zstd per message, .db3 passed": (compressed("message", "sqlite3", True), "read as the bag"),
    "zstd per message, lone .mcap": (
        compressed("message", "mcap", alone=True),
        "zstd-compressed though no metadata.yaml says so",
    ),
    "zstd per message, lone .db3": (
        compressed("message", "sqlite3", alone=True),
        "zstd-compressed though no metadata.yaml says so",
    ),
    "split in 3 files": (split, None),
    "zstd per file (mcap)": (compressed("file", "mcap"), None),
    "zstd mcap chunks": (compressed("storage", "mcap"), None),
    "QoS text differs from the storage": (qos_edited, "QoS in metadata.yaml differs"),
    "header nanosec >= 1e9": (unnormalized_nanosec, "nanosec >= 1e9"),
}


@pytest.fixture(scope="module")
def clean_arrays(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    tmp = tmp_path_factory.mktemp("clean")
    convert([clean(tmp)], tmp / "ds", convert_config(tmp))
    store = Store(tmp / "ds")
    frames = np.stack([store.frames("front").read(i) for i in range(store.num_frames)])
    return {
        "joint_pos": store.lowdim("joint_pos"),
        "action": store.lowdim("action"),
        "front": frames,
    }


@pytest.mark.parametrize("name", list(MESSY))
def test_messy_bag_converts_like_a_clean_one(
    tmp_path: Path, name: str, clean_arrays: dict[str, np.ndarray]
) -> None:
    make, warning = MESSY[name]
    (report,) = convert([make(tmp_path)], tmp_path / "ds", convert_config(tmp_path))
    store = Store(tmp_path / "ds")
    np.testing.assert_array_equal(store.lowdim("joint_pos"), clean_arrays["joint_pos"])
    np.testing.assert_array_equal(store.lowdim("action"), clean_arrays["action"])
    got = np.stack([store.frames("front").read(i) for i in range(store.num_frames)])
    np.testing.assert_array_equal(got, clean_arrays["front"])
    if warning:
        assert any(warning in w for w in report["warnings"]), report["warnings"]


def test_bag_info_lists_topics_storage_and_problems(tmp_path: Path) -> None:
    bag = unknown_and_service_topics(tmp_path)
    info = bag_info(bag)
    assert info["storage"] == "mcap" and info["metadata_version"] == 9
    assert info["topics"]["/joint_states"]["count"] == 375
    assert info["topics"]["/front/image_raw"]["type"] == "sensor_msgs/msg/Image"
    assert not info["topics"]["/vendor/blob"]["decodable"]
    text = format_bag_info(info)
    assert "/add/_service_event: service events" in text
    assert "/vendor/blob: type vendor_msgs/msg/Blob has no usable definition" in text
    json.dumps(info)  # --json output


def test_bag_info_scan_finds_stamp_and_count_problems(tmp_path: Path) -> None:
    msgs = robot_messages(seconds=1.5)
    wrist = [m for m in msgs if m[0] == "/wrist/image_raw"]
    wrist[20][2].header.stamp = header(T0).stamp  # one camera stamp jumps back to the start
    bag = write_bag(tmp_path / "bag", msgs, storage="mcap")
    info = edit_metadata(bag)
    info["topics_with_message_count"][0]["message_count"] += 1
    edit_metadata(bag, topics_with_message_count=info["topics_with_message_count"])
    problems = bag_info(bag, scan=True)["problems"]
    assert "/wrist/image_raw: 1 stamps go backwards" in problems
    assert any("but the bag declares" in p for p in problems)
    scanned = bag_info(bag, scan=True)["topics"]["/joint_states"]
    assert scanned["rate_hz"] == pytest.approx(250, rel=0.05)


def test_bag_info_of_standalone_mcap_and_empty_bag(tmp_path: Path) -> None:
    info = bag_info(standalone_mcap(tmp_path))
    assert info["metadata_version"] is None
    assert "none (standalone file)" in format_bag_info(info)
    empty = bag_info(write_bag(tmp_path / "empty", []))
    assert empty["messages"] == 0 and "empty bag: no messages" in empty["problems"]


def test_metadata_yaml_is_parsed_for_old_versions(tmp_path: Path) -> None:
    bag = old_metadata(4, True)(tmp_path)
    meta: Any = yaml.safe_load((bag / "metadata.yaml").read_text())
    assert meta["rosbag2_bagfile_information"]["version"] == 4
    assert bag_info(bag)["metadata_version"] == 4


def test_split_bag_with_files_missing_converts_the_files_present_on_request(
    tmp_path: Path,
) -> None:
    bag = split_bag(tmp_path / "split", MSGS, parts=3)
    (bag / "split_2.mcap").unlink()
    cfg = convert_config(tmp_path)
    with pytest.raises(BagError) as err:
        convert([bag], tmp_path / "ds", cfg)
    assert str(err.value) == (
        f"bag {bag}: split bag: 1 of its 3 storage files are missing (split_2.mcap); "
        "pass --allow-missing-files to convert the 2 present"
    )
    jobs = bag_jobs([bag], load_config(cfg), allow_missing_files=True)
    (report,) = build_dataset(jobs, tmp_path / "ds", progress=False)
    assert any("missing: split_2.mcap" in w for w in report["warnings"])
    whole = sum(1 for m in MSGS if m[0] == "/front/image_raw")
    assert 0.5 * whole < report["streams"]["front"]["messages"] < 0.8 * whole
    assert Store(tmp_path / "ds").num_frames == report["frames"] > 5
    info = bag_info(bag)  # bag info describes what is there
    assert any("missing: split_2.mcap" in p for p in info["problems"])
    assert list(bag.iterdir())  # the bag itself is untouched
    assert sorted(p.name for p in bag.iterdir()) == [
        "metadata.yaml",
        "split_0.mcap",
        "split_1.mcap",
    ]
