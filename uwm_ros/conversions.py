"""Message <-> numpy, duck-typed: works on rclpy messages and rosbags typestore dataclasses.

Decoding reads fields by name only; encoding goes through ``Transport.new`` so each transport
builds its own message class.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from uwm_ros.transport.base import Transport


def seconds(stamp: Any) -> float:
    """builtin_interfaces/Time -> float seconds (nanosec >= 1e9 simply carries)."""
    return int(stamp.sec) + int(stamp.nanosec) * 1e-9


def time_msg(transport: Transport, t: float) -> Any:
    ns = int(round(t * 1e9))
    return transport.new(
        "builtin_interfaces/msg/Time", sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000
    )


def header(transport: Transport, t: float, frame_id: str = "") -> Any:
    return transport.new("std_msgs/msg/Header", stamp=time_msg(transport, t), frame_id=frame_id)


def image_msg(transport: Transport, rgb: np.ndarray, t: float, frame_id: str = "") -> Any:
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
    transport: Transport, names: tuple[str, ...], positions: np.ndarray, t: float
) -> Any:
    return transport.new(
        "sensor_msgs/msg/JointState",
        header=header(transport, t),
        name=list(names),
        position=np.asarray(positions, np.float64),
        velocity=np.zeros(0),
        effort=np.zeros(0),
    )
