"""``bag play`` -> DDS (another process, over loopback) -> ``bag record``: same messages."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dds_helpers import WAIT_S, dds_domain, subprocess_env  # noqa: F401 (fixture)
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer

from uwm_ros.msgs import ACTION_CHUNK, new_message, typestore
from uwm_ros.nodes.bag_tools import BagToolError, main, play, record

CAMERA, JOINTS, CHUNKS = "/camera/front/image_raw", "/joint_states", "/uwm_policy/action_chunk"
BAG_TOOLS = [sys.executable, "-m", "uwm_ros.nodes.bag_tools", "bag"]


def _write_bag(path: Path) -> dict[str, list[bytes]]:
    """A small mcap bag: 30 Hz camera, 100 Hz joints, chunks; returns the CDR per topic."""
    store = typestore()
    t0 = 1_700_000_000_000_000_000
    messages: list[tuple[str, str, int, Any]] = []
    for i in range(6):
        stamp = new_message(store, "builtin_interfaces/msg/Time", sec=1_700_000_000, nanosec=i)
        header = new_message(store, "std_msgs/msg/Header", stamp=stamp, frame_id="front")
        pixels = np.full(32 * 24 * 3, i, dtype=np.uint8)
        image = new_message(store, "sensor_msgs/msg/Image", header=header, height=24, width=32,
                            encoding="rgb8", step=96, data=pixels)  # fmt: skip
        messages.append((CAMERA, "sensor_msgs/msg/Image", t0 + i * 33_000_000, image))
    for i in range(20):
        state = new_message(store, "sensor_msgs/msg/JointState", name=["a", "b"],
                            position=[i * 0.1, -i * 0.1])  # fmt: skip
        messages.append((JOINTS, "sensor_msgs/msg/JointState", t0 + i * 10_000_000, state))
    for i in range(3):
        chunk = new_message(store, ACTION_CHUNK, horizon=2, action_dim=2, data=[i, i, i, i],
                            names=["a", "b"], sequence=i, mode="policy")  # fmt: skip
        messages.append((CHUNKS, ACTION_CHUNK, t0 + i * 50_000_000, chunk))
    expected: dict[str, list[bytes]] = {}
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        types = {topic: msgtype for topic, msgtype, _, _ in messages}
        connections = {
            topic: writer.add_connection(topic, msgtype, typestore=store)
            for topic, msgtype in types.items()
        }
        for topic, msgtype, stamp, msg in sorted(messages, key=lambda m: m[2]):
            data = bytes(store.serialize_cdr(msg, msgtype))
            writer.write(connections[topic], stamp, data)
            expected.setdefault(topic, []).append(data)
    return expected


def _read_bag(path: Path) -> dict[str, list[bytes]]:
    with AnyReader([path]) as reader:
        found: dict[str, list[bytes]] = {topic: [] for topic in reader.topics}
        for conn, _, raw in reader.messages():
            found[conn.topic].append(bytes(raw))
    return found


def test_play_record_roundtrip(tmp_path: Path, dds_domain: int) -> None:  # noqa: F811
    source = tmp_path / "source"
    expected = _write_bag(source)
    out, stop = tmp_path / "recorded", threading.Event()
    counts: dict[str, int] = {}
    recorder = threading.Thread(
        target=lambda: counts.update(record(out, list(expected), progress=False, stop=stop))
    )
    recorder.start()
    try:
        player = subprocess.run(
            [*BAG_TOOLS, "play", str(source), "--rate", "2", "--quiet",
             "--wait-for-subscribers", str(WAIT_S)],
            env=subprocess_env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert player.returncode == 0, player.stderr
        assert "published 29 messages" in player.stderr
    finally:
        stop.set()
        recorder.join(timeout=WAIT_S)
    assert not recorder.is_alive()
    assert counts == {topic: len(data) for topic, data in expected.items()}
    # byte-identical: bag -> dataclass -> DDS -> another process -> dataclass -> bag
    assert _read_bag(out) == expected
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_record_ends_cleanly_on_ctrl_c(tmp_path: Path, dds_domain: int) -> None:  # noqa: F811
    out = tmp_path / "nothing"
    proc = subprocess.Popen(
        [*BAG_TOOLS, "record", "--out", str(out), "--topics", "/absent", "--quiet"],
        env=subprocess_env(), stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    assert select.select([proc.stderr], [], [], 30)[0], "record printed nothing"
    assert "recording /absent" in proc.stderr.readline()  # printed once Ctrl-C is handled
    try:
        proc.wait(timeout=1.0)  # still recording
        pytest.fail("record exited on its own")
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=WAIT_S) == 0, proc.stderr.read()
    assert (out / "metadata.yaml").exists() and _read_bag(out) == {}


def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "source"
    _write_bag(source)
    assert main(["bag", "play", str(source), "--topics", "/nope"]) == 2
    assert "no topic(s) ['/nope']" in capsys.readouterr().err
    assert main(["bag", "play", str(tmp_path / "absent")]) == 2
    assert "absent" in capsys.readouterr().err
    with pytest.raises(BagToolError, match="rate"):
        play(source, rate=0)
    with pytest.raises(BagToolError, match="exists"):
        record(source, ["/x"])
