"""Write one source's episodes into a part store while it is being read.

Frames arrive one at a time; each camera's image is decoded and fitted on the reading thread,
then compressed and appended to a shard: in this process (``framesink.LocalFrames``), or for a
big source in a second one (``framesink.FrameSink``, handed over through shared memory:
compressing and writing shards are the costliest steps, and a thread measured slower, its GIL
hand-offs costing more than the overlap it gave). Low-dim
rows are flushed to Zarr in blocks, and normalisation stats are gathered per finished episode.
Memory: one shard and one block of rows being filled, one episode's rows at its end. A part is
itself a small dataset; ``store.append_part`` moves it into place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .framesink import FrameJob, FrameSink, LocalFrames
from .stats import RunningStats
from .store import META_DTYPES, ROWS_PER_CHUNK, Frames, create_store


class PartWriter:
    """Episodes of one source -> a part store at ``root``."""

    def __init__(self, root: Path, spec: dict[str, Any], converter: dict[str, Any]) -> None:
        self.spec = spec
        self.group = create_store(root, spec, converter)
        self.keys = list(spec["lowdim"])
        # Array handles, opened once (each opening reads metadata through zarr's thread).
        names = [f"data/{k}" for k in [*spec["cameras"], *self.keys]] + [
            f"meta/{k}" for k in META_DTYPES
        ]
        self._arrays: dict[str, Any] = {name: self.group[name] for name in names}
        self.frames = {
            cam: Frames(self._arrays[f"data/{cam}"], root / "data" / cam) for cam in spec["cameras"]
        }
        self.n = 0  # frames written, current episode included
        self.tasks = [""]
        self._episodes: list[tuple[int, bool, bool, int]] = []  # end, action, state, task
        self._start = 0  # first frame of the current episode
        self._rows: dict[str, list[np.ndarray]] = {k: [] for k in self.keys}
        self._flushed = 0  # rows already in the Zarr arrays
        self._stats = {k: RunningStats(len(v)) for k, v in spec["lowdim"].items()}
        self._zeros = {k: np.zeros(len(v), np.float32) for k, v in spec["lowdim"].items()}
        self._outputs: LocalFrames | FrameSink = LocalFrames(list(self.frames.values()))
        self._cam_index = {cam: i for i, cam in enumerate(self.frames)}

    def offload_frames(self) -> None:
        """Compress and write frames in a second process (``framesink``), from the first on."""
        assert self.n == 0, "offload_frames comes before the first frame"
        self._outputs = FrameSink(list(self.frames.values()))

    # ----- frames and episodes ------------------------------------------------------------------
    def add_frame(self, images: dict[str, FrameJob], lowdim: dict[str, np.ndarray]) -> None:
        """Append one frame to the current episode: every camera; low-dim keys the frame lacks
        (the action of an action-free episode) are stored as zeros."""
        for cam, job in images.items():
            self._outputs.add(self._cam_index[cam], job)
        for key in self.keys:
            self._rows[key].append(lowdim[key] if key in lowdim else self._zeros[key])
        self.n += 1
        if self.n - self._flushed >= ROWS_PER_CHUNK:
            self._flush()

    def end_episode(self, has_action: bool, has_state: bool, task: str = "") -> None:
        """Close the current episode (no-op if it has no frames)."""
        if self.n == self._start:
            return
        for key in self.keys:
            used = has_action if key == "action" else has_state
            if used:
                self._stats[key].update(self._episode_rows(key))
        if task not in self.tasks:
            self.tasks.append(task)
        self._episodes.append((self.n, has_action, has_state, self.tasks.index(task)))
        self._start = self.n

    def discard_episode(self) -> None:
        """Drop the current episode's frames."""
        if self.n > self._start:
            self._outputs.rewind(self._start)
        if self._start < self._flushed:
            self._flushed = self._start
            self._rows = {k: [] for k in self.keys}
        else:
            keep = self._start - self._flushed
            self._rows = {k: v[:keep] for k, v in self._rows.items()}
        self.n = self._start

    @property
    def episode_frames(self) -> int:
        return self.n - self._start

    @property
    def num_episodes(self) -> int:
        return len(self._episodes)

    def _episode_rows(self, key: str) -> np.ndarray:
        parts = []
        if self._start < self._flushed:
            parts.append(np.asarray(self._arrays[f"data/{key}"][self._start : self._flushed]))
        buffered = self._rows[key][max(0, self._start - self._flushed) :]
        if buffered:
            parts.append(np.stack(buffered))
        return np.concatenate(parts)

    def _flush(self) -> None:
        for key in self.keys:
            array = self._arrays[f"data/{key}"]
            rows = self._rows[key]
            if rows:
                end = self._flushed + len(rows)
                if array.shape[0] < end:
                    array.resize((end, array.shape[1]))
                array[self._flushed : end] = np.stack(rows)
        self._flushed = self.n
        self._rows = {k: [] for k in self.keys}

    # ----- finish -------------------------------------------------------------------------------
    def abort(self) -> None:
        """The conversion failed: stop writing (the caller removes the part)."""
        self._outputs.abort()

    def close(self, report: dict[str, Any], source: dict[str, Any]) -> None:
        """Finish the part: flush rows and frames, write metadata (report, source record)."""
        self.discard_episode()  # an episode still open here was never ended: not kept
        self._outputs.finish()  # a frame writer process drains its frames while ...
        self._flush()  # ... the rows and metadata are written here
        for key in self.keys:
            array = self._arrays[f"data/{key}"]
            if array.shape[0] != self.n:  # (discarded rows had been flushed)
                array.resize((self.n, array.shape[1]))
        for cam, frames in self.frames.items():
            self._arrays[f"data/{cam}"].resize((self.n, *frames.shape))
        table = np.array(self._episodes, np.int64).reshape(-1, 4)  # end, action, state, task
        count = len(table)
        columns = {
            "episode_ends": table[:, 0],
            "episode_has_action": table[:, 1].astype(bool),
            "episode_has_state": table[:, 2].astype(bool),
            "episode_task": table[:, 3].astype(np.int32),
            "episode_source": np.zeros(count, np.int32),
        }
        for key, values in columns.items():
            array = self._arrays[f"meta/{key}"]
            array.resize((count,))
            array[:] = values
        self.group.update_attributes(
            {
                "stats": {k: s.to_dict() for k, s in self._stats.items()},
                "sources": [source],
                "reports": [report],
                "tasks": self.tasks,
            }
        )
        self._outputs.close()
