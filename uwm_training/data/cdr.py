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
from rosbags.typesys.store import Typestore

from .bags import distro_types

IMAGE, JOINT_STATE = "sensor_msgs/msg/Image", "sensor_msgs/msg/JointState"
_NESTED = ("std_msgs/msg/Header", "builtin_interfaces/msg/Time")
_U32 = {True: struct.Struct("<I").unpack_from, False: struct.Struct(">I").unpack_from}


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


class _Reader:
    """A cursor over one message's payload."""

    def __init__(self, raw: bytes | memoryview) -> None:
        self.raw, self.pos = raw, 4
        self.little = bool(raw[1] & 1)
        self.u32 = _U32[self.little]

    def align(self, n: int) -> None:
        self.pos += -(self.pos - 4) % n

    def uint32(self) -> int:
        self.align(4)
        (value,) = self.u32(self.raw, self.pos)
        self.pos += 4
        return int(value)

    def string(self) -> str:
        size = self.uint32()
        text = bytes(self.raw[self.pos : self.pos + size - 1]).decode()
        self.pos += size
        return text

    def array(self, dtype: str, size: int) -> np.ndarray:
        count = self.uint32()
        order = "<" if self.little else ">"
        if not count:  # (no alignment padding follows a last, empty sequence)
            return np.empty(0, order + dtype)
        self.align(size)
        values = np.frombuffer(self.raw, order + dtype, count, self.pos)
        self.pos += count * size
        return values

    def skip_header(self) -> None:
        self.pos += 8  # stamp: int32 sec, uint32 nanosec
        frame_id = self.uint32()
        self.pos += frame_id


def read_image(raw: bytes | memoryview) -> ImageFields:
    r = _Reader(raw)
    r.skip_header()
    height, width, encoding = r.uint32(), r.uint32(), r.string()
    is_bigendian = raw[r.pos]
    r.pos += 1
    step = r.uint32()
    return ImageFields(encoding, height, width, step, is_bigendian, r.array("u1", 1))


def read_joint_state(raw: bytes | memoryview) -> JointFields:
    r = _Reader(raw)
    r.skip_header()
    names = [r.string() for _ in range(r.uint32())]
    return JointFields(names, r.array("f8", 8), r.array("f8", 8), r.array("f8", 8))


_READERS: dict[str, Callable[[bytes | memoryview], Any]] = {
    IMAGE: read_image,
    JOINT_STATE: read_joint_state,
}


def fast_reader(typestore: Typestore, msgtype: str) -> Callable[[bytes | memoryview], Any] | None:
    """A fast reader for ``msgtype`` if the bag defines it (and its parts) as ROS 2 does."""
    if msgtype not in _READERS:
        return None
    standard = distro_types("humble")
    for name in (msgtype, *_NESTED):
        if name not in typestore.fielddefs or typestore.fielddefs[name][1] != standard[name][1]:
            return None
    return _READERS[msgtype]
