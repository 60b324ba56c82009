"""rosbag2 -> dataset: round trips on real bags (both storages) against a brute-force reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from data_helpers import (
    JOINTS,
    T0,
    bool_msg,
    compressed_msg,
    convert,
    convert_config,
    float_array_msg,
    image_msg,
    joint_positions,
    joint_state_msg,
    robot_messages,
    string_msg,
    twist_msg,
    write_bag,
)

from uwm_ros.bundle.contract import Normalizer
from uwm_training.data.errors import DataError
from uwm_training.data.store import Store


def reference(
    msgs: list[Any], fps: float, skews: dict[str, float], clock: str = "/front/image_raw"
) -> list[tuple[int, dict[str, Any]]]:
    """(tick, topic -> message) of the frames a resampler must produce, by brute force over
    whole topics: a grid anchored on the clock camera's first frame, each stream's sample
    stamped nearest to the tick (a tie takes the earlier), within its skew. (Not for a clock
    camera at the grid rate, whose phase the grid follows.)"""
    ordered = sorted(msgs, key=lambda m: m[1])
    stamp = lambda msg: msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec  # noqa: E731
    streams: dict[str, list[tuple[int, Any]]] = {}
    for topic, _, msg in ordered:
        streams.setdefault(topic, []).append((stamp(msg), msg))
    t0 = min(s for s, _ in streams[clock])
    end = min(s[-1][0] + skews[topic] * 1e9 for topic, s in streams.items())
    frames, k = [], 0
    while (t := t0 + round(k * 1e9 / fps)) <= end:
        picked = {}
        for topic, samples in streams.items():
            s, m = min(samples, key=lambda sm: (abs(sm[0] - t), sm[0]))
            if abs(s - t) <= skews[topic] * 1e9:
                picked[topic] = m
        if len(picked) == len(streams):
            frames.append((t, picked))
        k += 1
    return frames


SKEWS = {
    "/front/image_raw": 0.05,
    "/wrist/image_raw": 0.05,
    "/joint_states": 0.05,
    "/command": 0.15,
}


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_round_trip_multi_rate_bag_gives_exact_arrays(tmp_path: Path, storage: str) -> None:
    """Cameras at 30 and 15 Hz, joints at 250 Hz, commands at 10 Hz, jitter, dropped frames."""
    msgs = robot_messages(seconds=3.0, camera_hz=(30, 15), joint_hz=250, drop=(17, 18))
    bag = write_bag(tmp_path / "bag", msgs, storage=storage)
    cameras = {"front": {"topic": "/front/image_raw"},
               "wrist": {"topic": "/wrist/image_raw", "max_skew": 0.1}}  # fmt: skip
    (report,) = convert([bag], tmp_path / "ds", convert_config(tmp_path, cameras=cameras))

    expected = [picked for _, picked in reference(msgs, 10, {**SKEWS, "/wrist/image_raw": 0.1})]
    store = Store(tmp_path / "ds")
    assert store.num_frames == len(expected) == report["frames"] > 20
    assert store.episode_ends.tolist() == [len(expected)] and store.has_action.tolist() == [True]
    for cam in ("front", "wrist"):
        topic = f"/{cam}/image_raw"
        want = np.stack([np.broadcast_to(m[topic].data[:3], (32, 32, 3)) for m in expected])
        got = np.stack([store.frames(cam).read(i) for i in range(store.num_frames)])
        np.testing.assert_array_equal(got, want)
    order = [list(m["/joint_states"].name).index(j) for j in JOINTS for m in expected[:1]]
    want_q = np.stack([m["/joint_states"].position[order] for m in expected]).astype(np.float32)
    np.testing.assert_array_equal(store.lowdim("joint_pos"), want_q)
    want_a = np.stack([m["/command"].points[0].positions for m in expected]).astype(np.float32)
    np.testing.assert_array_equal(store.lowdim("action"), want_a)

    stats = store.attrs["stats"]
    np.testing.assert_allclose(stats["action"]["min"], want_a.min(0), rtol=1e-6)
    np.testing.assert_allclose(stats["joint_pos"]["std"], want_q.std(0), rtol=1e-4)
    assert Normalizer.from_stats(stats["action"]).dim == 3
    assert report["streams"]["front"]["missing_messages"] == 2  # the dropped camera frames
    assert report["streams"]["command"]["rate_hz"] == pytest.approx(10, rel=0.05)
    assert store.attrs["reports"][0]["frames"] == len(expected)
    assert len(store.attrs["sources"][0]["blake3"]) == 64
    # zarr reads the frames written as chunk files
    np.testing.assert_array_equal(zarr.open_group(tmp_path / "ds")["data/wrist"][3], got[3])


def test_camera_silent_for_seconds_drops_exactly_those_frames(tmp_path: Path) -> None:
    """A camera out for 3 s (longer than the resampler's slack): the ticks it leaves behind are
    resolved by the receive clock, and the frames are the brute-force reference's."""
    msgs = robot_messages(seconds=6.0, drop=tuple(range(60, 150)))
    bag = write_bag(tmp_path / "bag", msgs)
    with pytest.raises(
        DataError, match=r"lost 29 of 61 frames .* front \(30\.\d Hz\) had no sample"
    ):
        convert([bag], tmp_path / "ds", convert_config(tmp_path))
    assert not (tmp_path / "ds").exists()
    (report,) = convert([bag], tmp_path / "ds", convert_config(tmp_path), allow_losses=True)
    expected = reference(msgs, 10, SKEWS)
    store = Store(tmp_path / "ds")
    assert store.num_frames == len(expected) == report["frames"] and report["dropped"] >= 29
    order = [list(expected[0][1]["/joint_states"].name).index(j) for j in JOINTS]
    want_q = np.stack([m["/joint_states"].position[order] for _, m in expected])
    np.testing.assert_array_equal(store.lowdim("joint_pos"), want_q.astype(np.float32))


def single_camera(
    tmp_path: Path, frames: list[Any], extra: list[Any] = (), **cfg: Any
) -> tuple[Store, dict[str, Any]]:
    """Bag with one camera (messages built from stamps), joints at 100 Hz, converted at 10 fps."""
    t0 = 1_700_000_000 * 10**9
    msgs = [("/front/image_raw", t0 + i * 50_000_000, f(t0 + i * 50_000_000))
            for i, f in enumerate(frames)]  # fmt: skip
    span = len(frames) * 50_000_000
    msgs += [("/joint_states", t, joint_state_msg(t, JOINTS, joint_positions(t)))
             for t in range(t0, t0 + span, 10_000_000)]  # fmt: skip
    msgs += list(extra)
    bag = write_bag(tmp_path / "bag", msgs)
    overrides = {"cameras": {"front": {"topic": "/front/image_raw"}}, "action": {"source": "none"}}
    (report,) = convert([bag], tmp_path / "ds", convert_config(tmp_path, **{**overrides, **cfg}))
    return Store(tmp_path / "ds"), report


ENCODINGS = ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16"]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_image_encoding_decodes_to_rgb(tmp_path: Path, encoding: str) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    if encoding.startswith("mono"):
        rgb[..., 1] = rgb[..., 2] = rgb[..., 0]
    store, _ = single_camera(
        tmp_path, [lambda t: image_msg(t, rgb, encoding, row_pad=6)] * 8, image_size=32
    )
    from uwm_ros.bundle.contract import fit_image

    np.testing.assert_array_equal(store.frames("front").read(0), fit_image(rgb, 32))


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_compressed_images_decode(tmp_path: Path, fmt: str) -> None:
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[8:24, 8:24] = (200, 40, 90)
    store, _ = single_camera(tmp_path, [lambda t: compressed_msg(t, rgb, fmt)] * 8)
    error = np.abs(store.frames("front").read(0).astype(int) - rgb)
    assert error.max() == 0 if fmt == "png" else error.mean() < 4  # jpeg rings at edges


def test_crop_is_applied_before_the_resize(tmp_path: Path) -> None:
    rgb = np.zeros((40, 80, 3), np.uint8)
    rgb[:, 40:] = 255
    store, _ = single_camera(
        tmp_path, [lambda t: image_msg(t, rgb)] * 8,
        cameras={"front": {"topic": "/front/image_raw", "crop": [40, 0, 40, 40]}},
    )  # fmt: skip
    assert (store.frames("front").read(0) == 255).all()


def command_bag(tmp_path: Path, topic_msgs: list[Any]) -> list[Any]:
    msgs = robot_messages(seconds=2.0, drop=())
    return [m for m in msgs if m[0] != "/command"] + topic_msgs


@pytest.mark.parametrize(
    "kind, make, names, want",
    [
        ("joint_state", lambda t: joint_state_msg(t, JOINTS[::-1], [3.0, 2.0, 1.0]), None,
         [1.0, 2.0, 3.0]),
        ("float_array", lambda t: float_array_msg([4.0, 5.0]), ["grip", "lift"], [4.0, 5.0]),
        ("twist", lambda t: twist_msg([0.1, 0, 0], [0, 0, 0.5]), None, [0.1, 0, 0, 0, 0, 0.5]),
    ],
)  # fmt: skip
def test_command_topic_types(tmp_path: Path, kind: str, make: Any, names: Any, want: Any) -> None:
    t0 = 1_700_000_000 * 10**9
    cmds = [("/command", t0 + i * 50_000_000, make(t0 + i * 50_000_000)) for i in range(40)]
    bag = write_bag(tmp_path / "bag", command_bag(tmp_path, cmds))
    action = {"source": "command", "topic": "/command", "max_skew": 0.15, "names": names}
    convert([bag], tmp_path / "ds", convert_config(tmp_path, action=action))
    store = Store(tmp_path / "ds")
    np.testing.assert_allclose(store.lowdim("action"), np.tile(want, (store.num_frames, 1)))
    assert store.spec["lowdim"]["action"] == (names or (
        ["linear.x", "linear.y", "linear.z", "angular.x", "angular.y", "angular.z"]
        if kind == "twist" else list(JOINTS)))  # fmt: skip


@pytest.mark.parametrize("source", ["next_positions", "deltas"])
def test_actions_derived_from_joint_states(tmp_path: Path, source: str) -> None:
    bag = write_bag(tmp_path / "bag", robot_messages(seconds=2.0, drop=()))
    convert([bag], tmp_path / "ds", convert_config(tmp_path, action={"source": source}))
    store = Store(tmp_path / "ds")
    q, a = store.lowdim("joint_pos"), store.lowdim("action")
    # the last frame has no next position: one frame fewer than with a command topic
    assert store.num_frames >= 17 and store.has_action.all()
    step = q[1:] - q[:-1] if source == "deltas" else q[1:]
    np.testing.assert_allclose(a[:-1], step, atol=1e-6)


def test_bag_without_the_command_topic_becomes_action_free(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "bag", command_bag(tmp_path, []))
    (report,) = convert([bag], tmp_path / "ds", convert_config(tmp_path))
    store = Store(tmp_path / "ds")
    assert store.has_action.tolist() == [False] and not store.lowdim("action").any()
    assert store.attrs["stats"]["action"]["count"] == 0
    assert any("command topic absent" in w for w in report["warnings"])


def marked(tmp_path: Path, markers: list[Any]) -> tuple[Store, dict[str, Any]]:
    t0 = 1_700_000_000 * 10**9
    timed = [("/episode", t0 + round(s * 1e9), msg) for s, msg in markers]
    bag = write_bag(tmp_path / "bag", robot_messages(seconds=3.0, drop=()) + timed)
    cfg = convert_config(tmp_path, episodes={"marker_topic": "/episode"})
    (report,) = convert([bag], tmp_path / "ds", cfg)
    return Store(tmp_path / "ds"), report


def test_string_markers_split_episodes_and_carry_tasks(tmp_path: Path) -> None:
    store, report = marked(tmp_path, [(0.7, string_msg("pick red")), (1.4, string_msg("place"))])
    lengths = np.diff([0, *store.episode_ends]).tolist()
    assert len(lengths) == 3 and lengths[1] == 7  # 0.7 .. 1.4 s at 10 fps
    assert [store.attrs["tasks"][i] for i in store.episode_task] == ["", "pick red", "place"]
    assert report["marker_cuts"] == 2


def test_bool_markers_pause_recording(tmp_path: Path) -> None:
    store, _ = marked(
        tmp_path, [(0.5, bool_msg(True)), (1.2, bool_msg(False)), (2.0, bool_msg(True))]
    )
    lengths = np.diff([0, *store.episode_ends]).tolist()
    assert len(lengths) == 3 and lengths[1] == 7 and sum(lengths) < 25  # 1.2 .. 2.0 s paused


def test_gaps_split_episodes_or_drop_frames(tmp_path: Path) -> None:
    msgs = robot_messages(seconds=4.0, drop=tuple(range(45, 70)))  # front camera out 0.8 s
    bag = write_bag(tmp_path / "bag", msgs)
    (dropped,) = convert([bag], tmp_path / "a", convert_config(tmp_path), allow_losses=True)
    assert Store(tmp_path / "a").num_episodes == 1 and dropped["dropped"] >= 7
    cfg = convert_config(tmp_path, episodes={"split_gap": 0.5, "min_frames": 3})
    (split,) = convert([bag], tmp_path / "b", cfg, allow_losses=True)
    assert Store(tmp_path / "b").num_episodes == 2 and split["splits"] == 1
    assert split["frames"] == dropped["frames"]


def test_partial_joint_messages_are_merged_by_name(tmp_path: Path) -> None:
    """Arm (two joints, 200 Hz) and gripper (one joint, 50 Hz) publish on one topic."""
    msgs = [m for m in robot_messages(seconds=2.0, drop=()) if m[0] != "/joint_states"]
    for names, period in [(("elbow", "shoulder"), 5_000_000), (("wrist",), 20_000_000)]:
        for t in range(T0, T0 + 2_000_000_000, period):
            q = dict(zip(JOINTS, joint_positions(t)))
            msg = joint_state_msg(t, names, [q[n] for n in names])
            msgs.append(("/joint_states", t + 1_000_000, msg))
    convert([write_bag(tmp_path / "bag", msgs)], tmp_path / "ds", convert_config(tmp_path))
    got = Store(tmp_path / "ds").lowdim("joint_pos")
    ticks = [t for t, _ in reference(msgs, 10, SKEWS)]
    assert len(got) == len(ticks) > 10
    for row, t in zip(got, ticks):  # the message nearest t; each joint: its publisher's latest
        arm = min(range(T0, T0 + 2_000_000_000, 5_000_000), key=lambda s: (abs(s - t), s))
        grip = T0 + (arm - T0) // 20_000_000 * 20_000_000
        want = [joint_positions(arm)[0], joint_positions(arm)[1], joint_positions(grip)[2]]
        np.testing.assert_allclose(row, want, rtol=1e-6)


def test_velocities_and_efforts_become_keys(tmp_path: Path) -> None:
    msgs = [m for m in robot_messages(seconds=1.5, drop=()) if m[0] != "/joint_states"]
    for t in range(T0, T0 + 1_500_000_000, 10_000_000):
        q = joint_positions(t)
        msgs.append(("/joint_states", t, joint_state_msg(t, JOINTS, q, 2 * q, 3 * q)))
    joints = {"topic": "/joint_states", "names": list(JOINTS), "velocity": True, "effort": True}
    convert(
        [write_bag(tmp_path / "bag", msgs)],
        tmp_path / "ds",
        convert_config(tmp_path, joints=joints),
    )
    store = Store(tmp_path / "ds")
    q = store.lowdim("joint_pos")
    np.testing.assert_allclose(store.lowdim("joint_vel"), 2 * q, rtol=1e-6)
    np.testing.assert_allclose(store.lowdim("joint_effort"), 3 * q, rtol=1e-6)
    assert set(store.attrs["stats"]) == {"joint_pos", "joint_vel", "joint_effort", "action"}


def test_receive_time_source_ignores_header_stamps(tmp_path: Path) -> None:
    msgs = robot_messages(seconds=1.5)
    for _, _, msg in msgs:  # sim-time stamps: meaningless against the bag's receive clock
        msg.header.stamp.sec -= T0 // 10**9
    bag = write_bag(tmp_path / "bag", msgs)
    (report,) = convert([bag], tmp_path / "ds", convert_config(tmp_path, time_source="receive"))
    assert report["frames"] >= 12 and report["streams"]["front"]["rate_hz"] == pytest.approx(
        30, rel=0.1
    )
