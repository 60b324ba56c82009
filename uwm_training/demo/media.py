"""What the demo shows of one closed-loop episode: the predicted futures and the action chunks.

``predicted_futures.mp4``, one row per control period::

    +-----------+----------------------+-----------------------+
    | camera    | predicted at t for   | camera at t + dt      |
    | now (t)   | t + dt (model)       | (what happened)       |
    +-----------+----------------------+-----------------------+

``action_chunks.png``: per joint, the measured position (white) and every chunk the policy sent
(one colour per chunk) against time. Both drawn with numpy/OpenCV.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from uwm_ros.sim.closed_loop import EpisodeLog

from ..data.preview import FONT, PALETTE
from ..data.video import VideoWriter

TILE = 192
PANEL_HEIGHT = 150


def _tile(rgb: np.ndarray | None, label: str) -> np.ndarray:
    tile: np.ndarray = np.full((TILE, TILE, 3), 40, np.uint8)
    if rgb is not None:
        tile = cv2.resize(rgb, (TILE, TILE), interpolation=cv2.INTER_NEAREST)
    cv2.putText(tile, label, (4, 14), FONT, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def _nearest(
    frames: list[tuple[float, np.ndarray]], t: float, tolerance: float
) -> np.ndarray | None:
    if not frames:
        return None
    stamps = np.array([s for s, _ in frames])
    i = int(np.argmin(np.abs(stamps - t)))
    return frames[i][1] if abs(stamps[i] - t) <= tolerance else None


def write_futures_video(log: EpisodeLog, out: Path, fps: float) -> int:
    """The episode with, at every frame, the newest prediction and what really happened then;
    returns the number of frames written (0 when the episode has no frames)."""
    dt = 1.0 / fps
    with VideoWriter(out, fps, 3 * TILE, TILE) as writer:
        for t, rgb in log.frames:
            made = [p for p in log.predictions if p[0] <= t + 1e-6]
            predicted = actual = None
            ahead = 0.0
            if made:
                _, stamps, frames = made[-1]
                predicted, ahead = frames[-1], stamps[-1] - t
                actual = _nearest(log.frames, stamps[-1], dt / 2)
            row = [
                _tile(rgb, f"camera t={t - log.start:.1f}s"),
                _tile(predicted, f"predicted t+{ahead:.1f}s" if made else "no prediction yet"),
                _tile(actual, f"actual t+{ahead:.1f}s" if actual is not None else "future"),
            ]
            writer.write(np.hstack(row))
        return writer.frames


def write_action_plot(log: EpisodeLog, names: list[str], out: Path, width: int = 720) -> None:
    """One panel per joint: measured positions (white) and each chunk's actions (colours)."""
    canvas = np.full((PANEL_HEIGHT * len(names), width, 3), 24, np.uint8)
    t0 = log.start
    t1 = max([t for t, _ in log.joints] + [float(ts[-1]) for ts, _ in log.chunks] + [t0 + 1.0])

    def x(t: Any) -> np.ndarray:
        return 6 + (np.asarray(t) - t0) / (t1 - t0) * (width - 12)

    measured = np.array([q for _, q in log.joints]).reshape(-1, len(names))
    for j, name in enumerate(names):
        top = j * PANEL_HEIGHT
        values = [measured[:, j]] + [a[:, j] for _, a in log.chunks]
        lo, hi = min(v.min() for v in values if len(v)), max(v.max() for v in values if len(v))

        def y(v: np.ndarray, top: int = top, lo: float = lo, hi: float = hi) -> np.ndarray:
            return top + PANEL_HEIGHT - 8 - (v - lo) / max(hi - lo, 1e-6) * (PANEL_HEIGHT - 28)

        for k, (times, actions) in enumerate(log.chunks):
            pts = np.stack([x(times), y(actions[:, j])], 1).round().astype(np.int32)
            cv2.polylines(canvas, [pts], False, PALETTE[k % len(PALETTE)], 1, cv2.LINE_AA)
        if len(measured):
            stamps = np.array([t for t, _ in log.joints])
            pts = np.stack([x(stamps), y(measured[:, j])], 1).round().astype(np.int32)
            cv2.polylines(canvas, [pts], False, (255, 255, 255), 2, cv2.LINE_AA)
        cv2.line(canvas, (0, top), (width, top), (80, 80, 80), 1)
        label = f"{name} [{lo:.2f}, {hi:.2f}] rad: measured (white), action chunks (colours)"
        cv2.putText(canvas, label, (6, top + 14), FONT, 0.4, (220, 220, 220), 1, cv2.LINE_AA)
    cv2.putText(canvas, f"{t1 - t0:.1f} s", (width - 50, canvas.shape[0] - 6), FONT, 0.4,
                (220, 220, 220), 1, cv2.LINE_AA)  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), canvas[..., ::-1])


def write_learning_curve(
    points: list[dict[str, float]], out: Path, reference: dict[str, float], size: int = 480
) -> None:
    """Closed-loop success (dots, 95 % interval bars) against training minutes, with the
    ``reference`` rates (e.g. expert, random) as horizontal lines."""
    height, width, pad = size, int(size * 1.5), 44
    canvas = np.full((height, width, 3), 24, np.uint8)
    span = max([p["train_minutes"] for p in points] + [1e-6])

    def xy(minutes: float, rate: float) -> tuple[int, int]:
        return (round(pad + minutes / span * (width - 2 * pad)),
                round(height - pad - rate * (height - 2 * pad)))  # fmt: skip

    for rate in (0.0, 0.5, 0.8, 1.0):
        y = xy(0, rate)[1]
        cv2.line(canvas, (pad, y), (width - pad, y), (60, 60, 60), 1)
        cv2.putText(canvas, f"{rate:.0%}", (4, y + 4), FONT, 0.4, (180, 180, 180), 1, cv2.LINE_AA)
    for k, (name, rate) in enumerate(reference.items()):
        y, colour = xy(0, rate)[1], PALETTE[(k + 2) % len(PALETTE)]
        cv2.line(canvas, (pad, y), (width - pad, y), colour, 1, cv2.LINE_AA)
        cv2.putText(canvas, name, (width - pad - 60, y - 4), FONT, 0.4, colour, 1, cv2.LINE_AA)
    line = [xy(p["train_minutes"], p["success"]) for p in points]
    for p, centre in zip(points, line):
        low, high = (
            xy(p["train_minutes"], p["success_low"]),
            xy(p["train_minutes"], p["success_high"]),
        )
        cv2.line(canvas, low, high, PALETTE[0], 1, cv2.LINE_AA)
        cv2.circle(canvas, centre, 4, PALETTE[0], -1, cv2.LINE_AA)
    if len(line) > 1:
        cv2.polylines(canvas, [np.array(line, np.int32)], False, PALETTE[0], 2, cv2.LINE_AA)
    cv2.putText(canvas, "closed-loop success (95 % CI) vs training minutes", (pad, 20), FONT, 0.5,
                (230, 230, 230), 1, cv2.LINE_AA)  # fmt: skip
    cv2.putText(canvas, f"{span:.1f} min", (width - pad - 40, height - 12), FONT, 0.4,
                (180, 180, 180), 1, cv2.LINE_AA)  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), canvas[..., ::-1])
