"""Resolved grid ticks -> frames -> episodes.

A tick becomes a frame when every required stream (cameras, joints, command) is within its
skew tolerance. Ticks before every stream has started are lead-in and skipped. A run of
out-of-tolerance ticks is dropped (reported), or splits the episode when it lasts at least
``episodes.split_gap``. Episode markers cut episodes; std_msgs/Bool ``false`` pauses recording.
Derived actions (next positions, deltas) need the next tick's joints, so each frame waits for
its successor and the last frame of an episode is dropped.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from .config import ConvertConfig
from .resample import NONE, OK, STALE, Resolved
from .writer import PartWriter

JOINTS, COMMAND = "joints", "command"


class EpisodeBuilder:
    """Consumes ``Timeline.ready()`` ticks and marker events; writes frames to a PartWriter."""

    def __init__(self, cfg: ConvertConfig, writer: PartWriter, has_command: bool) -> None:
        self.cfg, self.writer = cfg, writer
        self.required = list(cfg.cameras) + ([JOINTS] if cfg.joints else [])
        self.required += [COMMAND] if has_command else []
        self.derived = (
            cfg.action.source if cfg.action.source in ("next_positions", "deltas") else ""
        )
        self.has_action = has_command or bool(self.derived)
        self.split_ticks = (
            None if cfg.episodes.split_gap is None else cfg.episodes.split_gap * cfg.fps
        )
        self.markers: deque[tuple[int, bool, str | None]] = deque()
        self.recording, self.task = True, ""
        self.invalid = 0  # current run of out-of-tolerance ticks
        self.pending: tuple[int, dict[str, Any], dict[str, np.ndarray]] | None = (
            None  # derived actions
        )
        self.counts = dict(
            ticks=0, dropped=0, splits=0, marker_cuts=0, short_episodes=0, short_frames=0
        )
        self.streams = {s: dict(stale=0, duplicated=0, max_skew_ns=0) for s in self.required}
        self._last_seq = {s: -1 for s in self.required}

    def marker(self, time_ns: int, start: bool, task: str | None) -> None:
        self.markers.append((time_ns, start, task))

    # ----- ticks --------------------------------------------------------------------------------
    def add(self, k: int, t_ns: int, values: dict[str, Resolved]) -> None:
        while self.markers and self.markers[0][0] <= t_ns:
            _, start, task = self.markers.popleft()
            self.close_episode()
            self.counts["marker_cuts"] += 1
            self.recording = start
            self.task = self.task if task is None else task
        if not self.recording or any(values[s].status == NONE for s in self.required):
            self.invalid = 0  # paused, or lead-in before every stream has started
            return
        self._count(values)
        stale = sum(values[s].status == STALE for s in self.required)
        if stale < len(self.required):  # every stream stale: the recording paused, nothing lost
            self.counts["ticks"] += 1
        if stale:
            self.invalid += 1
            return
        if self.invalid:
            if self.split_ticks is not None and self.invalid >= self.split_ticks:
                self.close_episode()
                self.counts["splits"] += 1
            else:
                self.counts["dropped"] += self.invalid
            self.invalid = 0
        self._frame(k, values)

    def _count(self, values: dict[str, Resolved]) -> None:
        for s in self.required:
            v, stats = values[s], self.streams[s]
            if v.status == STALE:
                stats["stale"] += 1
            elif v.status == OK:
                stats["max_skew_ns"] = max(stats["max_skew_ns"], v.skew_ns)
                stats["duplicated"] += v.seq == self._last_seq[s]
                self._last_seq[s] = v.seq

    def _frame(self, k: int, values: dict[str, Resolved]) -> None:
        images = {cam: values[cam].payload for cam in self.cfg.cameras}
        lowdim: dict[str, np.ndarray] = {}
        joints = values[JOINTS].payload.values() if self.cfg.joints else None
        if joints is not None:
            lowdim["joint_pos"] = joints[0]
            if self.cfg.joints and self.cfg.joints.velocity:
                lowdim["joint_vel"] = joints[1]
            if self.cfg.joints and self.cfg.joints.effort:
                lowdim["joint_effort"] = joints[-1]
        if COMMAND in self.required:
            lowdim["action"] = values[COMMAND].payload
        if not self.derived:
            self.writer.add_frame(images, lowdim)
            return
        pending, self.pending = self.pending, (k, images, lowdim)
        if pending is None:
            return
        if pending[0] != k - 1:  # the frame after it was dropped: no next position
            self.counts["dropped"] += 1
            return
        q, q_next = pending[2]["joint_pos"], lowdim["joint_pos"]
        action = q_next if self.derived == "next_positions" else q_next - q
        self.writer.add_frame(pending[1], {**pending[2], "action": action})

    # ----- episodes -----------------------------------------------------------------------------
    def close_episode(self) -> None:
        """End the current episode; shorter than ``min_frames`` -> discarded."""
        self.pending = None
        frames = self.writer.episode_frames
        if frames >= self.cfg.episodes.min_frames:
            self.writer.end_episode(self.has_action, self.cfg.joints is not None, self.task)
        elif frames:
            self.counts["short_episodes"] += 1
            self.counts["short_frames"] += frames
            self.writer.discard_episode()

    def _tolerance_ns(self, stream: str) -> int:
        cfg = self.cfg
        if stream == JOINTS and cfg.joints:
            return cfg.skew_ns(cfg.joints.max_skew)
        if stream == COMMAND:
            return cfg.skew_ns(cfg.action.max_skew)
        return cfg.skew_ns(cfg.cameras[stream].max_skew)

    def report(self) -> dict[str, Any]:
        streams = {
            s: {
                "stale_ticks": v["stale"],
                "duplicated_ticks": v["duplicated"],
                "max_skew_ms": round(v["max_skew_ns"] / 1e6, 3),
                "tolerance_ms": round(self._tolerance_ns(s) / 1e6, 3),
            }
            for s, v in self.streams.items()
        }
        grid = {"fps": self.cfg.fps, "min_frames": self.cfg.episodes.min_frames}
        return {"streams": streams, **grid, **self.counts}
