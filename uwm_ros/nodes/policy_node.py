"""The policy node: wires a Transport to PolicyRuntime. Subscriptions, timers, publishers, params.

Runs as ``ros2 run uwm_ros policy_node`` (rclpy) and as ``uwm policy --bundle B --transport dds``.
Topic names are relative (remap them, ROS-style): in ``camera/<name>/image_raw`` (or
``.../image_raw/compressed`` with ``image_transport: compressed``), ``joint_states`` and
``~/enable`` (std_msgs/Bool: the live ``enabled`` switch); out ``~/action_chunk``,
``~/joint_trajectory`` (optional, for ros2_control), ``~/predicted/<camera>/image_raw`` and
``~/predicted_frames``, ``~/predicted_joint_states`` (ghost robot), ``/diagnostics``.

Safety (DESIGN §16): inputs are refused where they enter, any fault drops the plan, and the
first tick without a plan after publishing sends a stop (an empty chunk and trajectory), so a
fault or ``enabled: false`` means no motion, never old or wrong motion. Outputs only carry
actions whose meaning the output can express (``spec.action_kind``).

ROS 2 managed-node states, on any transport: configure loads the engine, activate starts
inference and publishing, deactivate and cleanup undo them. With the ``lifecycle`` parameter
false (the default) the node configures and activates itself on construction.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import yaml

from uwm_ros.conversions import (
    FieldError,
    compressed_rgb,
    image_rgb,
    joint_state_msg,
    seconds,
)
from uwm_ros.engines import Engine, load_engine
from uwm_ros.runtime import OK, Chunk, PolicyRuntime, RuntimeConfig
from uwm_ros.transport.base import RELIABLE, SENSOR_DATA, Transport

from .outputs import (
    action_chunk_msg,
    diagnostics_msg,
    frames_msgs,
    stop_chunk_msg,
    trajectory_msg,
)
from .params import DEFAULTS, PARAMS, TRANSPORT_PARAMS, check_param

__all__ = ["DEFAULTS", "PolicyNode", "load_params", "main", "run"]

LIVE = ("enabled", "max_age", "max_skew", "frames_every", "engine_timeout")  # runtime fields


class PolicyNode:
    """The policy node: unconfigured -> configure -> inactive -> activate -> active, and back.

    Parameters are read and type-checked here; the live ones (``params.PARAMS``) can change
    later through the transport. A given ``engine`` is used by every configure; otherwise
    configure loads one from the ``bundle`` parameter and cleanup drops it.
    """

    def __init__(self, transport: Transport, engine: Engine | None = None):
        self.t = transport
        self.params = {
            k: check_param(k, transport.param(k, p.default, read_only=not p.live))
            for k, p in PARAMS.items()
        }
        self.runtime: PolicyRuntime | None = None
        self.active = False
        self._engine = engine
        self._wired = False
        self._live = False  # chunks were published since the last stop
        self._reported = OK
        # ticks, diagnostics, transitions and live parameters one at a time: nothing is
        # published after deactivate (or enabled := false) returns
        self._lock = threading.RLock()
        transport.watch_params(self._on_param)
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
        self._check_modes(engine, p["sampler"], p["frames_every"])
        cfg = RuntimeConfig(
            execute_steps=p["execute_steps"] or max(1, model.horizon // 4),
            seam=p["seam"],
            blend_steps=p["blend_steps"],
            lower=list(p["action_lower"]) or None,
            upper=list(p["action_upper"]) or None,
            sampler=p["sampler"],
            **{k: p[k] for k in LIVE},
        )
        runtime = PolicyRuntime(
            engine, cfg, clock=lambda: self.t.now_ns() * 1e-9, on_ready=self.on_tick
        )
        try:
            self._check_outputs(runtime)
        except ValueError:
            runtime.close()
            raise
        if not self._wired:
            self._wire(model.cameras, engine.manifest.spec.fps)
        with self._lock:
            self.runtime = runtime

    def activate(self) -> None:
        """Start inference and publishing."""
        self._expect("inactive", "activate")
        with self._lock:
            self.active = True

    def deactivate(self) -> None:
        """Stop inference and publishing (a stop goes out if chunks did); inputs still flow."""
        self._expect("active", "deactivate")
        with self._lock:
            self._stop()
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

    @staticmethod
    def _check_modes(engine: Engine, sampler: str, frames_every: int) -> None:
        """The bundle has the loops the sampler and predicted frames need."""
        modes = engine.manifest.modes
        need = {sampler} | ({"forward_dynamics"} if frames_every and sampler == "policy" else set())
        missing = sorted(need - set(modes))
        if missing:
            raise ValueError(
                f"sampler {sampler!r} with frames_every {frames_every} needs the {missing} "
                f"loop(s); the bundle has {modes} (uwm export --modes policy,forward_dynamics)"
            )

    def _check_outputs(self, runtime: PolicyRuntime) -> None:
        """Refuse an output that cannot express what the bundle's actions are."""
        kind = runtime.action_kind
        if self.params["publish_trajectory"] and runtime.kind != "positions":
            raise ValueError(
                f"publish_trajectory: a JointTrajectory carries joint positions, but this "
                f"bundle's actions are {kind!r} (spec.action_kind); "
                + (
                    "re-export it from a dataset converted by this version, which records it"
                    if kind == "unknown"
                    else "drive the robot from ~/action_chunk instead"
                )
            )
        if runtime.kind != "positions":
            self.t.logger.info("ghost robot off: the bundle's actions are %s, not positions", kind)

    def _wire(self, cameras: tuple[str, ...], fps: float) -> None:
        """Subscriptions, publishers and timers, once: transports cannot remove them, so they
        outlive cleanup and their callbacks do nothing unless the node is configured/active."""
        p, t = self.params, self.t
        compressed = p["image_transport"] == "compressed"
        for cam in cameras:
            topic = f"camera/{cam}/image_raw" + ("/compressed" if compressed else "")
            msgtype = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
            t.subscribe(topic, msgtype, self._image_callback(cam, topic, compressed), SENSOR_DATA)
        t.subscribe("joint_states", "sensor_msgs/msg/JointState", self._on_joints, RELIABLE)
        t.subscribe("~/enable", "std_msgs/msg/Bool", self._on_enable, RELIABLE)
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

    # ----- live parameters ---------------------------------------------------------------------
    def _on_param(self, name: str, value: Any) -> None:
        """A parameter set at run time; raising refuses it (the transport reports why)."""
        if name in TRANSPORT_PARAMS or name not in PARAMS:
            return  # the middleware's own (use_sim_time, rclpy's qos_overrides...)
        value = check_param(name, value)
        if not PARAMS[name].live:
            raise ValueError(f"parameter {name!r} is read-only at run time")
        with self._lock:
            runtime = self.runtime
            if runtime is not None:
                if name == "frames_every":
                    self._check_modes(runtime.engine, runtime.cfg.sampler, value)
                runtime.update(**{name: value})
            self.params[name] = value
            if name == "enabled" and not value:
                self._stop()  # before this returns: the next publish is a stop
            self.t.logger.info("parameter %s set to %r", name, value)

    def _on_enable(self, msg: Any) -> None:
        try:
            self.t.set_param("enabled", bool(msg.data))
        except ValueError as e:
            self.t.logger.error("~/enable: %s", e)

    # ----- callbacks ---------------------------------------------------------------------------
    def _image_callback(self, camera: str, topic: str, compressed: bool):  # type: ignore[no-untyped-def]
        decode = compressed_rgb if compressed else image_rgb

        def callback(msg: Any) -> None:
            runtime = self.runtime
            if runtime is None:
                return
            try:
                rgb = decode(msg)
            except FieldError as e:
                runtime.reject(topic, e.field, e.detail)
                return
            runtime.on_image(camera, seconds(msg.header.stamp), rgb)

        return callback

    def _on_joints(self, msg: Any) -> None:
        runtime = self.runtime
        if runtime is None:
            return
        stamp = seconds(msg.header.stamp)
        runtime.on_joints(stamp, list(msg.name), list(msg.position), "joint_states")
        self.on_tick()  # fresh inputs may make an inference due: don't wait for the timer

    def on_tick(self) -> None:
        """Timer, new joint states and finished inferences all land here; one at a time."""
        with self._lock:
            runtime = self.runtime
            if runtime is None or not self.active or self.t.now_ns() == 0:
                return  # now_ns() is 0 with use_sim_time until the first /clock
            chunk = runtime.tick()
            if chunk is not None and self.params["enabled"]:
                self.publish(chunk)
            elif self._live and runtime.scheduler.chunk_t0 is None:
                self._stop()  # a fault dropped the plan
            for frames in runtime.pop_frames():
                for camera, image, msg in frames_msgs(self.t, frames):
                    self.pub_images[camera].publish(image)
                    self.pub_frames.publish(msg)
            if runtime.health.report()[0] != self._reported:
                self.publish_diagnostics()  # a change of level is news: don't wait a second

    # ----- outputs -----------------------------------------------------------------------------
    def publish(self, c: Chunk) -> None:
        self.pub_chunk.publish(action_chunk_msg(self.t, c))
        self._live = True
        if c.kind == "positions":
            end = c.start + (len(c.actions) - 1) * c.dt
            self.pub_ghost.publish(joint_state_msg(self.t, c.names, c.actions[-1], end))
        if self.pub_traj is not None:
            self.pub_traj.publish(trajectory_msg(self.t, c, c.names, c.start))

    def _stop(self) -> None:
        """Tell consumers to stop executing what was published (once, if anything was)."""
        runtime = self.runtime
        if not self._live or runtime is None:
            return
        self._live = False
        now = self.t.now_ns() * 1e-9
        names, kind = runtime.action_names, runtime.kind
        self.pub_chunk.publish(
            stop_chunk_msg(self.t, names, kind, runtime.dt, now, runtime.counts["chunks"])
        )
        if self.pub_traj is not None:
            self.pub_traj.publish(trajectory_msg(self.t, None, names, now))

    def publish_diagnostics(self) -> None:
        """Level (OK / WARN / ERROR / STALE), why, counters and inference delay, while active."""
        with self._lock:
            r = self.runtime
            if r is None or not self.active:
                return
            level, message = r.health.report()
            self._reported = level
            values = {
                **r.counts,
                "inference_delay_ms": round(r.scheduler.delay * 1e3, 2),
                "enabled": self.params["enabled"],
                "action_kind": r.action_kind,
            }
            now = self.t.now_ns() * 1e-9
            msg = diagnostics_msg(self.t, "uwm_policy", level, message, values, now)
            self.pub_diag.publish(msg)


def main(argv: list[str] | None = None) -> None:
    """``ros2 run uwm_ros policy_node --ros-args ...``: the node on rclpy."""
    from uwm_ros.transport.ros import RclpyTransport

    run(RclpyTransport("uwm_policy", args=argv))


def run(transport: Transport, engine: Engine | None = None) -> None:
    """Build the node on ``transport`` and spin until Ctrl-C, then shut both down."""
    node = PolicyNode(transport, engine)
    try:
        transport.spin()
    except KeyboardInterrupt:
        pass
    finally:
        node.close()
        transport.shutdown()


def load_params(params_file: str | None, overrides: list[str], node_name: str) -> dict[str, Any]:
    """ROS-style parameters: ``/**:`` then ``<node>:`` sections (``ros__parameters``) of a YAML
    file, then key=value overrides; every value type-checked."""
    params: dict[str, Any] = {}
    if params_file:
        data = yaml.safe_load(Path(params_file).read_text()) or {}
        for key in ("/**", node_name, f"/{node_name}"):
            params.update((data.get(key) or {}).get("ros__parameters", {}))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"parameter override {item!r} is not key=value")
        params[key] = yaml.safe_load(value)
    return {key: check_param(key, value) for key, value in params.items()}
