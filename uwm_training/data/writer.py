"""Write one source's episodes into a part store while it is being read.

Frames arrive one at a time; images are decoded, fitted, compressed and appended to shards by a
background thread (OpenCV, zstd and file I/O release the GIL, so reading the bag and writing
frames overlap on two cores), low-dim rows are flushed to Zarr in blocks, and normalisation
stats are gathered per finished episode. Memory: one shard and one block of rows being filled,
one episode's rows at its end, a bounded queue of image jobs. A part is itself a small dataset;
``store.append_part`` moves it into place.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .stats import RunningStats
from .store import ROWS_PER_CHUNK, FrameAppender, Frames, create_store

ImageJob = Callable[[], np.ndarray]  # -> (S, S, 3) uint8; the same job object = the same frame
_QUEUE_FRAMES = 32


class PartWriter:
    """Episodes of one source -> a part store at ``root``."""

    def __init__(self, root: Path, spec: dict[str, Any], converter: dict[str, Any]) -> None:
        self.spec = spec
        self.group = create_store(root, spec, converter)
        self.frames = {
            cam: Frames(self.group[f"data/{cam}"], root / "data" / cam) for cam in spec["cameras"]
        }
        self.keys = list(spec["lowdim"])
        self.n = 0  # frames written, current episode included
        self.tasks = [""]
        self._episodes: list[tuple[int, bool, bool, int]] = []  # end, action, state, task
        self._start = 0  # first frame of the current episode
        self._rows: dict[str, list[np.ndarray]] = {k: [] for k in self.keys}
        self._flushed = 0  # rows already in the Zarr arrays
        self._stats = {k: RunningStats(len(v)) for k, v in spec["lowdim"].items()}
        self._zeros = {k: np.zeros(len(v), np.float32) for k, v in spec["lowdim"].items()}
        # frames ({camera: job}), rewinds (a position), None stops: in order, on one thread
        self._jobs: queue.Queue[dict[str, ImageJob] | int | None] = queue.Queue(_QUEUE_FRAMES)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write_images, daemon=True)
        self._thread.start()

    # ----- frames and episodes ------------------------------------------------------------------
    def add_frame(self, images: dict[str, ImageJob], lowdim: dict[str, np.ndarray]) -> None:
        """Append one frame to the current episode: every camera; low-dim keys the frame lacks
        (the action of an action-free episode) are stored as zeros."""
        self._raise_thread_error()
        if images:
            self._jobs.put(images)
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
            self._jobs.put(self._start)
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
            parts.append(np.asarray(self.group[f"data/{key}"][self._start : self._flushed]))
        buffered = self._rows[key][max(0, self._start - self._flushed) :]
        if buffered:
            parts.append(np.stack(buffered))
        return np.concatenate(parts)

    def _flush(self) -> None:
        for key in self.keys:
            array: Any = self.group[f"data/{key}"]
            rows = self._rows[key]
            if rows:
                end = self._flushed + len(rows)
                if array.shape[0] < end:
                    array.resize((end, array.shape[1]))
                array[self._flushed : end] = np.stack(rows)
        self._flushed = self.n
        self._rows = {k: [] for k in self.keys}

    # ----- image thread -------------------------------------------------------------------------
    def _write_images(self) -> None:
        appenders = {cam: FrameAppender(frames, 0) for cam, frames in self.frames.items()}
        last: dict[str, tuple[ImageJob, bytes]] = {}
        while (item := self._jobs.get()) is not None:
            if self._error is not None:
                continue  # keep draining so the reader never blocks on a full queue
            try:
                if isinstance(item, int):
                    for appender in appenders.values():
                        appender.rewind(item)
                    continue
                for cam, job in item.items():
                    if cam in last and last[cam][0] is job:
                        data = last[cam][1]  # a duplicated frame: encode once
                    else:
                        data = self.frames[cam].encode(job())
                        last[cam] = (job, data)
                    appenders[cam].append(data)
            except BaseException as e:  # re-raised in the reading thread
                self._error = e
        try:
            if self._error is None:
                for appender in appenders.values():
                    appender.close()
        except BaseException as e:
            self._error = e

    def _raise_thread_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _stop_thread(self) -> None:
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join()

    # ----- finish -------------------------------------------------------------------------------
    def close(self, report: dict[str, Any], source: dict[str, Any]) -> None:
        """Finish the part: flush rows and frames, write metadata (report, source record)."""
        self.discard_episode()  # an episode still open here was never ended: not kept
        self._stop_thread()
        self._raise_thread_error()
        self._flush()
        for key in self.keys:
            array: Any = self.group[f"data/{key}"]
            array.resize((self.n, array.shape[1]))
        for cam, frames in self.frames.items():
            self.group[f"data/{cam}"].resize((self.n, *frames.shape))
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
            array = self.group[f"meta/{key}"]
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

    def abort(self) -> None:
        """Stop the image thread after a failure (the caller removes the part)."""
        self._error = self._error or RuntimeError("aborted")
        self._stop_thread()
