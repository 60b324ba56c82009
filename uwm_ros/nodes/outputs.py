"""The policy node's outgoing messages, built through any transport's message factory.

A stop is a chunk with no actions (``horizon`` 0, mode "stop") and, for ros2_control, a
JointTrajectory without points, which makes its joint_trajectory_controller hold position.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from uwm_ros.conversions import MessageFactory, header, image_msg, time_msg
from uwm_ros.runtime import Chunk, Frames

STOP = "stop"


def action_chunk_msg(m: MessageFactory, c: Chunk) -> Any:
    n, d = c.actions.shape
    return m.new(
        "uwm_ros/msg/ActionChunk",
        header=header(m, c.stamp),
        start=time_msg(m, c.start),
        dt=c.dt,
        names=list(c.names),
        kind=c.kind,
        horizon=n,
        action_dim=d,
        data=c.actions.reshape(-1).astype(np.float32),
        sequence=c.sequence,
        mode=c.mode,
        inference_ms=c.inference_ms,
    )


def stop_chunk_msg(
    m: MessageFactory, names: Sequence[str], kind: str, dt: float, stamp: float, sequence: int
) -> Any:
    """No actions: the consumer stops executing the chunks it has."""
    return m.new(
        "uwm_ros/msg/ActionChunk",
        header=header(m, stamp),
        start=time_msg(m, stamp),
        dt=dt,
        names=list(names),
        kind=kind,
        action_dim=len(names),
        sequence=sequence,
        mode=STOP,
    )


def trajectory_msg(m: MessageFactory, c: Chunk | None, names: Sequence[str], stamp: float) -> Any:
    """Chunk ``c`` (positions) as a JointTrajectory from its start; ``None``: no points (stop)."""
    points = []
    for i, a in enumerate([] if c is None else c.actions):
        ns = int(round(i * c.dt * 1e9))  # type: ignore[union-attr]
        points.append(
            m.new(
                "trajectory_msgs/msg/JointTrajectoryPoint",
                positions=a.astype(np.float64),
                time_from_start=m.new(
                    "builtin_interfaces/msg/Duration", sec=ns // 10**9, nanosec=ns % 10**9
                ),
            )
        )
    start = stamp if c is None else c.start
    return m.new(
        "trajectory_msgs/msg/JointTrajectory",
        header=header(m, start),
        joint_names=list(names),
        points=points,
    )


def frames_msgs(m: MessageFactory, f: Frames) -> Iterator[tuple[str, Any, Any]]:
    """Per camera: (camera, its last predicted image, the PredictedFrames message)."""
    for camera, frames in f.images.items():
        stamps = f.stamps(len(frames))
        images = [image_msg(m, frame, s, camera) for frame, s in zip(frames, stamps)]
        msg = m.new(
            "uwm_ros/msg/PredictedFrames",
            header=header(m, f.stamp),
            camera=camera,
            stamps=[time_msg(m, s) for s in stamps],
            frames=images,
            mode=f.mode,
            sequence=f.sequence,
        )
        yield camera, images[-1], msg


def diagnostics_msg(
    m: MessageFactory, name: str, level: int, message: str, values: dict[str, Any], stamp: float
) -> Any:
    status = m.new(
        "diagnostic_msgs/msg/DiagnosticStatus",
        level=level,
        name=name,
        message=message,
        hardware_id=name,
        values=[
            m.new("diagnostic_msgs/msg/KeyValue", key=k, value=str(v)) for k, v in values.items()
        ],
    )
    return m.new("diagnostic_msgs/msg/DiagnosticArray", header=header(m, stamp), status=[status])
