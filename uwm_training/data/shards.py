"""Image shard files in Zarr v3's sharding layout, read and written as plain files.

A shard holds ``per_shard`` one-frame zstd chunks back to back, then an index of
``per_shard`` little-endian uint64 (offset, size) pairs (absent chunks: ``ABSENT`` twice), at
``<dir>/c.<shard>.0.0.0`` (the default chunk key encoding with "." separators). Zarr's own
per-chunk path costs ~0.6 ms a frame (the compression itself ~0.04 ms). This module imports
no zarr, so the frame-writing process (``framesink``) starts in a fraction of a second.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .compress import zstd

ABSENT = 2**64 - 1  # shard index entry of a chunk that is not there
_IOV_MAX = 1024  # buffers one writev takes (Linux, macOS)


class ShardFiles:
    """One image array's shard files: ``shape`` (S, S, 3) frames, zstd ``level``."""

    def __init__(self, directory: Path, shape: tuple[int, ...], per_shard: int, level: int):
        self.dir, self.shape, self.per_shard, self.level = Path(directory), shape, per_shard, level

    def args(self) -> tuple[str, tuple[int, ...], int, int]:
        """What rebuilds this description in another process."""
        return str(self.dir), self.shape, self.per_shard, self.level

    def path(self, shard: int) -> Path:
        return self.dir / f"c.{shard}.0.0.0"

    def encoder(self) -> Callable[[np.ndarray], bytes]:
        """frame -> chunk bytes. Unlike numcodecs' encode (same bytes), it keeps its zstd context:
        a fresh one per frame costs ~40% more."""
        compressor = zstd.ZstdCompressor(level=self.level)
        end = zstd.ZstdCompressor.FLUSH_FRAME
        return lambda frame: compressor.compress(np.ascontiguousarray(frame, np.uint8), end)

    def shard_chunks(self, shard: int) -> list[bytes]:
        """The encoded frames of a shard, in order, up to its last present one."""
        data = self.path(shard).read_bytes()
        index = np.frombuffer(data[-16 * self.per_shard :], "<u8").reshape(-1, 2).tolist()
        chunks = [data[o : o + n] for o, n in index if o != ABSENT]
        return chunks

    def write_shard(self, shard: int, chunks: list[bytes]) -> None:
        index = np.full((self.per_shard, 2), ABSENT, "<u8")
        sizes = [len(c) for c in chunks]
        index[: len(chunks), 0] = np.cumsum([0, *sizes[:-1]])
        index[: len(chunks), 1] = sizes
        path = self.path(shard)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb", buffering=0) as f:
            _write_all(f.fileno(), [*chunks, index.tobytes()])
        # A new file, renamed over the old one: hard-linked shards of the dataset being
        # appended to (see ``store.staged``) are replaced, never modified.
        os.replace(tmp, path)


def _write_all(fd: int, buffers: list[bytes]) -> None:
    """Gathered writes (no joined copy; a write per buffer cost ~40% more CPU), continued where
    the kernel took less."""
    views = [memoryview(b) for b in buffers]
    while views:
        done = os.writev(fd, views[:_IOV_MAX])
        while views and done >= len(views[0]):
            done -= len(views.pop(0))
        if views:
            views[0] = views[0][done:]


class FrameAppender:
    """Appends encoded frames from frame ``start`` on, writing each shard once it is full."""

    def __init__(self, frames: ShardFiles, start: int) -> None:
        self.frames = frames
        self._seek(start)
        self._written = self.shard  # shards [0, _written) may exist on disk

    def _seek(self, position: int) -> None:
        self.shard, k = divmod(position, self.frames.per_shard)
        self.buffer = self.frames.shard_chunks(self.shard)[:k] if k else []

    @property
    def position(self) -> int:
        return self.shard * self.frames.per_shard + len(self.buffer)

    def append(self, chunk: bytes) -> None:
        self.buffer.append(chunk)
        if len(self.buffer) == self.frames.per_shard:
            self.frames.write_shard(self.shard, self.buffer)
            self.shard, self.buffer = self.shard + 1, []
            self._written = max(self._written, self.shard)

    def rewind(self, position: int) -> None:
        """Forget frames from ``position`` on (a discarded episode)."""
        if position >= self.shard * self.frames.per_shard:
            del self.buffer[position - self.shard * self.frames.per_shard :]
        else:
            self._seek(position)

    def close(self) -> None:
        """Write the partial last shard; remove shards left beyond the end by rewinds."""
        end = self.shard + 1 if self.buffer else self.shard
        if self.buffer:
            self.frames.write_shard(self.shard, self.buffer)
        for shard in range(end, self._written + 1):
            self.frames.path(shard).unlink(missing_ok=True)
