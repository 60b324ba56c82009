"""Message <-> numpy, duck-typed: works on rclpy messages and rosbags typestore dataclasses.

Decoding reads fields by name only (the dataset converter decodes bag messages with the same
functions); encoding goes through ``Transport.new`` so each transport builds its own class.
"""

from __future__ import annotations

from typing import Any, Protocol

import cv2
import numpy as np


class MessageFactory(Protocol):
    """What builds messages: every ``Transport``, or ``msgs.Messages`` for writing bags."""

    def new(self, msgtype: str, **fields: Any) -> Any: ...


# encoding -> (channels, bytes per channel, OpenCV conversion to RGB or None)
ENCODINGS: dict[str, tuple[int, int, int | None]] = {
    "rgb8": (3, 1, None),
    "bgr8": (3, 1, cv2.COLOR_BGR2RGB),
    "rgba8": (4, 1, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, 1, cv2.COLOR_BGRA2RGB),
    "mono8": (1, 1, cv2.COLOR_GRAY2RGB),
    "mono16": (1, 2, cv2.COLOR_GRAY2RGB),
}


class FieldError(ValueError):
    """A message field that cannot be decoded; the caller adds bag and topic."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field, self.detail = field, detail


def image_rgb(msg: Any, copy: bool = True) -> np.ndarray:
    """sensor_msgs/Image in any supported encoding -> (H, W, 3) uint8 RGB. ``copy=False``: an
    rgb8 image stays a read-only view of ``msg.data`` (for a caller done with it at once)."""
    if msg.encoding not in ENCODINGS:
        raise FieldError(
            "encoding", f"unsupported image encoding {msg.encoding!r}; supported: {list(ENCODINGS)}"
        )
    channels, depth, conversion = ENCODINGS[msg.encoding]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    row = w * channels * depth
    if h == 0 or w == 0:
        raise FieldError("height", f"empty image {w}x{h}")
    if step < row:
        raise FieldError("step", f"step {step} < width {w} x {channels * depth} bytes per pixel")
    if len(msg.data) < step * h:
        raise FieldError("data", f"{len(msg.data)} bytes, expected step {step} x height {h}")
    # A view of the message buffer, copied once (an owned, writable array comes back) unless
    # the caller takes the view.
    pixels = np.frombuffer(msg.data, np.uint8, count=step * h).reshape(h, step)[:, :row]
    if depth == 2:  # mono16: keep the high byte, so the full 16-bit range maps onto 0..255
        dtype = ">u2" if msg.is_bigendian else "<u2"
        pixels = (np.ascontiguousarray(pixels).view(dtype) >> 8).astype(np.uint8)
    pixels = pixels.reshape(h, w, channels)
    if conversion is None:
        return np.array(pixels) if copy else pixels
    return cv2.cvtColor(np.ascontiguousarray(pixels), conversion)


def compressed_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg or png) -> (H, W, 3) uint8 RGB."""
    fmt = msg.format.lower()
    if "compresseddepth" in fmt or not any(k in fmt for k in ("jpeg", "jpg", "png")):
        raise FieldError("format", f"unsupported compressed format {msg.format!r}; need jpeg/png")
    bgr = cv2.imdecode(np.asarray(msg.data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FieldError("data", f"cannot decode the {msg.format!r} image ({len(msg.data)} bytes)")
    return np.ascontiguousarray(bgr[..., ::-1])


def seconds(stamp: Any) -> float:
    """builtin_interfaces/Time -> float seconds (nanosec >= 1e9 simply carries)."""
    return int(stamp.sec) + int(stamp.nanosec) * 1e-9


def time_msg(transport: MessageFactory, t: float) -> Any:
    ns = int(round(t * 1e9))
    return transport.new(
        "builtin_interfaces/msg/Time", sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000
    )


def header(transport: MessageFactory, t: float, frame_id: str = "") -> Any:
    return transport.new("std_msgs/msg/Header", stamp=time_msg(transport, t), frame_id=frame_id)


def image_msg(transport: MessageFactory, rgb: np.ndarray, t: float, frame_id: str = "") -> Any:
    """(H, W, 3) uint8 RGB -> sensor_msgs/Image rgb8."""
    h, w = rgb.shape[:2]
    return transport.new(
        "sensor_msgs/msg/Image",
        header=header(transport, t, frame_id),
        height=h,
        width=w,
        encoding="rgb8",
        is_bigendian=0,
        step=w * 3,
        data=np.ascontiguousarray(rgb, np.uint8).reshape(-1),
    )


def joint_state_msg(
    transport: MessageFactory, names: tuple[str, ...], positions: np.ndarray, t: float
) -> Any:
    return transport.new(
        "sensor_msgs/msg/JointState",
        header=header(transport, t),
        name=list(names),
        position=np.asarray(positions, np.float64),
        velocity=np.zeros(0),
        effort=np.zeros(0),
    )
