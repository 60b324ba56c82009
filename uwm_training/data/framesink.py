"""Camera frames compressed and written by a second process: the converter's other core.

Per frame, zstd compression costs more than everything else the reading process does for it.
``FrameSink`` starts ``python -m uwm_training.data.framesink`` (numpy and zstd only: it starts in
~0.15 s) and streams it each fitted frame over a pipe; the process compresses each and appends
it to its camera's shard files in the order received, so the files are byte for byte those
``LocalFrames`` writes in-process. Records: a header ``<BBI`` (kind, camera, n), then for FRAME
the n bytes of the frame's pixels; REPEAT appends the camera's previous frame again; REWIND
takes every camera back to frame n (a discarded episode); the end of input closes the shards.
Memory stays bounded: the pipe holds ~1 MiB and a full pipe makes the reader wait.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import numpy as np

from .errors import DataError
from .shards import FrameAppender, ShardFiles

FRAME, REPEAT, REWIND = 0, 1, 2
HEADER = struct.Struct("<BBI")
FLUSH_BYTES = 1 << 20  # the reading side writes to the pipe in blocks of about this size
_SET_PIPE_SIZE = 1031  # fcntl F_SETPIPE_SZ (Linux)

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

    def close(self) -> None:
        for appender in self.appenders:
            appender.close()

    def abort(self) -> None:
        """Nothing runs beside this process."""


class FrameSink:
    """``LocalFrames``' interface: frames are decoded here and compressed by a child process."""

    def __init__(self, cameras: Sequence[ShardFiles]) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self._proc.stdin is not None
        self._fd = self._proc.stdin.fileno()
        try:  # a bigger pipe: the child starts while the first frames are sent
            import fcntl

            fcntl.fcntl(self._fd, _SET_PIPE_SIZE, FLUSH_BYTES)
        except (ImportError, OSError):
            pass
        self._buf = bytearray(json.dumps([c.args() for c in cameras]).encode() + b"\n")
        self._last: list[FrameJob | None] = [None] * len(cameras)

    def add(self, cam: int, job: FrameJob) -> None:
        if self._last[cam] is job:
            self._buf += HEADER.pack(REPEAT, cam, 0)
        else:
            self._last[cam] = job
            frame = np.ascontiguousarray(job(), np.uint8)
            self._buf += HEADER.pack(FRAME, cam, frame.nbytes)
            self._buf += frame.data.cast("B")
        if len(self._buf) >= FLUSH_BYTES:
            self._flush()

    def rewind(self, position: int) -> None:
        self._buf += HEADER.pack(REWIND, 0, position)

    def close(self) -> None:
        """Send what is left, let the child close the shards, and check that it did."""
        self._flush()
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        self._check(self._proc.wait())

    def abort(self) -> None:
        """Stop the child (the conversion failed): it must not write on into a removed part."""
        self._proc.kill()
        self._proc.wait()
        for pipe in (self._proc.stdin, self._proc.stderr):
            if pipe is not None:
                pipe.close()

    def _flush(self) -> None:
        view = memoryview(self._buf)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except BrokenPipeError:
            self._check(self._proc.wait())
            raise DataError("the frame writer process ended early") from None
        finally:
            view.release()
        self._buf = bytearray()

    def _check(self, code: int) -> None:
        assert self._proc.stderr is not None
        if code:
            lines = self._proc.stderr.read().decode(errors="replace").strip().splitlines()
            last = lines[-1] if lines else "no message"
            raise DataError(f"the frame writer process failed (exit {code}): {last}")
        self._proc.stderr.close()


def serve(stream: IO[bytes], cameras: list[ShardFiles]) -> None:
    """The child's loop: records from ``stream`` until it ends, then the shards are closed."""
    out = LocalFrames(cameras)
    encoders, appenders = out.encoders, out.appenders
    last: list[bytes] = [b""] * len(cameras)
    read, size, unpack = stream.read, HEADER.size, HEADER.unpack
    while header := read(size):
        kind, cam, n = unpack(header)
        if kind == FRAME:
            last[cam] = encoders[cam](np.frombuffer(read(n), np.uint8))
            appenders[cam].append(last[cam])
        elif kind == REPEAT:
            appenders[cam].append(last[cam])
        else:
            out.rewind(n)
    out.close()


def main() -> None:
    stream = sys.stdin.buffer
    spec = json.loads(stream.readline())
    serve(stream, [ShardFiles(Path(d), tuple(s), n, level) for d, s, n, level in spec])


if __name__ == "__main__":
    main()
