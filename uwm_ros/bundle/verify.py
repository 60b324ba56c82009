"""Verify a bundle before anything in it is loaded: every listed file inside the bundle, of the
listed size and sha256, and no TensorRT plan planted in it.

Hashing a paper-sized bundle takes seconds, so a file whose hash was verified is recorded in the
user cache with its stat (size, mtime, ctime, inode); a restart re-hashes only files whose stat
changed. ctime cannot be set from user space, so touching a file back to its old mtime after an
edit still forces a re-hash.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from .cache import cache_dir, write_atomic
from .manifest import BundleError, Manifest, sha256

log = logging.getLogger(__name__)
PLAN_SUFFIXES = (".plan", ".engine", ".trt")  # serialised TensorRT engines: GPU code


def bundle_file(root: Path, name: str) -> Path:
    """The listed file ``name`` of the bundle at ``root``; raises unless it resolves inside."""
    path = root / name
    real, base = path.resolve(), root.resolve()
    if not real.is_relative_to(base):
        raise BundleError(f"{path}: resolves to {real}, outside the bundle (a symlink out)")
    return path


def bundle_problems(root: Path, manifest: Manifest, use_cache: bool = True) -> list[str]:
    """Every problem with the bundle's files, one line each naming the file; [] if none."""
    problems = [
        f"{p}: a TensorRT plan inside the bundle; engines build and cache their own plans "
        "and never load one from a bundle (remove it)"
        for p in sorted(root.rglob("*"))
        if p.suffix in PLAN_SUFFIXES
    ]
    records = _load_records(root) if use_cache else {}
    changed = False
    for name, want in manifest.files.items():
        try:
            path = bundle_file(root, name)
        except BundleError as e:
            problems.append(str(e))
            continue
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        st = path.stat()
        if st.st_size != want.size:
            problems.append(f"{path}: {st.st_size} bytes, the manifest says {want.size}")
            continue
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, want.sha256]
        if records.get(name) == stamp:
            continue
        if sha256(path) != want.sha256:
            problems.append(f"{path}: sha256 does not match the manifest (modified or corrupt)")
            continue
        records[name], changed = stamp, True
    if use_cache and changed and not problems:
        _save_records(root, records)
    return problems


def verify_bundle(root: Path, manifest: Manifest, use_cache: bool = True) -> None:
    """Raise ``BundleError`` listing every problem with the bundle's files."""
    problems = bundle_problems(root, manifest, use_cache)
    if problems:
        raise BundleError(
            f"{root}: refused, {len(problems)} problem(s):\n  " + "\n  ".join(problems)
        )


def _records_path(root: Path) -> Path:
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:32]
    return cache_dir() / "verified" / f"{key}.json"


def _load_records(root: Path) -> dict[str, list[object]]:
    try:
        records = json.loads(_records_path(root).read_text())
    except (OSError, ValueError):
        return {}  # no record (or a broken one): hash everything
    return records if isinstance(records, dict) else {}


def _save_records(root: Path, records: dict[str, list[object]]) -> None:
    try:
        write_atomic(_records_path(root), json.dumps(records).encode())
    except OSError as e:  # a read-only home only costs re-hashing at the next start
        log.warning("cannot record verified hashes in %s: %s", _records_path(root), e)
