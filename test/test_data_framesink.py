"""Frames compressed in a second process: the same files as in-process, failures surface."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from data_helpers import (
    T0,
    convert,
    convert_config,
    image_msg,
    leftovers,
    robot_messages,
    string_msg,
    write_bag,
)

import uwm_training.data.cores as cores
import uwm_training.data.extract as extract
import uwm_training.data.framesink as framesink
from uwm_training.data.errors import BagError, DataError
from uwm_training.data.framesink import FrameSink
from uwm_training.data.shards import ShardFiles


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and p.parent != root  # the root zarr.json holds source paths
    }


@pytest.mark.parametrize("ring_bytes", [framesink.RING_BYTES, 1])
def test_offloaded_frames_are_the_in_process_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ring_bytes: int
) -> None:
    """A 5 Hz camera serving two ticks each (repeats), short episodes discarded (rewinds, one
    across the first shard boundary, 64), more than a shard of frames; with the smallest ring
    (8 slots) the reader waits for the writer to free slots, and slots are reused."""
    msgs = robot_messages(seconds=14.0, camera_hz=(5, 30), drop=())
    cuts = [1.0, 1.6, 7.1, 7.8]  # 0.6 s and 0.7 s episodes are short: frames 10-16, 60-67
    msgs += [("/episode", T0 + round(s * 1e9), string_msg(f"task {s}")) for s in cuts]
    bag = write_bag(tmp_path / "bag", msgs)
    cfg = convert_config(
        tmp_path,
        cameras={"front": {"topic": "/front/image_raw", "max_skew": 0.1},
                 "wrist": {"topic": "/wrist/image_raw"}},
        episodes={"marker_topic": "/episode", "min_frames": 8},
    )  # fmt: skip
    (local,) = convert([bag], tmp_path / "local", cfg, allow_losses=True)
    monkeypatch.setattr(framesink, "RING_BYTES", ring_bytes)
    monkeypatch.setattr(extract, "OFFLOAD_MIN_FRAMES", 0)
    monkeypatch.setattr(extract, "core_free", lambda *_: True)
    (remote,) = convert([bag], tmp_path / "remote", cfg, allow_losses=True)
    assert local["short_episodes"] == 2 and local["frames"] > 64
    assert local["streams"]["front"]["duplicated_ticks"] > 30
    assert files(tmp_path / "local") == files(tmp_path / "remote")


def test_a_failing_offloaded_conversion_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    msgs = [m for m in robot_messages(seconds=3.0) if m[0] != "/wrist/image_raw"]
    size = lambda i: (48, 64) if i < 60 else (60, 80)  # noqa: E731
    rgb = lambda i: np.zeros((*size(i), 3), np.uint8)  # noqa: E731
    msgs += [("/wrist/image_raw", T0 + i * 33_000_000, image_msg(T0 + i * 33_000_000, rgb(i)))
             for i in range(90)]  # fmt: skip
    monkeypatch.setattr(extract, "OFFLOAD_MIN_FRAMES", 0)
    monkeypatch.setattr(extract, "core_free", lambda *_: True)
    out = tmp_path / "out" / "ds"
    with pytest.raises(BagError, match="image size changed mid-bag"):
        convert([write_bag(tmp_path / "bag", msgs)], out, convert_config(tmp_path))
    assert not out.parent.exists() and not leftovers(tmp_path)


def test_frame_writer_failure_is_an_error(tmp_path: Path) -> None:
    sink = FrameSink([ShardFiles(tmp_path / "missing", (4, 4, 3), 2, 1)])
    frame: Any = np.zeros((4, 4, 3), np.uint8)
    for _ in range(3):  # a full shard: written into a folder that is not there
        sink.add(0, lambda: frame)
    with pytest.raises(DataError, match="frame writer process failed .*No such file"):
        sink.close()


def test_a_writer_that_fails_while_the_reader_waits_for_slots_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ring is full of frames the failed writer never takes: the wait ends with its error."""
    monkeypatch.setattr(framesink, "RING_BYTES", 1)  # 8 slots
    sink = FrameSink([ShardFiles(tmp_path / "missing", (4, 4, 3), 2, 1)])
    with pytest.raises(DataError, match="frame writer process failed .*No such file"):
        for i in range(sink.slots * 4):
            sink.add(0, lambda i=i: np.full((4, 4, 3), i % 256, np.uint8))
    sink.abort()


def test_this_process_s_own_threads_are_not_load_from_others() -> None:
    """The hasher runs on its own thread while the check is made: a busy thread of ours must
    not read as another process's load (it measured ~1 core before the fix)."""
    stop = threading.Event()

    def hash_until_stopped() -> None:  # hashlib releases the GIL: a core of its own
        data = bytes(1 << 24)
        while not stop.is_set():
            hashlib.sha256(data).digest()

    before = cores.other_load(window_s=0.3)
    thread = threading.Thread(target=hash_until_stopped)
    thread.start()
    try:
        time.sleep(0.1)
        during = cores.other_load(window_s=0.3)
    finally:
        stop.set()
        thread.join()
    assert before is not None and during is not None
    assert during < before + 0.5


def test_no_second_process_while_every_core_is_busy() -> None:
    """Busy now, not a minute ago: the offload check samples the CPUs, not the load average."""
    spin = "import time\nend = time.time() + 5\nwhile time.time() < end: pass"
    busy = len(os.sched_getaffinity(0))
    procs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(busy)]
    try:
        time.sleep(0.5)
        assert not cores.core_free()
    finally:
        for p in procs:
            p.kill()
            p.wait()
    with_one_core = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(with_one_core)})
        assert not cores.core_free()  # one core: the reader's own
    finally:
        os.sched_setaffinity(0, with_one_core)
