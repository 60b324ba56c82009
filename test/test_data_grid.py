"""The frame grid: every camera frame lands on the tick nearest to it, once.

Real cameras stamp frames with jitter around the grid, and their clocks drift against it; the
resampler (nearest sample, grid anchored on the first camera frame and following its phase)
must neither lose frames nor repeat them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from data_helpers import (
    camera_messages,
    convert,
    convert_config,
    frame_indices,
    jittered,
    write_bag,
)

from uwm_training.data.store import Store


def camera_only(tmp_path: Path, stamps: list[int], fps: float) -> tuple[list[int], dict[str, Any]]:
    """Convert a bag with one camera at these stamps; returns the frames' indices and report."""
    bag = write_bag(tmp_path / "bag", camera_messages(stamps))
    cfg = convert_config(
        tmp_path, fps=fps, cameras={"front": {"topic": "/front/image_raw"}}, joints=None,
        action={"source": "none"}, max_skew=0.5 / fps,
    )  # fmt: skip
    (report,) = convert([bag], tmp_path / "ds", cfg)
    store = Store(tmp_path / "ds")
    frames = (store.frames("front").read(i) for i in range(store.num_frames))
    return frame_indices(frames), report


@pytest.mark.parametrize("ratio", [1, 2, 3])
def test_jittered_camera_gives_each_tick_its_nearest_frame_once(tmp_path: Path, ratio: int) -> None:
    """A camera at 1x/2x/3x the 10 fps grid, stamps +-1 ms around their ideal times: tick k
    shows frame ratio*k, for every tick (at 1x: every frame once, none twice)."""
    ticks = 300
    stamps = jittered(ratio * (ticks - 1) + 1, 10 * ratio)
    indices, report = camera_only(tmp_path, stamps, fps=10)
    assert indices == [ratio * k % 251 for k in range(ticks)]
    assert report["dropped"] == 0 and report["streams"]["front"]["duplicated_ticks"] == 0


def test_drifting_camera_keeps_every_frame_once(tmp_path: Path) -> None:
    """A 29.97 Hz camera with +-1 ms jitter on a 30 fps grid for 40 s: its phase against the
    grid moves by more than a period, and still every frame is kept once, none twice."""
    count = 1200
    indices, report = camera_only(tmp_path, jittered(count, 30 / 1.001), fps=30)
    assert indices == [i % 251 for i in range(count)]
    assert report["dropped"] == 0 and report["streams"]["front"]["duplicated_ticks"] == 0
