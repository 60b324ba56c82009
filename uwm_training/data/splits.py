"""Split bags (several storage files under one metadata.yaml) with some files missing.

A recording split by size or duration is often copied in part. Such a folder cannot be opened as
it is (metadata.yaml lists files that are not there, and its message counts are the whole set's),
so on request it is read through a stand-in folder: links to the files present and a
metadata.yaml that lists only those, with counts and times taken from each file's own index.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path, PurePath
from typing import Any

import yaml
from rosbags.rosbag2 import Reader

from .errors import BagError

ALLOW_FLAG = "--allow-missing-files"


def missing_files(bag: Path) -> tuple[list[str], list[str]]:
    """(present, missing) storage file names of a bag folder's metadata.yaml."""
    try:
        info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        names = [PurePath(p).name for p in info["relative_file_paths"]]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return [], []  # the reader reports a broken metadata.yaml
    present = [n for n in names if (bag / n).exists()]
    return present, [n for n in names if n not in present]


def refuse_missing(bag: Path, present: list[str], missing: list[str]) -> BagError:
    total = len(present) + len(missing)
    return BagError(
        bag,
        f"split bag: {len(missing)} of its {total} storage files are missing ({', '.join(missing)})"
        + (f"; pass {ALLOW_FLAG} to convert the {len(present)} present" if present else ""),
    )


def present_files_bag(bag: Path, present: list[str]) -> Path:
    """A temporary bag folder of the files present (the caller removes it)."""
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())
    info = meta["rosbag2_bagfile_information"]
    if info.get("compression_mode") == "FILE":
        raise BagError(bag, "a split bag compressed per file with files missing cannot be read")
    counts: dict[str, int] = {}
    starts, ends = [], []
    for name in present:
        try:
            with Reader(bag / name) as reader:
                for topic, topic_info in reader.topics.items():
                    counts[topic] = counts.get(topic, 0) + topic_info.msgcount
                if reader.message_count:
                    starts.append(reader.start_time)
                    ends.append(reader.end_time)
        except Exception as e:  # a damaged file among the present ones
            raise BagError(bag, f"cannot open {name} ({type(e).__name__}: {e})") from None
    stand_in = Path(tempfile.mkdtemp(prefix="uwm-partial-bag-"))
    for name in present:
        (stand_in / name).symlink_to((bag / name).absolute())
    _rewrite(info, present, counts, min(starts, default=0), max(ends, default=0))
    (stand_in / "metadata.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return stand_in


def _rewrite(info: dict[str, Any], present: list[str], counts: dict[str, int], start: int,
             end: int) -> None:  # fmt: skip
    info["relative_file_paths"] = present
    if "files" in info:
        info["files"] = [f for f in info["files"] if PurePath(f["path"]).name in present]
    for topic in info["topics_with_message_count"]:
        topic["message_count"] = counts.get(topic["topic_metadata"]["name"], 0)
    info["message_count"] = sum(counts.values())
    info["starting_time"] = {"nanoseconds_since_epoch": start}
    info["duration"] = {"nanoseconds": max(end - start - 1, 0)}


def remove(stand_in: Path) -> None:
    shutil.rmtree(stand_in, ignore_errors=True)
