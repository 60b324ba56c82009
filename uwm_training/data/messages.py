"""Decode the message types the converter reads into numpy: stamps, images, joints, commands.

Problems raise ``FieldError`` (field + detail); the caller knows the bag and topic and turns it
into a ``BagError`` that names all three.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from uwm_ros.bundle.contract import fit_image
from uwm_ros.conversions import ENCODINGS, FieldError, compressed_rgb, image_rgb

__all__ = ["ENCODINGS", "FieldError", "compressed_rgb", "image_rgb"]  # re-exported for callers

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
JOINT_STATE = "sensor_msgs/msg/JointState"
TRAJECTORY = "trajectory_msgs/msg/JointTrajectory"
FLOAT_ARRAY = "std_msgs/msg/Float64MultiArray"
TWIST = "geometry_msgs/msg/Twist"
BOOL = "std_msgs/msg/Bool"
STRING = "std_msgs/msg/String"
CAMERA_TYPES = (IMAGE, COMPRESSED)
COMMAND_TYPES = (JOINT_STATE, TRAJECTORY, FLOAT_ARRAY, TWIST)
TWIST_NAMES = ("linear.x", "linear.y", "linear.z", "angular.x", "angular.y", "angular.z")
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_STAMP_LE, _STAMP_BE = struct.Struct("<iI").unpack_from, struct.Struct(">iI").unpack_from


# ----- stamps -----------------------------------------------------------------------------------
def header_stamp(raw: bytes | memoryview) -> tuple[int, int]:
    """(sec, nanosec) of a CDR message whose first field is a std_msgs/Header, undecoded.

    Offset 4 (after the encapsulation header) is where CDR puts the first int32, so lazily
    decoded cameras get their stamp for ~0.1 us instead of a full deserialisation.
    """
    # encapsulation kind: 0x0001 CDR little endian, 0x0000 big endian
    return (_STAMP_LE if raw[1] & 1 else _STAMP_BE)(raw, 4)  # type: ignore[return-value]


def stamp_ns(sec: int, nanosec: int) -> int:
    """Nanoseconds since the epoch; nanosec >= 1e9 (seen from some drivers) simply carries."""
    return int(sec) * 1_000_000_000 + int(nanosec)


# ----- images -----------------------------------------------------------------------------------
def camera_frame(
    msg: Any, msgtype: str, size: int, crop: tuple[int, int, int, int] | None
) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode, crop and fit a camera message: ((size, size, 3) uint8, source (height, width)).
    The frame may be a view of the message's bytes: it is compressed or copied straight away."""
    rgb = image_rgb(msg, copy=False) if msgtype == IMAGE else compressed_rgb(msg)
    source = rgb.shape[:2]
    if crop is not None:
        x, y, w, h = crop
        if x + w > source[1] or y + h > source[0]:
            raise FieldError(
                "width", f"crop {list(crop)} exceeds the {source[1]}x{source[0]} image"
            )
        rgb = rgb[y : y + h, x : x + w]
    return fit_image(rgb, size), (int(source[0]), int(source[1]))


# ----- commands and markers ---------------------------------------------------------------------
def command_names(
    msgtype: str, names: tuple[str, ...] | None, joints: tuple[str, ...] | None
) -> tuple[str, ...]:
    """Action dimension labels for a command topic of ``msgtype``."""
    if msgtype == TWIST:
        return TWIST_NAMES
    if msgtype == FLOAT_ARRAY:
        if not names:
            raise FieldError("data", "Float64MultiArray commands need action.names (one per value)")
        return names
    chosen = names or joints
    if not chosen:
        raise FieldError("name", "joint commands need action.names or a joints section")
    return chosen


def command_kind(msgtype: str | None, names: tuple[str, ...], joints: tuple[str, ...]) -> str:
    """What a command topic's actions are (``PolicySpec.action_kind``); without a topic in the
    bag (``msgtype`` None) the names tell joint commands from twists."""
    if msgtype in (JOINT_STATE, TRAJECTORY):
        return "positions"  # both are read from their position fields
    if msgtype == TWIST or (msgtype is None and names == TWIST_NAMES):
        return "twist"
    if msgtype is None and set(names) <= set(joints):
        return "positions"
    return "other"  # Float64MultiArray: positions, velocities or efforts, the bag cannot say


def command_vector(msg: Any, msgtype: str, names: tuple[str, ...]) -> np.ndarray:
    """A command message -> action vector ordered like ``names`` (float32)."""
    if msgtype == TWIST:
        lin, ang = msg.linear, msg.angular
        return np.array([lin.x, lin.y, lin.z, ang.x, ang.y, ang.z], np.float32)
    if msgtype == FLOAT_ARRAY:
        if len(msg.data) != len(names):
            raise FieldError("data", f"{len(msg.data)} values, expected {len(names)} ({names})")
        return np.asarray(msg.data, np.float32)
    if msgtype == TRAJECTORY:
        if not msg.points:
            raise FieldError("points", "trajectory without points")
        listed, values = list(msg.joint_names), msg.points[0].positions
        field = "joint_names"
    else:
        listed, values, field = list(msg.name), msg.position, "name"
    lookup = {n: i for i, n in enumerate(listed)}
    missing = [n for n in names if n not in lookup]
    if missing:
        raise FieldError(field, f"joints {missing} missing from the command (it has {listed})")
    if len(values) != len(listed):
        raise FieldError("position", f"{len(values)} positions for {len(listed)} joint names")
    return np.asarray(values, np.float32)[[lookup[n] for n in names]]


def marker_event(msg: Any, msgtype: str) -> tuple[bool, str | None]:
    """(starts an episode?, task text): Bool false stops; String carries the task."""
    if msgtype == BOOL:
        return bool(msg.data), None
    if msgtype == STRING:
        return True, str(msg.data)
    return True, None
