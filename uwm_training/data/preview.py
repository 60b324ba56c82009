"""``uwm dataset preview``: an episode as a video a person can check the data with.

::

    +-----------+-----------+
    |  front    |  wrist    |    cameras side by side (nearest-neighbour upscaled)
    +-----------+-----------+
    | joint_pos ~~~~~|~~~~~ |    one strip per low-dim key, one line per dimension,
    | action    ~~~~~|~~~~~ |    each scaled to its own range; the cursor marks the frame
    +-----------------------+

Drawn with numpy/OpenCV (no matplotlib); written as .mp4 or .gif by ``video.VideoWriter``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .store import Store
from .video import VideoWriter

# Distinct line colours (RGB), cycled per dimension.
PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
]  # fmt: skip
STRIP_HEIGHT = 90
FONT = cv2.FONT_HERSHEY_SIMPLEX


def strip_plot(series: dict[str, tuple[list[str], np.ndarray]], width: int) -> np.ndarray:
    """Static background: one strip per key with its (T, d) values drawn as polylines."""
    canvas = np.full((STRIP_HEIGHT * len(series), width, 3), 24, np.uint8)
    for row, (key, (names, values)) in enumerate(series.items()):
        top = row * STRIP_HEIGHT
        cv2.line(canvas, (0, top), (width, top), (80, 80, 80), 1)
        t = np.linspace(4, width - 5, len(values)) if len(values) > 1 else np.full(1, width / 2)
        lo, hi = values.min(0), values.max(0)
        scaled = (values - lo) / np.where(hi > lo, hi - lo, 1.0)  # each dimension fills the strip
        ys = top + 18 + (1 - scaled) * (STRIP_HEIGHT - 24)
        for d in range(values.shape[1]):
            color = PALETTE[d % len(PALETTE)]
            points = np.stack([t, ys[:, d]], 1).round().astype(np.int32)
            cv2.polylines(canvas, [points], False, color, 1, cv2.LINE_AA)
        cv2.putText(canvas, key, (4, top + 12), FONT, 0.4, (220, 220, 220), 1, cv2.LINE_AA)
        x = 8 + cv2.getTextSize(key, FONT, 0.4, 1)[0][0]
        for d, name in enumerate(names):
            color = PALETTE[d % len(PALETTE)]
            cv2.putText(canvas, name, (x, top + 12), FONT, 0.35, color, 1, cv2.LINE_AA)
            x += 6 + cv2.getTextSize(name, FONT, 0.35, 1)[0][0]
    return canvas


def write_preview(
    dataset: str | Path,
    out: str | Path,
    episode: int = 0,
    max_frames: int | None = None,
    height: int = 192,
) -> int:
    """Render ``episode`` to ``out`` (.mp4 or .gif); returns the number of frames written."""
    store = Store(dataset)
    start, end = store.episode_range(episode)
    if max_frames is not None:
        end = min(end, start + max_frames)
    cameras = {cam: store.frames(cam) for cam in store.cameras}
    series = {
        key: (names, store.lowdim(key)[start:end])
        for key, names in store.spec["lowdim"].items()
        if key != "action" or store.has_action[episode]
    }
    width = height * len(cameras)
    background = strip_plot(series, width) if series else np.zeros((0, width, 3), np.uint8)
    xs = np.linspace(4, width - 5, end - start).round().astype(int)
    with VideoWriter(Path(out), store.spec["fps"], width, height + len(background)) as writer:
        for i in range(start, end):
            tiles = [
                cv2.resize(files.read(i), (height, height), interpolation=cv2.INTER_NEAREST)
                for files in cameras.values()
            ]
            for c, name in enumerate(cameras):
                cv2.putText(tiles[c], name, (4, 14), FONT, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
            plot = background.copy()
            if len(plot):
                cv2.line(plot, (int(xs[i - start]), 0), (int(xs[i - start]), len(plot)), (255,) * 3)
            writer.write(np.vstack([np.hstack(tiles), plot]))
        return writer.frames
