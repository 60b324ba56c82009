"""The closed loop over DDS: ``uwm policy`` in its own process drives the sim node.

Used by ``uwm eval --dds`` and the demo. The two talk ROS 2 over Cyclone DDS on loopback, in a
domain of their own, exactly as they would with ROS nodes around. This process hosts the sim
and listens to what the policy sends (chunks, predicted frames) to draw the first episode.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from uwm_ros.conversions import image_rgb, seconds
from uwm_ros.nodes.outputs import STOP
from uwm_ros.sim.node import IMAGE_TOPIC, JOINTS_TOPIC, EpisodeResult, SimNode
from uwm_ros.sim.world import DT, MAX_STEPS
from uwm_ros.transport.base import SENSOR_DATA

POLICY_NODE = "uwm_policy"
STARTUP_S = 300.0  # the policy loads its bundle and warms up (torch import, graph compiles)


class ClosedLoopError(RuntimeError):
    """The policy process died or never answered; carries the tail of its log."""


@dataclass
class EpisodeLog:
    """What happened in one episode, with DDS stamps: for the video and the action plot."""

    start: float = float("inf")  # set when the counted episodes begin
    end: float = float("inf")
    frames: list[tuple[float, np.ndarray]] = field(default_factory=list)
    joints: list[tuple[float, np.ndarray]] = field(default_factory=list)
    chunks: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (times, actions)
    predictions: list[tuple[float, list[float], list[np.ndarray]]] = field(default_factory=list)


@dataclass(frozen=True)
class ClosedLoopResult:
    results: list[EpisodeResult]
    first: EpisodeLog
    inference_ms: float  # median engine time per chunk


def run_closed_loop(
    bundle: Path,
    episodes: int,
    seed: int,
    log_path: Path,
    params: dict[str, Any],
) -> ClosedLoopResult:
    """Start the policy node on ``bundle`` with ``params``, run ``episodes`` sim episodes from
    ``seed`` against it, and return the results plus the first episode's log."""
    from uwm_ros.transport.dds import DDSTransport, loopback_env

    # a domain of our own on loopback, for this process's participant and the policy's
    os.environ.update(loopback_env(random.SystemRandom().randint(101, 199)))
    args = [f"{k}={v}" for k, v in {"enabled": "true", **params}.items()]
    command = [sys.executable, "-m", "uwm_training.cli", "policy", "--bundle", str(bundle)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log_file:
        policy = subprocess.Popen(
            command + [a for p in args for a in ("-p", p)], stdout=log_file, stderr=log_file
        )
    transport = DDSTransport("uwm_sim", params={"seed": seed})
    first, inference_ms = EpisodeLog(), list[float]()
    chunks_seen = threading.Event()

    def on_episode(result: EpisodeResult) -> None:
        if result.index == 0 and first.start < float("inf"):
            first.end = transport.now_ns() * 1e-9

    def in_first(t: float) -> bool:
        return first.start <= t <= first.end

    def on_chunk(msg: Any) -> None:
        if msg.mode == STOP:  # episode reset, fault: no actions to draw or time
            return
        chunks_seen.set()
        actions = np.asarray(msg.data, np.float32).reshape(msg.horizon, msg.action_dim)
        inference_ms.append(float(msg.inference_ms))
        start = seconds(msg.start)
        if in_first(start):
            first.chunks.append((start + msg.dt * np.arange(msg.horizon), actions))

    def on_frames(msg: Any) -> None:
        stamp = seconds(msg.header.stamp)
        if in_first(stamp):
            first.predictions.append(
                (stamp, [seconds(s) for s in msg.stamps], [image_rgb(f) for f in msg.frames])
            )

    def on_image(msg: Any) -> None:
        if in_first(t := seconds(msg.header.stamp)):
            first.frames.append((t, image_rgb(msg)))

    def on_joints(msg: Any) -> None:
        if in_first(t := seconds(msg.header.stamp)):
            first.joints.append((t, np.asarray(msg.position, np.float64)))

    sim = SimNode(transport, on_episode=on_episode)
    chunk_topic = f"/{POLICY_NODE}/action_chunk"
    transport.subscribe(chunk_topic, "uwm_ros/msg/ActionChunk", on_chunk)
    transport.subscribe(
        f"/{POLICY_NODE}/predicted_frames", "uwm_ros/msg/PredictedFrames", on_frames
    )
    transport.subscribe(IMAGE_TOPIC, "sensor_msgs/msg/Image", on_image, SENSOR_DATA)
    transport.subscribe(JOINTS_TOPIC, "sensor_msgs/msg/JointState", on_joints)
    spinner = threading.Thread(target=transport.spin, daemon=True)
    spinner.start()
    try:
        _wait(lambda: chunks_seen.is_set(), STARTUP_S, policy, log_path, "its first action chunk")
        inference_ms.clear()
        first.start = transport.now_ns() * 1e-9
        sim.restart()
        budget = episodes * (MAX_STEPS * DT + 5.0)
        _wait(lambda: len(sim.results) >= episodes, budget, policy, log_path, "the episodes")
        results = sim.results[:episodes]
    finally:
        transport.shutdown()
        spinner.join(timeout=2.0)
        policy.terminate()
        try:
            policy.wait(timeout=10)
        except subprocess.TimeoutExpired:
            policy.kill()
    return ClosedLoopResult(results, first, float(np.median(inference_ms or [np.nan])))


def _wait(
    condition: Callable[[], bool],
    timeout_s: float,
    policy: subprocess.Popen[bytes],
    log_path: Path,
    what: str,
) -> None:
    """Wait for ``condition``; fail with the policy's log when it dies or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        died = policy.poll() is not None
        if died or time.monotonic() > deadline:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
            state = (
                f"exited with code {policy.returncode}"
                if died
                else f"no {what} in {timeout_s:.0f} s"
            )
            raise ClosedLoopError(f"policy node {state}; last lines of {log_path}:\n{tail}")
        time.sleep(0.1)
