"""The simulated robot as a ROS 2 node: camera and joint states out, joint commands in.

Runs as ``uwm sim --transport dds`` and ``ros2 run uwm_ros sim``. Every control period (10 Hz)
it publishes the camera frame and joint states of the current state, then executes the command
due now: the action of the newest ``ActionChunk`` (or ``JointTrajectory``) whose execution
window covers this instant, matched to the joints by name, else it holds the arm. An episode
ends on success or timeout: ``/sim/success`` (std_msgs/Bool) reports it, a new random episode
starts and ``/episode`` (std_msgs/String, the task text) marks it, as in the recordings.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from uwm_ros.conversions import (
    MessageFactory,
    header,
    image_msg,
    joint_state_msg,
    seconds,
)
from uwm_ros.transport.base import RELIABLE, SENSOR_DATA, Transport

from .expert import Controller
from .render import render
from .world import DT, JOINT_NAMES, World

TASK = "push the red block into the green circle"
CAMERA = "top"
IMAGE_TOPIC = f"/camera/{CAMERA}/image_raw"
JOINTS_TOPIC = "/joint_states"
COMMAND_TOPIC = "/arm_controller/joint_trajectory"  # what the recordings' actions are
EPISODE_TOPIC = "/episode"
SUCCESS_TOPIC = "/sim/success"
DEFAULTS: dict[str, Any] = {
    "seed": 0,  # episode i draws its block and goal from seed + i
    "image_size": 64,
    "chunk_topic": "/uwm_policy/action_chunk",
    "settle_steps": 2,  # periods a new episode holds still before it obeys new commands
}


@dataclass(frozen=True)
class EpisodeResult:
    index: int
    seed: int
    success: bool
    steps: int


def observation(messages: MessageFactory, world: World, t: float, size: int) -> dict[str, Any]:
    """Topic -> message for the state of ``world`` at time ``t``."""
    return {
        IMAGE_TOPIC: image_msg(messages, render(world, size), t, f"{CAMERA}_camera"),
        JOINTS_TOPIC: joint_state_msg(messages, JOINT_NAMES, world.q, t),
    }


def trajectory(messages: MessageFactory, target: np.ndarray, t: float) -> Any:
    """A one-point JointTrajectory: reach ``target`` one control period after ``t``."""
    point = messages.new(
        "trajectory_msgs/msg/JointTrajectoryPoint",
        positions=np.asarray(target, np.float64),
        time_from_start=messages.new("builtin_interfaces/msg/Duration", nanosec=int(DT * 1e9)),
    )
    return messages.new(
        "trajectory_msgs/msg/JointTrajectory",
        header=header(messages, t),
        joint_names=list(JOINT_NAMES),
        points=[point],
    )


@dataclass
class _Plan:
    """Joint targets over time: ``targets[i]`` is due at ``start + i * dt``."""

    observed: float  # stamp of the observation the plan was computed from
    start: float
    dt: float
    targets: np.ndarray

    def at(self, t: float) -> np.ndarray | None:
        i = int(np.floor((t - self.start) / self.dt + 0.5))
        return self.targets[i] if 0 <= i < len(self.targets) else None


class SimNode:
    """The push task on a transport; ``controller`` (e.g. the expert) replaces commands."""

    def __init__(
        self,
        transport: Transport,
        controller: Controller | None = None,
        on_episode: Callable[[EpisodeResult], None] | None = None,
    ) -> None:
        self.t = transport
        p = {k: transport.param(k, v) for k, v in DEFAULTS.items()}
        self.seed, self.size, self.settle = int(p["seed"]), int(p["image_size"]), p["settle_steps"]
        self.controller, self.on_episode = controller, on_episode
        self.results: list[EpisodeResult] = []
        self._lock = threading.RLock()  # the timer, command callbacks and reset share the world
        self._plans: list[_Plan] = []
        self._warned: set[str] = set()
        self.pubs = {
            IMAGE_TOPIC: transport.publisher(IMAGE_TOPIC, "sensor_msgs/msg/Image", SENSOR_DATA),
            JOINTS_TOPIC: transport.publisher(JOINTS_TOPIC, "sensor_msgs/msg/JointState"),
            EPISODE_TOPIC: transport.publisher(EPISODE_TOPIC, "std_msgs/msg/String"),
            SUCCESS_TOPIC: transport.publisher(SUCCESS_TOPIC, "std_msgs/msg/Bool"),
        }
        transport.subscribe(p["chunk_topic"], "uwm_ros/msg/ActionChunk", self._on_chunk, RELIABLE)
        transport.subscribe(
            COMMAND_TOPIC, "trajectory_msgs/msg/JointTrajectory", self._on_trajectory, RELIABLE
        )
        transport.subscribe("/sim/reset", "std_msgs/msg/Empty", lambda _: self.reset(), RELIABLE)
        self.reset()
        transport.timer(DT, self.tick)

    # ----- episodes ----------------------------------------------------------------------------
    def restart(self) -> None:
        """Forget the results and start again from episode 0 (e.g. once the policy is up)."""
        with self._lock:
            self.results.clear()
            self.reset()

    def reset(self) -> None:
        """Start the next episode (its seed: ``seed`` + episode index)."""
        with self._lock:
            self.world = World.reset(self.seed + len(self.results))
            self.started = self.t.now_ns() * 1e-9
            self._plans.clear()
        self.pubs[EPISODE_TOPIC].publish(self.t.new("std_msgs/msg/String", data=TASK))

    def _finish(self) -> None:
        result = EpisodeResult(
            len(self.results), self.seed + len(self.results), self.world.success, self.world.steps
        )
        self.results.append(result)
        self.pubs[SUCCESS_TOPIC].publish(self.t.new("std_msgs/msg/Bool", data=result.success))
        self.t.logger.info(
            "episode %d: %s after %d steps",
            result.index,
            "success" if result.success else "timeout",
            result.steps,
        )
        if self.on_episode is not None:
            self.on_episode(result)
        self.reset()

    # ----- control loop ------------------------------------------------------------------------
    def tick(self) -> None:
        """Publish the current state, then execute the command due now for one period."""
        with self._lock:
            if self.world.done:
                self._finish()
            now = self.t.now_ns() * 1e-9
            for topic, msg in observation(self.t, self.world, now, self.size).items():
                self.pubs[topic].publish(msg)
            target: np.ndarray | None
            if self.controller is not None:
                target = self.controller(self.world)
            else:
                target = self._due(now)
            self.world.step(self.world.q if target is None else target)

    def _due(self, now: float) -> np.ndarray | None:
        """The target of the newest plan covering ``now`` (computed after the episode settled)."""
        settled = self.started + self.settle * DT
        for plan in reversed(self._plans):
            if plan.observed >= settled and (target := plan.at(now)) is not None:
                return target
        return None

    # ----- commands ----------------------------------------------------------------------------
    def _plan(self, names: list[str], observed: float, start: float, dt: float, rows: Any) -> None:
        order = [names.index(n) for n in JOINT_NAMES if n in names]
        if len(order) != len(JOINT_NAMES):
            key = ",".join(names)
            if key not in self._warned:
                self._warned.add(key)
                self.t.logger.error("ignoring commands for joints %s; need %s", names, JOINT_NAMES)
            return
        targets = np.asarray(rows, np.float64).reshape(-1, len(names))[:, order]
        with self._lock:
            self._plans = [*self._plans[-1:], _Plan(observed, start, dt, targets)]

    def _on_chunk(self, msg: Any) -> None:
        if msg.mode == "stop":  # the policy node stopped (fault or disabled): hold the arm
            with self._lock:
                self._plans.clear()
            return
        data = np.asarray(msg.data, np.float64)
        self._plan(list(msg.names), seconds(msg.header.stamp), seconds(msg.start), msg.dt, data)

    def _on_trajectory(self, msg: Any) -> None:
        if not msg.points:
            return
        stamp = seconds(msg.header.stamp) or self.t.now_ns() * 1e-9  # zero stamp: start now
        # point i is the target for the period ending at its time_from_start; points are taken
        # as DT apart (what the policy node and the recordings send)
        start = stamp + seconds(msg.points[0].time_from_start) - DT
        self._plan(list(msg.joint_names), stamp, start, DT, [p.positions for p in msg.points])


def run_episodes(controller: Controller, seeds: list[int]) -> list[bool]:
    """Success of ``controller`` run in-process (no transport) on the episodes ``seeds``."""
    successes = []
    for seed in seeds:
        world = World.reset(seed)
        while not world.done:
            world.step(controller(world))
        successes.append(world.success)
    return successes


def run(transport: Transport, episodes: int = 0) -> list[EpisodeResult]:
    """Spin the sim on ``transport`` until Ctrl-C or ``episodes`` episodes (0: forever)."""
    done = threading.Event()

    def on_episode(result: EpisodeResult) -> None:
        if episodes and result.index + 1 >= episodes:
            done.set()

    node = SimNode(transport, on_episode=on_episode)
    spinner = threading.Thread(target=transport.spin, daemon=True)
    spinner.start()
    try:
        while not done.wait(0.1):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        transport.shutdown()
        spinner.join(timeout=2.0)
    return node.results


def main(argv: list[str] | None = None) -> None:
    """``ros2 run uwm_ros sim``: the simulated robot on rclpy."""
    from uwm_ros.transport.ros import RclpyTransport

    run(RclpyTransport("uwm_sim", args=argv))
