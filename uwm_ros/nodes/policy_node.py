"""The policy node: wires a Transport to PolicyRuntime. Subscriptions, timers, publishers, params.

Runs as ``ros2 run uwm_ros policy_node`` (rclpy) and as ``uwm policy --bundle B --transport dds``.
Topics (relative names are under the node): in ``/camera/<name>/image_raw`` (or ``.../compressed``)
and ``/joint_states``; out ``~/action_chunk``, ``~/joint_trajectory`` (optional, for
ros2_control), ``~/predicted/<camera>/image_raw`` and ``~/predicted_frames``,
``~/predicted_joint_states`` (ghost robot), ``/diagnostics``.

ROS 2 managed-node states, on any transport: configure loads the engine, activate starts
inference and publishing, deactivate and cleanup undo them. With the ``lifecycle`` parameter
false (the default) the node configures and activates itself on construction.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from uwm_ros.conversions import (
    compressed_rgb,
    header,
    image_msg,
    image_rgb,
    joint_state_msg,
    seconds,
    time_msg,
)
from uwm_ros.engines import Engine, load_engine
from uwm_ros.runtime import Chunk, PolicyRuntime, RuntimeConfig
from uwm_ros.transport.base import RELIABLE, SENSOR_DATA, Transport

TRANSPORT_PARAMS = ("use_sim_time",)  # read by the transport, as every ROS node has it

DEFAULTS: dict[str, Any] = {
    "bundle": "",
    "backend": "auto",
    "device": "",
    "precision": "fp32",
    "camera_topics": [],  # one per bundle camera, same order; default /camera/<name>/image_raw
    "joint_states_topic": "/joint_states",
    "control_rate": 0.0,  # ticks per second; 0 = 2x the model's fps
    "execute_steps": 0,  # 0 = half the horizon
    "seam": "blend",
    "blend_steps": 4,
    "max_age": 0.5,
    "max_skew": 0.1,
    "action_lower": [],
    "action_upper": [],
    "enabled": False,
    "publish_trajectory": False,
    "frames_every": 0,
    "lifecycle": False,  # wait for lifecycle transitions instead of starting active
}


class PolicyNode:
    """The policy node: unconfigured -> configure -> inactive -> activate -> active, and back.

    Parameters are read once, here. A given ``engine`` is used by every configure; otherwise
    configure loads one from the ``bundle`` parameter and cleanup drops it.
    """

    def __init__(self, transport: Transport, engine: Engine | None = None):
        self.t = transport
        self.params = {k: transport.param(k, v) for k, v in DEFAULTS.items()}
        self.runtime: PolicyRuntime | None = None
        self.active = False
        self._engine = engine
        self._wired = False
        # ticks, diagnostics and transitions one at a time: nothing is published after
        # deactivate returns
        self._lock = threading.Lock()
        if self.params["lifecycle"]:
            transport.manage(self)
        else:
            self.configure()
            self.activate()

    @property
    def state(self) -> str:
        """ROS 2 lifecycle state: unconfigured, inactive or active."""
        if self.runtime is None:
            return "unconfigured"
        return "active" if self.active else "inactive"

    # ----- lifecycle transitions ---------------------------------------------------------------
    def configure(self) -> None:
        """Load the engine, check the parameters against it and start the runtime (no ticks)."""
        self._expect("unconfigured", "configure")
        p = self.params
        engine = self._engine
        if engine is None:
            if not p["bundle"]:
                raise ValueError("parameter 'bundle' (a policy bundle directory) is required")
            engine = load_engine(p["bundle"], p["backend"], p["device"] or None, p["precision"])
            engine.warmup()
        model = engine.cfg
        for key in ("action_lower", "action_upper"):
            if p[key] and len(p[key]) != model.action_dim:
                raise ValueError(f"parameter {key!r} needs {model.action_dim} values, got {p[key]}")
        if not self._wired:
            self._wire(model.cameras, engine.manifest.spec.fps)
        cfg = RuntimeConfig(
            execute_steps=p["execute_steps"] or max(1, model.horizon // 2),
            seam=p["seam"],
            blend_steps=p["blend_steps"],
            max_age=p["max_age"],
            max_skew=p["max_skew"],
            lower=list(p["action_lower"]) or None,
            upper=list(p["action_upper"]) or None,
            enabled=p["enabled"],
            frames_every=p["frames_every"],
        )
        runtime = PolicyRuntime(
            engine, cfg, clock=lambda: self.t.now_ns() * 1e-9, on_ready=self.on_tick
        )
        with self._lock:
            self.runtime = runtime

    def activate(self) -> None:
        """Start inference and publishing."""
        self._expect("inactive", "activate")
        with self._lock:
            self.active = True

    def deactivate(self) -> None:
        """Stop inference and publishing; inputs still fill the history."""
        self._expect("active", "deactivate")
        with self._lock:
            self.active = False

    def cleanup(self) -> None:
        """Stop the runtime and drop the engine it holds."""
        self._expect("inactive", "cleanup")
        with self._lock:
            runtime, self.runtime = self.runtime, None
        if runtime is not None:
            runtime.close()  # outside the lock: its inference thread may be waiting for it

    def close(self) -> None:
        """Deactivate and clean up, from any state (lifecycle shutdown); idempotent."""
        if self.active:
            self.deactivate()
        if self.runtime is not None:
            self.cleanup()

    def _expect(self, state: str, transition: str) -> None:
        if self.state != state:
            raise RuntimeError(f"cannot {transition} a node that is {self.state}, not {state}")

    def _wire(self, cameras: tuple[str, ...], fps: float) -> None:
        """Subscriptions, publishers and timers, once: transports cannot remove them, so they
        outlive cleanup and their callbacks do nothing unless the node is configured/active."""
        p, t = self.params, self.t
        topics = list(p["camera_topics"]) or [f"/camera/{c}/image_raw" for c in cameras]
        if len(topics) != len(cameras):
            raise ValueError(f"camera_topics has {len(topics)} topics for cameras {cameras}")
        for cam, topic in zip(cameras, topics):
            compressed = topic.endswith("/compressed")
            msgtype = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
            t.subscribe(topic, msgtype, self._image_callback(cam, compressed), SENSOR_DATA)
        t.subscribe(
            p["joint_states_topic"], "sensor_msgs/msg/JointState", self._on_joints, RELIABLE
        )
        self.pub_chunk = t.publisher("~/action_chunk", "uwm_ros/msg/ActionChunk")
        self.pub_traj = (
            t.publisher("~/joint_trajectory", "trajectory_msgs/msg/JointTrajectory")
            if p["publish_trajectory"]
            else None
        )
        self.pub_ghost = t.publisher("~/predicted_joint_states", "sensor_msgs/msg/JointState")
        self.pub_frames = t.publisher("~/predicted_frames", "uwm_ros/msg/PredictedFrames")
        self.pub_images = {
            c: t.publisher(f"~/predicted/{c}/image_raw", "sensor_msgs/msg/Image") for c in cameras
        }
        self.pub_diag = t.publisher("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray")
        t.timer(1.0 / (p["control_rate"] or 2 * fps), self.on_tick)
        t.timer(1.0, self.publish_diagnostics)
        self._wired = True

    # ----- callbacks ---------------------------------------------------------------------------
    def _image_callback(self, camera: str, compressed: bool):  # type: ignore[no-untyped-def]
        decode = compressed_rgb if compressed else image_rgb

        def callback(msg: Any) -> None:
            runtime = self.runtime
            if runtime is not None:
                runtime.on_image(camera, seconds(msg.header.stamp), decode(msg))

        return callback

    def _on_joints(self, msg: Any) -> None:
        runtime = self.runtime
        if runtime is None:
            return
        runtime.on_joints(seconds(msg.header.stamp), list(msg.name), list(msg.position))
        self.on_tick()  # fresh inputs may make an inference due: don't wait for the timer

    def on_tick(self) -> None:
        """Timer, new joint states and finished inferences all land here; one at a time."""
        with self._lock:
            runtime = self.runtime
            if runtime is None or not self.active or self.t.now_ns() == 0:
                return  # now_ns() is 0 with use_sim_time until the first /clock
            chunk = runtime.tick()
            if chunk is not None:
                self.publish(chunk)

    # ----- outputs -----------------------------------------------------------------------------
    def publish(self, c: Chunk) -> None:
        t = self.t
        n, d = c.actions.shape
        self.pub_chunk.publish(
            t.new(
                "uwm_ros/msg/ActionChunk",
                header=header(t, c.stamp),
                start=time_msg(t, c.start),
                dt=c.dt,
                names=list(c.names),
                horizon=n,
                action_dim=d,
                data=c.actions.reshape(-1).astype(np.float32),
                sequence=c.sequence,
                mode=c.mode,
                inference_ms=c.inference_ms,
            )
        )
        self.pub_ghost.publish(joint_state_msg(t, c.names, c.actions[-1], c.start + (n - 1) * c.dt))
        if self.pub_traj is not None:
            self.pub_traj.publish(self._trajectory(c))
        if c.frames:
            self._publish_frames(c)

    def _trajectory(self, c: Chunk) -> Any:
        t = self.t
        points = []
        for i, a in enumerate(c.actions):
            ns = int(round(i * c.dt * 1e9))
            points.append(
                t.new(
                    "trajectory_msgs/msg/JointTrajectoryPoint",
                    positions=a.astype(np.float64),
                    time_from_start=t.new(
                        "builtin_interfaces/msg/Duration", sec=ns // 10**9, nanosec=ns % 10**9
                    ),
                )
            )
        return t.new(
            "trajectory_msgs/msg/JointTrajectory",
            header=header(t, c.start),
            joint_names=list(c.names),
            points=points,
        )

    def _publish_frames(self, c: Chunk) -> None:
        t = self.t
        assert c.frames is not None
        for cam, frames in c.frames.items():
            # Future frames follow the chunk: frame j depicts the end of the action horizon.
            stamps = [c.stamp + (len(c.actions) + j) * c.dt for j in range(len(frames))]
            images = [image_msg(t, f, s, cam) for f, s in zip(frames, stamps)]
            self.pub_images[cam].publish(images[-1])
            self.pub_frames.publish(
                t.new(
                    "uwm_ros/msg/PredictedFrames",
                    header=header(t, c.stamp),
                    camera=cam,
                    stamps=[time_msg(t, s) for s in stamps],
                    frames=images,
                    mode=c.mode,
                    sequence=c.sequence,
                )
            )

    def publish_diagnostics(self) -> None:
        """Status, counters and inference delay on /diagnostics, while active."""
        with self._lock:
            t, r = self.t, self.runtime
            if r is None or not self.active:
                return
            level = 0 if r.status == "ok" else 1  # diagnostic_msgs OK / WARN
            values = [
                t.new("diagnostic_msgs/msg/KeyValue", key=k, value=str(v))
                for k, v in {
                    **r.counts,
                    "inference_delay_ms": round(r.scheduler.delay * 1e3, 2),
                }.items()
            ]
            status = t.new(
                "diagnostic_msgs/msg/DiagnosticStatus",
                level=level,
                name="uwm_policy",
                message=r.status,
                hardware_id="",
                values=values,
            )
            self.pub_diag.publish(
                t.new(
                    "diagnostic_msgs/msg/DiagnosticArray",
                    header=header(t, t.now_ns() * 1e-9),
                    status=[status],
                )
            )


def main(argv: list[str] | None = None) -> None:
    """``ros2 run uwm_ros policy_node --ros-args ...``: the node on rclpy."""
    from uwm_ros.transport.ros import RclpyTransport

    run(RclpyTransport("uwm_policy", args=argv))


def run(transport: Transport) -> None:
    """Build the node on ``transport`` and spin until Ctrl-C, then shut both down."""
    node = PolicyNode(transport)
    try:
        transport.spin()
    except KeyboardInterrupt:
        pass
    finally:
        node.close()
        transport.shutdown()


def load_params(params_file: str | None, overrides: list[str], node_name: str) -> dict[str, Any]:
    """ROS-style parameters: ``<node>: ros__parameters:`` from a YAML file, then key=value."""
    params: dict[str, Any] = {}
    if params_file:
        data = yaml.safe_load(Path(params_file).read_text()) or {}
        section = data.get(node_name, data.get("/**", {}))
        params.update(section.get("ros__parameters", {}))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"parameter override {item!r} is not key=value")
        params[key] = yaml.safe_load(value)
    known = {*DEFAULTS, *TRANSPORT_PARAMS}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"unknown parameters {unknown}; known: {sorted(known)}")
    return params
