"""The fast Image/JointState readers give rosbags' fields for any layout (alignment, endianness)."""

from __future__ import annotations

import numpy as np
import pytest
from data_helpers import TS, header, image_msg, joint_state_msg
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from uwm_training.data.cdr import fast_reader, read_image, read_joint_state

FRAME_IDS = ["", "a", "ab", "abc", "abcd", "camera_link"]


@pytest.mark.parametrize("little", [True, False])
@pytest.mark.parametrize("frame_id", FRAME_IDS)
def test_image_fields_match_rosbags(frame_id: str, little: bool) -> None:
    rng = np.random.default_rng(len(frame_id))
    for encoding, pad in [("rgb8", 0), ("mono16", 3), ("bgra8", 1)]:
        msg = image_msg(7, rng.integers(0, 256, (5, 7, 3), dtype=np.uint8), encoding, pad)
        msg.header = header(123_456_789_012, frame_id)
        raw = TS.serialize_cdr(msg, msg.__msgtype__, little_endian=little)
        want, got = TS.deserialize_cdr(raw, msg.__msgtype__), read_image(raw)
        for field in ("encoding", "height", "width", "step", "is_bigendian"):
            assert getattr(got, field) == getattr(want, field), field
        np.testing.assert_array_equal(got.data, want.data)


@pytest.mark.parametrize("little", [True, False])
@pytest.mark.parametrize("frame_id", FRAME_IDS)
def test_joint_state_fields_match_rosbags(frame_id: str, little: bool) -> None:
    cases = [(["a", "elbow", "wrist_3"], [1.5, -2.0, 3.25], [0.1, 0.2, 0.3], []),
             (["j"], [], [], [4.0]), ([], [], [], [])]  # fmt: skip
    for names, pos, vel, eff in cases:
        msg = joint_state_msg(0, names, pos, vel, eff)
        msg.header = header(5, frame_id)
        raw = TS.serialize_cdr(msg, msg.__msgtype__, little_endian=little)
        want, got = TS.deserialize_cdr(raw, msg.__msgtype__), read_joint_state(raw)
        assert got.name == list(want.name)
        for field in ("position", "velocity", "effort"):
            np.testing.assert_array_equal(getattr(got, field), getattr(want, field))


def test_a_repeated_name_list_is_reused_and_a_changed_one_read() -> None:
    """Names are taken from the last message when their bytes are the same: check a stream of
    two publishers, shifting alignments, both byte orders and a list that changes length."""
    lists = [["shoulder", "elbow"], ["shoulder", "elbow"], ["shoulder", "elbo"], ["a"],
             ["shoulder", "elbow", "wrist"], ["shoulder", "elbow"]]  # fmt: skip
    for i, names in enumerate(lists * 2):
        msg = joint_state_msg(0, names, [float(i)] * len(names), [], [])
        msg.header = header(5, FRAME_IDS[i % len(FRAME_IDS)])
        raw = TS.serialize_cdr(msg, msg.__msgtype__, little_endian=i < len(lists))
        want, got = TS.deserialize_cdr(raw, msg.__msgtype__), read_joint_state(raw)
        assert got.name == list(want.name) == names
        np.testing.assert_array_equal(got.position, want.position)


def test_only_the_standard_definitions_are_read_fast() -> None:
    assert fast_reader(TS, "sensor_msgs/msg/Image") is read_image
    assert fast_reader(TS, "sensor_msgs/msg/CompressedImage") is None  # rosbags reads it
    custom = get_typestore(Stores.EMPTY)
    types = {k: v for k, v in TS.fielddefs.items() if k != "sensor_msgs/msg/JointState"}
    types.update(
        get_types_from_msg("std_msgs/Header header\nstring name\n", "sensor_msgs/msg/JointState")
    )
    custom.register(types)
    assert fast_reader(custom, "sensor_msgs/msg/JointState") is None
