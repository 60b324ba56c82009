"""Wire compatibility: cyclonedds serialises our generated types to rosbags' CDR bytes."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from dds_helpers import assert_msg_equal, dds_domain  # noqa: F401 (fixture)

from uwm_ros.msgs import ACTION_CHUNK, PREDICTED_FRAMES, new_message, typestore
from uwm_ros.transport.dds import dds_topic, ros_topic
from uwm_ros.transport.idl import IdlTypes, dds_typename, ros_msgtype


def _stamp(sec: int = 1_700_000_000, nanosec: int = 123_456_789) -> Any:
    return new_message(typestore(), "builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec)


def _header(frame_id: str = "cam") -> Any:
    return new_message(typestore(), "std_msgs/msg/Header", stamp=_stamp(), frame_id=frame_id)


def _image(height: int = 6, width: int = 5, seed: int = 0) -> Any:
    data = np.random.default_rng(seed).integers(0, 256, height * width * 3, dtype=np.uint8)
    return new_message(
        typestore(), "sensor_msgs/msg/Image", header=_header(), height=height, width=width,
        encoding="rgb8", step=width * 3, data=data,
    )  # fmt: skip


def _messages() -> dict[str, Any]:
    """One message per type the node exchanges, odd sizes so alignment and padding matter."""
    store = typestore()
    point = new_message(
        store, "trajectory_msgs/msg/JointTrajectoryPoint", positions=[0.1, -0.2, 0.3],
        velocities=[1.0], time_from_start=new_message(store, "builtin_interfaces/msg/Duration",
                                                      sec=0, nanosec=50_000_000),
    )  # fmt: skip
    return {
        "sensor_msgs/msg/Image": _image(),
        "sensor_msgs/msg/CompressedImage": new_message(
            store, "sensor_msgs/msg/CompressedImage", header=_header(), format="jpeg",
            data=b"\xff\xd8\xff\xe0odd",
        ),
        "sensor_msgs/msg/JointState": new_message(
            store, "sensor_msgs/msg/JointState", header=_header(""), name=["j1", "joint_2"],
            position=[0.5, -1.25], velocity=[0.0, 1e-3], effort=[],
        ),
        "trajectory_msgs/msg/JointTrajectory": new_message(
            store, "trajectory_msgs/msg/JointTrajectory", header=_header(""),
            joint_names=["a", "bb", "ccc"], points=[point, point],
        ),
        ACTION_CHUNK: new_message(
            store, ACTION_CHUNK, header=_header(""), start=_stamp(nanosec=5), dt=0.1,
            names=["x", "y", "gripper"], horizon=2, action_dim=3, data=np.arange(6) * 0.5,
            sequence=2**40 + 3, mode="policy", inference_ms=12.5,
        ),
        PREDICTED_FRAMES: new_message(
            store, PREDICTED_FRAMES, header=_header(), camera="front",
            stamps=[_stamp(nanosec=1), _stamp(nanosec=2)], frames=[_image(seed=1), _image(3, 7, 2)],
            mode="video", sequence=7,
        ),
    }  # fmt: skip


MESSAGES = _messages()


@pytest.mark.parametrize("msgtype", list(MESSAGES))
def test_cyclonedds_bytes_equal_rosbags_cdr(msgtype: str) -> None:
    store, msg = typestore(), MESSAGES[msgtype]
    codec = IdlTypes(store).codec(msgtype)
    wire = codec.to_idl(msg).serialize()
    assert wire == bytes(store.serialize_cdr(msg, msgtype))
    assert wire[:4] == b"\x00\x01\x00\x00"  # CDR little endian = XCDR1, what ROS 2 sends
    back = codec.to_ros(codec.idl.deserialize(wire))
    assert type(back) is store.types[msgtype]
    assert_msg_equal(back, msg)


def test_octet_fields_are_bytes_and_come_back_as_arrays() -> None:
    codec = IdlTypes(typestore()).codec("sensor_msgs/msg/Image")
    sample = codec.to_idl(MESSAGES["sensor_msgs/msg/Image"])
    assert isinstance(sample.data, bytes)  # one memcpy, not a Python int per pixel
    back = codec.to_ros(sample)
    assert back.data.dtype == np.uint8 and back.data.base is not None  # a view, no copy


def test_duck_typed_messages_and_plain_values() -> None:
    """What conversion code builds for rclpy (any object, lists, bytearray) serialises alike."""
    store, msgtype = typestore(), "sensor_msgs/msg/JointState"
    codec = IdlTypes(store).codec(msgtype)
    reference = MESSAGES[msgtype]
    duck = SimpleNamespace(
        header=SimpleNamespace(stamp=SimpleNamespace(sec=1_700_000_000, nanosec=123_456_789),
                               frame_id=""),
        name=("j1", "joint_2"), position=[0.5, -1.25], velocity=np.array([0.0, 1e-3]), effort=(),
    )  # fmt: skip
    assert codec.to_idl(duck).serialize() == bytes(store.serialize_cdr(reference, msgtype))
    image = MESSAGES["sensor_msgs/msg/Image"]
    images = IdlTypes(store).codec("sensor_msgs/msg/Image")
    expected = images.to_idl(image).serialize()
    for data in (bytearray(image.data.tobytes()), image.data.tolist(), image.data.reshape(6, 5, 3)):
        assert images.to_idl(replace(image, data=data)).serialize() == expected


def test_type_info_for_topics(dds_domain: int) -> None:  # noqa: F811
    from cyclonedds.domain import DomainParticipant
    from cyclonedds.topic import Topic

    types = IdlTypes(typestore())
    participant = DomainParticipant(dds_domain)
    for msgtype in MESSAGES:
        topic = Topic(
            participant, "rt/t" + msgtype.replace("/", "_"), types.codec(msgtype).topic_type()
        )
        assert topic.get_type_name() == dds_typename(msgtype)


def test_names() -> None:
    assert dds_typename("sensor_msgs/msg/Image") == "sensor_msgs::msg::dds_::Image_"
    assert ros_msgtype("uwm_ros::msg::dds_::ActionChunk_") == ACTION_CHUNK
    assert ros_msgtype("DCPSParticipant") is None
    assert dds_topic("/joint_states", "n") == "rt/joint_states"
    assert dds_topic("camera/image_raw", "n") == "rt/camera/image_raw"
    assert dds_topic("~/action_chunk", "uwm_policy") == "rt/uwm_policy/action_chunk"
    assert ros_topic("rt/uwm_policy/action_chunk") == "/uwm_policy/action_chunk"
    assert ros_topic("ros_discovery_info") is None
    for bad in ("", "/", "//a", "/a//b", "/a/", "/1a", "/a-b", "~a"):
        with pytest.raises(ValueError):
            dds_topic(bad, "n")
