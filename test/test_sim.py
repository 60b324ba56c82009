"""The simulated push robot: physics, expert, camera, recordings (real rosbag2 -> dataset) and
the node over loopback DDS."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dds_helpers import dds_domain, spin_until  # noqa: F401
from rosbags.highlevel import AnyReader

from uwm_ros.msgs import typestore
from uwm_ros.sim.expert import RandomController, expert, inverse_kinematics
from uwm_ros.sim.node import (
    COMMAND_TOPIC,
    EPISODE_TOPIC,
    IMAGE_TOPIC,
    JOINTS_TOPIC,
    TASK,
    SimNode,
    run_episodes,
)
from uwm_ros.sim.record import HOLD_STEPS, _demonstrate, record_expert
from uwm_ros.sim.render import COLORS, render
from uwm_ros.sim.world import (
    BLOCK_HALF,
    DT,
    JOINT_NAMES,
    LOWER,
    MAX_SPEED,
    TIP_RADIUS,
    UPPER,
    World,
    forward_kinematics,
    push_out,
)
from uwm_training.data.config import load_config
from uwm_training.data.convert import bag_jobs, build_dataset
from uwm_training.data.store import Store

CONFIG = Path(__file__).resolve().parents[1] / "config"


# ----- world, expert, camera --------------------------------------------------------------------
def test_joints_move_at_bounded_speed_inside_their_limits() -> None:
    world = World.reset(0)
    for target in (UPPER + 1.0, LOWER - 1.0, np.full(3, np.nan)):
        before = world.q.copy()
        world.step(target)
        assert np.all(np.abs(world.q - before) <= MAX_SPEED * DT + 1e-9)
        assert np.all((LOWER <= world.q) & (world.q <= UPPER))
    assert np.array_equal(world.q, before)  # a non-finite command holds the arm


def test_fingertip_pushes_the_block_out_of_contact() -> None:
    block = np.array([0.0, 0.3])
    assert np.array_equal(push_out(block + [0.2, 0.0], block), block)  # far: untouched
    tip = block + [BLOCK_HALF + TIP_RADIUS / 2, 0.0]  # touching the right face
    moved = push_out(tip, block)
    assert moved[0] < block[0] and moved[1] == block[1]  # pushed left, along the face normal
    assert np.isclose(tip[0] - moved[0], BLOCK_HALF + TIP_RADIUS)
    inside = push_out(block + [0.01, 0.001], block)  # tip centre inside: out by the near face
    assert np.isclose(block[0] + 0.01 - inside[0], BLOCK_HALF + TIP_RADIUS)


def test_inverse_kinematics_reaches_the_target() -> None:
    q_now = World.reset(3).q
    target = np.array([0.1, 0.4])
    q = inverse_kinematics(target, q_now)
    assert np.linalg.norm(forward_kinematics(q)[-1] - target) < 1e-3
    assert np.all((LOWER <= q) & (q <= UPPER))


def test_expert_succeeds_and_random_does_not() -> None:
    seeds = list(range(1000, 1060))
    assert np.mean(run_episodes(expert, seeds)) >= 0.9
    assert np.mean(run_episodes(RandomController(0), seeds)) <= 0.1


def test_camera_draws_the_scene_where_it_is() -> None:
    world = World.reset(7)
    a, b = render(world, 64), render(world, 64)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    world.block = world.block + [0.1, 0.0]
    assert not np.array_equal(render(world, 64), a)  # moving the block changes the pixels
    big = render(world, 128)
    red = np.all(np.abs(big.astype(int) - COLORS["block"]) < 30, axis=-1)
    assert red.sum() > 20  # the block is visible, not hidden under the arm


# ----- recordings -------------------------------------------------------------------------------
def test_recording_is_a_real_bag_that_converts_to_a_dataset(tmp_path: Path) -> None:
    rec = record_expert(tmp_path / "expert", episodes=4, seed=0, progress=False)
    assert rec.successes == 4
    with AnyReader([tmp_path / "expert"], default_typestore=typestore()) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        assert counts[EPISODE_TOPIC] == 4
        assert counts[IMAGE_TOPIC] == counts[JOINTS_TOPIC] == counts[COMMAND_TOPIC] == rec.frames
        for conn, t_ns, raw in reader.messages(
            connections=[c for c in reader.connections if c.topic == JOINTS_TOPIC]
        ):
            msg = reader.deserialize(raw, conn.msgtype)
            assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == t_ns
            assert list(msg.name) == list(JOINT_NAMES)

    cfg = load_config(CONFIG / "sim_convert.yaml")
    build_dataset(bag_jobs([tmp_path / "expert"], cfg), tmp_path / "ds", progress=False)
    store = Store(tmp_path / "ds")
    assert store.num_episodes == 4 and bool(np.all(store.has_action))
    assert store.num_frames == rec.frames  # every frame on the grid, none dropped
    actions = store.lowdim("action")
    last = store.episode_range(0)[1] - 1
    # the rest after the task: commands equal the joint positions
    assert np.allclose(actions[last], store.lowdim("joint_pos")[last])
    assert HOLD_STEPS <= min(np.diff([0, *store.episode_ends]))


def test_failed_demonstrations_are_not_recorded(tmp_path: Path) -> None:
    """Seed 133: the expert's go-around point is out of reach and it times out."""
    rec = record_expert(tmp_path / "expert", episodes=3, seed=132, progress=False)
    assert rec.skipped_seeds == (133,) and rec.episodes == rec.successes == 2
    with AnyReader([tmp_path / "expert"], default_typestore=typestore()) as reader:
        assert {c.topic: c.msgcount for c in reader.connections}[EPISODE_TOPIC] == 2


def test_noisy_demonstrations_record_the_experts_clean_command() -> None:
    """DART: the arm executes perturbed targets, the labels stay what the expert sent."""
    clean = _demonstrate(3, HOLD_STEPS, noise=0.0)
    noisy = _demonstrate(3, HOLD_STEPS, noise=0.05)
    assert [w.q.tolist() for w, _ in _demonstrate(3, HOLD_STEPS, 0.05)] == [
        w.q.tolist() for w, _ in noisy
    ]  # reproducible from the seed
    assert not np.allclose(clean[3][0].q, noisy[3][0].q)  # the perturbation was executed
    acting = [(w, target) for w, target in noisy if not w.done]
    assert all(np.array_equal(target, expert(w)) for w, target in acting)
    assert all(np.array_equal(target, w.q) for w, target in noisy if w.done)  # the rest
    with pytest.raises(ValueError, match="noise"):
        record_expert(Path("unused"), episodes=1, noise=-0.1, progress=False)


def test_action_free_recording_has_only_the_camera(tmp_path: Path) -> None:
    record_expert(tmp_path / "video", episodes=2, seed=5, action_free=True, progress=False)
    with AnyReader([tmp_path / "video"], default_typestore=typestore()) as reader:
        assert set(reader.topics) == {IMAGE_TOPIC, EPISODE_TOPIC}
    cfg = load_config(CONFIG / "sim_convert_video.yaml")
    build_dataset(bag_jobs([tmp_path / "video"], cfg), tmp_path / "ds", progress=False)
    store = Store(tmp_path / "ds")
    assert store.num_episodes == 2 and not np.any(store.has_action)


def test_recording_never_leaves_a_half_written_bag(tmp_path: Path) -> None:
    out = tmp_path / "bag"
    with pytest.raises(ValueError, match="episodes"):
        record_expert(out, episodes=0, progress=False)
    assert not out.exists() and list(tmp_path.iterdir()) == []


# ----- the node over DDS ------------------------------------------------------------------------
def spin_in_background(transport: Any) -> None:
    threading.Thread(target=transport.spin, daemon=True).start()


def test_node_executes_action_chunks(dds_domain: int) -> None:  # noqa: F811
    from uwm_ros.conversions import header, time_msg
    from uwm_ros.transport.dds import DDSTransport

    sim_t = DDSTransport("uwm_sim", params={"settle_steps": 0})
    policy_t = DDSTransport("uwm_policy")
    try:
        joints: list[np.ndarray] = []
        policy_t.subscribe(JOINTS_TOPIC, "sensor_msgs/msg/JointState",
                           lambda m: joints.append(np.asarray(m.position)))  # fmt: skip
        chunks = policy_t.publisher("~/action_chunk", "uwm_ros/msg/ActionChunk")
        SimNode(sim_t)
        spin_in_background(sim_t)
        spin_until(policy_t, lambda: len(joints) > 0 and chunks.matched() > 0)
        target = np.clip(joints[-1] + [0.3, -0.2, 0.1], LOWER, UPPER)
        now = policy_t.now_ns() * 1e-9
        horizon = 40  # 4 s of the same target: the arm gets there at MAX_SPEED
        chunks.publish(policy_t.new(
            "uwm_ros/msg/ActionChunk", header=header(policy_t, now), start=time_msg(policy_t, now),
            dt=DT, names=list(JOINT_NAMES), horizon=horizon, action_dim=3,
            data=np.tile(target, horizon).astype(np.float32), sequence=1, mode="policy",
        ))  # fmt: skip
        spin_until(policy_t, lambda: np.allclose(joints[-1], target, atol=1e-6), timeout_s=10)

        # a JointTrajectory (ros2_control style) replaces the chunk: the newest plan wins
        trajectories = policy_t.publisher(COMMAND_TOPIC, "trajectory_msgs/msg/JointTrajectory")
        spin_until(policy_t, lambda: trajectories.matched() > 0)
        second = target - 0.1
        now = policy_t.now_ns() * 1e-9
        points = [
            policy_t.new(
                "trajectory_msgs/msg/JointTrajectoryPoint",
                positions=second[::-1].copy(),  # joints listed in reverse: matched by name
                time_from_start=policy_t.new("builtin_interfaces/msg/Duration", nanosec=i * 10**8),
            )
            for i in range(1, 10)
        ]
        trajectories.publish(
            policy_t.new(
                "trajectory_msgs/msg/JointTrajectory",
                header=header(policy_t, now),
                joint_names=list(reversed(JOINT_NAMES)),
                points=points,
            )
        )
        spin_until(policy_t, lambda: np.allclose(joints[-1], second, atol=1e-6), timeout_s=10)
    finally:
        sim_t.shutdown()
        policy_t.shutdown()


def test_node_with_the_expert_finishes_episodes(dds_domain: int) -> None:  # noqa: F811
    from uwm_ros.transport.dds import DDSTransport

    sim_t = DDSTransport("uwm_sim", params={"seed": 1000})
    listener = DDSTransport("listener")
    try:
        successes: list[bool] = []
        tasks: list[str] = []
        listener.subscribe("/sim/success", "std_msgs/msg/Bool", lambda m: successes.append(m.data))
        listener.subscribe(EPISODE_TOPIC, "std_msgs/msg/String", lambda m: tasks.append(m.data))
        node = SimNode(sim_t, controller=expert)
        spin_in_background(sim_t)
        spin_until(listener, lambda: len(successes) >= 2, timeout_s=30)
    finally:
        sim_t.shutdown()
        listener.shutdown()
    assert successes[:2] == [r.success for r in node.results[:2]] == [True, True]
    assert [r.seed for r in node.results[:2]] == [1000, 1001]
    assert tasks and set(tasks) == {TASK}  # each new episode is announced
