"""Atomic directory replacement, shared by the dataset writer, checkpoints and bundle export."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path


def replace_dir(new: Path, dest: Path) -> None:
    """Move the finished directory ``new`` to ``dest``; an existing ``dest`` is swapped out by
    two renames and then deleted, so readers see the old or the new tree, never a mix."""
    if not dest.exists():
        os.rename(new, dest)
        return
    old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(dest, old)
    os.rename(new, dest)
    shutil.rmtree(old)
