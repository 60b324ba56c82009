"""Camera frames compressed and written by a second process: the converter's other core.

Per frame, zstd compression and the shard writes cost more than everything else the reading
process does for it. ``FrameSink`` starts ``python -m uwm_training.data.framesink`` (numpy and
zstd only: it starts in ~0.15 s) and hands it each fitted frame through a ring of frame slots in
shared memory: the reader copies the frame into the next slot and sends a record naming it over
a pipe; the child compresses the slot, frees it with one byte on an acknowledgement pipe, and
appends the frame to its camera's shard files in the order received, so the files are byte for
byte those ``LocalFrames`` writes in-process. Records: ``<BBI`` (kind, camera, n); FRAME (n: the
slot), REPEAT appends the camera's previous frame again, REWIND takes every camera back to frame
n (a discarded episode); the end of input closes the shards. Pixels sent through the pipe
itself cost the reader as much as compressing them (measured: ~0.45 s of a 1.7 s conversion
writing 500 MB to the pipe; copying into the ring, ~0.05 s). Memory: the ring, ~8 MiB, whatever
the bag's length.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import numpy as np

from .errors import DataError
from .shards import FrameAppender, ShardFiles

FRAME, REPEAT, REWIND = 0, 1, 2
HEADER = struct.Struct("<BBI")
RING_BYTES = 8 << 20  # frame slots: as many as fit in this (8 to 4096 of them)
SEND_EVERY = 32  # records go to the child in batches of this many frames (a write each)

FrameJob = Callable[[], np.ndarray]  # -> (S, S, 3) uint8; the same job object = the same frame


class LocalFrames:
    """Every camera's frames compressed and appended in this process."""

    def __init__(self, cameras: Sequence[ShardFiles]) -> None:
        self.encoders = [c.encoder() for c in cameras]
        self.appenders = [FrameAppender(c, 0) for c in cameras]
        self._last: list[tuple[FrameJob, bytes] | None] = [None] * len(cameras)

    def add(self, cam: int, job: FrameJob) -> None:
        """Decode, encode and append a frame (a duplicated frame, the same job, encodes once)."""
        last = self._last[cam]
        if last is None or last[0] is not job:
            last = self._last[cam] = (job, self.encoders[cam](job()))
        self.appenders[cam].append(last[1])

    def rewind(self, position: int) -> None:
        for appender in self.appenders:
            appender.rewind(position)

    def finish(self) -> None:
        """No more frames: write the last shards."""
        for appender in self.appenders:
            appender.close()

    def close(self) -> None:
        """Everything is on disk (``finish`` wrote it)."""

    def abort(self) -> None:
        """Nothing runs beside this process."""


def _frame_shape(cameras: Sequence[ShardFiles]) -> tuple[int, ...]:
    """The frame shape, one for every camera (a dataset has one image size)."""
    shapes = {c.shape for c in cameras}
    if len(shapes) != 1:
        raise ValueError(f"cameras of different frame shapes: {sorted(shapes)}")
    return shapes.pop()


def _shared_memory(size: int) -> int:
    """A descriptor of ``size`` bytes that a child process can map (memfd, else a removed file)."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("uwm-frames")
    else:
        fd, name = tempfile.mkstemp(prefix="uwm-frames-")
        os.unlink(name)
    os.ftruncate(fd, size)
    return fd


class FrameSink:
    """``LocalFrames``' interface: frames are decoded here and compressed by a child process."""

    def __init__(self, cameras: Sequence[ShardFiles]) -> None:
        shape = _frame_shape(cameras)
        self.slots = max(8, min(4096, RING_BYTES // math.prod(shape)))
        size = self.slots * math.prod(shape)
        self._memory = _shared_memory(size)
        memory = mmap.mmap(self._memory, size)
        self._ring = np.frombuffer(memory, np.uint8).reshape(self.slots, *shape)
        acks, child_acks = os.pipe()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(self._memory, child_acks),
        )
        os.close(child_acks)  # the child holds the write end: its exit ends the pipe
        self._acks = acks
        assert self._proc.stdin is not None
        self._fd = self._proc.stdin.fileno()
        spec = {"cameras": [c.args() for c in cameras], "memory": self._memory,
                "slots": self.slots, "acks": child_acks}  # fmt: skip
        self._buf = bytearray(json.dumps(spec).encode() + b"\n")
        self._last: list[FrameJob | None] = [None] * len(cameras)
        self._sent = self._freed = 0  # frames sent to the child; frames it has taken

    def add(self, cam: int, job: FrameJob) -> None:
        if self._last[cam] is job:
            self._buf += HEADER.pack(REPEAT, cam, 0)
            return
        self._last[cam] = job
        frame = job()
        if self._sent == self._freed + self.slots:
            self._wait()
        slot = self._sent % self.slots
        self._ring[slot] = frame
        self._buf += HEADER.pack(FRAME, cam, slot)
        self._sent += 1
        if not self._sent % SEND_EVERY:
            self._flush()

    def rewind(self, position: int) -> None:
        self._buf += HEADER.pack(REWIND, 0, position)

    def finish(self) -> None:
        """No more frames: send what is left; the child writes the last shards and ends."""
        self._flush()
        assert self._proc.stdin is not None
        self._proc.stdin.close()

    def close(self) -> None:
        """Wait for the child to end (``finish`` first if not yet), and check that it closed
        the shards."""
        assert self._proc.stdin is not None
        if not self._proc.stdin.closed:
            self.finish()
        self._check(self._proc.wait())
        self._release()

    def abort(self) -> None:
        """Stop the child (the conversion failed): it must not write on into a removed part."""
        self._proc.kill()
        self._proc.wait()
        for pipe in (self._proc.stdin, self._proc.stderr):
            if pipe is not None:
                pipe.close()
        self._release()

    def _wait(self) -> None:
        """Every slot holds a frame the child has not taken: wait until it takes some."""
        self._flush()
        freed = os.read(self._acks, self.slots)
        if not freed:
            self._ended()
        self._freed += len(freed)

    def _flush(self) -> None:
        view = memoryview(self._buf)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except BrokenPipeError:
            self._ended()
        finally:
            view.release()
        self._buf = bytearray()

    def _ended(self) -> None:
        self._check(self._proc.wait())
        raise DataError("the frame writer process ended early")

    def _check(self, code: int) -> None:
        assert self._proc.stderr is not None
        if code:
            lines = self._proc.stderr.read().decode(errors="replace").strip().splitlines()
            last = lines[-1] if lines else "no message"
            raise DataError(f"the frame writer process failed (exit {code}): {last}")
        self._proc.stderr.close()

    def _release(self) -> None:
        os.close(self._acks)
        os.close(self._memory)


def serve(stream: IO[bytes], acks: int, ring: np.ndarray, cameras: list[ShardFiles]) -> None:
    """The child's loop: records from ``stream`` until it ends, then the shards are closed."""
    out = LocalFrames(cameras)
    encoders, appenders = out.encoders, out.appenders
    last: list[bytes] = [b""] * len(cameras)
    read, size, unpack, write = stream.read, HEADER.size, HEADER.unpack, os.write
    while header := read(size):
        kind, cam, n = unpack(header)
        if kind == FRAME:
            last[cam] = encoders[cam](ring[n])
            write(acks, b"\0")
            appenders[cam].append(last[cam])
        elif kind == REPEAT:
            appenders[cam].append(last[cam])
        else:
            out.rewind(n)
    out.finish()


def main() -> None:
    stream = sys.stdin.buffer
    spec = json.loads(stream.readline())
    cameras = [ShardFiles(Path(d), tuple(s), n, level) for d, s, n, level in spec["cameras"]]
    memory = mmap.mmap(spec["memory"], os.fstat(spec["memory"]).st_size)
    ring = np.frombuffer(memory, np.uint8).reshape(spec["slots"], *_frame_shape(cameras))
    serve(stream, spec["acks"], ring, cameras)


if __name__ == "__main__":
    main()
