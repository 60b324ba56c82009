"""Fast readers of the CDR bytes of the two messages every frame decodes: Image and JointState.

rosbags' generic deserialiser costs ~12 us for a sensor_msgs/Image and as much for a JointState,
about what the rest of a frame costs together; these walk the bytes directly (~2 us) and
return the fields the converter reads (numpy views of the arrays, as rosbags gives). They are
used only when the bag's definitions of the types are the standard ones (else rosbags decodes);
the test suite checks them against rosbags field by field. Layout (XCDR1, what ROS 2 writes):
a 4-byte encapsulation header (byte 1 bit 0: little endian), then fields, each aligned to its
size counted from the end of that header; strings and sequences are a uint32 count first.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from rosbags.typesys import get_types_from_msg
from rosbags.typesys.store import Typestore

IMAGE, JOINT_STATE = "sensor_msgs/msg/Image", "sensor_msgs/msg/JointState"
# The ROS 2 definitions these readers follow (the same in every distro since Foxy).
_STANDARD = {
    IMAGE: "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\n"
    "uint8 is_bigendian\nuint32 step\nuint8[] data\n",
    JOINT_STATE: "std_msgs/Header header\nstring[] name\nfloat64[] position\n"
    "float64[] velocity\nfloat64[] effort\n",
    "std_msgs/msg/Header": "builtin_interfaces/Time stamp\nstring frame_id\n",
    "builtin_interfaces/msg/Time": "int32 sec\nuint32 nanosec\n",
}
_U32 = {1: struct.Struct("<I").unpack_from, 0: struct.Struct(">I").unpack_from}
_2U32 = {1: struct.Struct("<II").unpack_from, 0: struct.Struct(">II").unpack_from}


class ImageFields(NamedTuple):
    encoding: str
    height: int
    width: int
    step: int
    is_bigendian: int
    data: np.ndarray  # uint8 view of the message bytes


class JointFields(NamedTuple):
    name: list[str]
    position: np.ndarray  # float64 views of the message bytes
    velocity: np.ndarray
    effort: np.ndarray


def _string(raw: bytes | memoryview, pos: int, u32: Any) -> tuple[str, int]:
    """The string whose (aligned) length is at ``pos``, and the position after it."""
    pos += -pos % 4  # (payload offsets are buffer offsets - 4: the same alignment)
    (size,) = u32(raw, pos)
    return bytes(raw[pos + 4 : pos + 3 + size]).decode(), pos + 4 + size


def _array(raw: bytes | memoryview, pos: int, little: int, dtype: str) -> tuple[np.ndarray, int]:
    """The numeric sequence whose count is at ``pos``, and the position after it."""
    pos += -pos % 4
    (count,) = _U32[little](raw, pos)
    pos += 4
    if not count:  # (no alignment padding follows a last, empty sequence)
        return np.empty(0, dtype), pos
    size = np.dtype(dtype).itemsize
    pos += -(pos - 4) % size
    return np.frombuffer(raw, ("<" if little else ">") + dtype, count, pos), pos + count * size


def _after_header(raw: bytes | memoryview, u32: Any) -> int:
    """The position after the std_msgs/Header (stamp at 4, frame_id's length at 12)."""
    (size,) = u32(raw, 12)
    return 16 + size


def read_image(raw: bytes | memoryview) -> ImageFields:
    little = raw[1] & 1
    u32 = _U32[little]
    pos = _after_header(raw, u32)
    pos += -pos % 4
    height, width = _2U32[little](raw, pos)
    encoding, pos = _string(raw, pos + 8, u32)
    is_bigendian = raw[pos]
    pos += 1 + -(pos + 1) % 4
    (step,) = u32(raw, pos)
    data, _ = _array(raw, pos + 4, little, "u1")
    return ImageFields(encoding, height, width, step, is_bigendian, data)


_last_names: tuple[int, bytes, tuple[str, ...]] = (0, b"", ())  # endianness, bytes, the names


def read_joint_state(raw: bytes | memoryview) -> JointFields:
    global _last_names
    little = raw[1] & 1
    u32 = _U32[little]
    pos = _after_header(raw, u32)
    pos += -pos % 4
    # A publisher sends the same names each time: bytes equal to the last list's are that list
    # (the list starts 4-aligned in every message, so its padding lies alike).
    was_little, blob, names = _last_names
    if blob and was_little == little and raw[pos : pos + len(blob)] == blob:
        pos += len(blob)
    else:
        start = pos
        (count,) = u32(raw, pos)
        pos += 4
        parsed = []
        for _ in range(count):
            name, pos = _string(raw, pos, u32)
            parsed.append(name)
        names = tuple(parsed)
        _last_names = (little, bytes(raw[start:pos]), names)
    position, pos = _array(raw, pos, little, "f8")
    velocity, pos = _array(raw, pos, little, "f8")
    effort, _ = _array(raw, pos, little, "f8")
    return JointFields(list(names), position, velocity, effort)


_READERS: dict[str, Callable[[bytes | memoryview], Any]] = {
    IMAGE: read_image,
    JOINT_STATE: read_joint_state,
}


def fast_reader(typestore: Typestore, msgtype: str) -> Callable[[bytes | memoryview], Any] | None:
    """A fast reader for ``msgtype`` if the bag defines it (and its parts) as ROS 2 does."""
    if msgtype not in _READERS:
        return None
    for name in (msgtype, "std_msgs/msg/Header", "builtin_interfaces/msg/Time"):
        standard = get_types_from_msg(_STANDARD[name], name)[name]
        if name not in typestore.fielddefs or typestore.fielddefs[name][1] != standard[1]:
            return None
    return _READERS[msgtype]
