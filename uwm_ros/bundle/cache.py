"""The per-user cache (verified-file records, TensorRT plans) and atomic file writes.

Never inside a bundle: a bundle may be read-only, shared between machines, or copied to a robot
with another GPU, and a file planted in it must never be taken for something this code wrote.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

ENV = "UWM_CACHE_DIR"


def cache_dir() -> Path:
    """``$UWM_CACHE_DIR``, else ``$XDG_CACHE_HOME/uwm_ros``, else ``~/.cache/uwm_ros``."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "uwm_ros"


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file and a rename: readers (and a crash) see
    the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
