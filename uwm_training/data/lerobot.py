"""``uwm dataset export-lerobot``: the LeRobot dataset v3.0 layout, written with pyarrow + PyAV.

::

    OUT/meta/info.json               codebase_version v3.0, fps, features, path templates
    OUT/meta/stats.json              per feature min/max/mean/std/count
    OUT/meta/tasks.parquet           task_index, indexed by task text (pandas index metadata)
    OUT/meta/episodes/chunk-000/file-000.parquet   one row per episode: length, tasks, indices
                                                   into data and video files, per-episode stats
    OUT/data/chunk-000/file-000.parquet            one row per frame
    OUT/videos/observation.images.<cam>/chunk-000/file-000.mp4   episodes back to back

Files rotate at episode boundaries every ``frames_per_file`` frames (LeRobot packs episodes into
files of ~100-500 MB). The lerobot package itself is not used: its pins conflict with ours.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import DatasetError
from .stats import RunningStats
from .store import Store
from .video import VideoWriter

CHUNKS_SIZE = 1000
FILE_PATTERN = "chunk-{chunk_index:03d}/file-{file_index:03d}"
KEYS = {
    "joint_pos": "observation.state",
    "joint_vel": "observation.velocity",
    "joint_effort": "observation.effort",
    "action": "action",
}
INDEX_FEATURES = {
    "timestamp": "float32",
    "frame_index": "int64",
    "episode_index": "int64",
    "index": "int64",
    "task_index": "int64",
}


def _features(store: Store) -> dict[str, Any]:
    size, fps = store.spec["image_size"], store.spec["fps"]
    features: dict[str, Any] = {}
    for cam in store.cameras:
        features[f"observation.images.{cam}"] = {
            "dtype": "video",
            "shape": [size, size, 3],
            "names": ["height", "width", "channels"],
            "info": {
                "video.height": size, "video.width": size, "video.codec": "h264",
                "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "video.fps": fps,
                "video.channels": 3, "has_audio": False,
            },
        }  # fmt: skip
    for key, names in store.spec["lowdim"].items():
        features[KEYS[key]] = {"dtype": "float32", "shape": [len(names)], "names": names}
    for key, dtype in INDEX_FEATURES.items():
        features[key] = {"dtype": dtype, "shape": [1], "names": None}
    return features


def _location(file_number: int) -> dict[str, int]:
    return {"chunk_index": file_number // CHUNKS_SIZE, "file_index": file_number % CHUNKS_SIZE}


def _vector_column(values: np.ndarray) -> pa.Array:
    flat = pa.array(values.astype(np.float32).ravel())
    return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])


def export_lerobot(
    dataset: str | Path,
    out: str | Path,
    robot_type: str | None = None,
    frames_per_file: int = 50_000,
) -> dict[str, Any]:
    """Write the dataset as LeRobot v3.0 into the new folder ``out``; returns info.json."""
    store, out = Store(dataset), Path(out).absolute()
    if out.exists():
        raise DatasetError(f"{out}: exists; choose a new folder for the export")
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        info = _write(store, tmp, robot_type, frames_per_file)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


def _write(
    store: Store, root: Path, robot_type: str | None, frames_per_file: int
) -> dict[str, Any]:
    fps, tasks = store.spec["fps"], list(store.attrs["tasks"])
    lowdim = {key: store.lowdim(key) for key in store.spec["lowdim"]}
    episodes: list[dict[str, Any]] = []
    groups: list[list[int]] = [[]]  # episodes per file
    frames = 0
    for e in range(store.num_episodes):
        start, end = store.episode_range(e)
        if groups[-1] and frames + end - start > frames_per_file:
            groups.append([])
            frames = 0
        groups[-1].append(e)
        frames += end - start
    for number, group in enumerate(groups):
        if group:
            episodes += _write_file(store, root, number, group, lowdim, fps)
    _write_table(root / "meta/episodes" / f"{FILE_PATTERN.format(**_location(0))}.parquet",
                 pa.Table.from_pylist(episodes))  # fmt: skip
    _write_tasks(root, tasks)
    stats = {KEYS[k]: v for k, v in store.attrs["stats"].items()}
    (root / "meta/stats.json").write_text(json.dumps(stats, indent=2))
    info = {
        "codebase_version": "v3.0",
        "robot_type": robot_type,
        "total_episodes": store.num_episodes,
        "total_frames": store.num_frames,
        "total_tasks": len(tasks),
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 500,
        "fps": fps,
        "splits": {"train": f"0:{store.num_episodes}"},
        "data_path": f"data/{FILE_PATTERN}.parquet",
        "video_path": f"videos/{{video_key}}/{FILE_PATTERN}.mp4",
        "features": _features(store),
    }
    (root / "meta/info.json").write_text(json.dumps(info, indent=2))
    return info


def _write_file(
    store: Store,
    root: Path,
    number: int,
    group: list[int],
    lowdim: dict[str, np.ndarray],
    fps: float,
) -> list[dict[str, Any]]:
    """One data parquet file and one mp4 per camera holding the episodes of ``group``."""
    loc = _location(number)
    first, last = store.episode_range(group[0])[0], store.episode_range(group[-1])[1]
    frame_index = np.concatenate([np.arange(np.diff(store.episode_range(e)).item()) for e in group])
    episode_index = np.concatenate(
        [np.full(np.diff(store.episode_range(e)).item(), e) for e in group]
    )
    columns: dict[str, Any] = {KEYS[k]: _vector_column(v[first:last]) for k, v in lowdim.items()}
    columns.update(
        timestamp=pa.array((frame_index / fps).astype(np.float32)),
        frame_index=pa.array(frame_index.astype(np.int64)),
        episode_index=pa.array(episode_index.astype(np.int64)),
        index=pa.array(np.arange(first, last, dtype=np.int64)),
        task_index=pa.array(store.episode_task[episode_index].astype(np.int64)),
    )
    _write_table(root / "data" / f"{FILE_PATTERN.format(**loc)}.parquet", pa.table(columns))
    size = store.spec["image_size"]
    for cam in store.cameras:
        path = root / "videos" / f"observation.images.{cam}" / f"{FILE_PATTERN.format(**loc)}.mp4"
        frames = store.frames(cam)
        with VideoWriter(path, fps, size, size) as writer:
            for i in range(first, last):
                writer.write(frames.read(i))
    rows = []
    for e in group:
        start, end = store.episode_range(e)
        row: dict[str, Any] = {
            "episode_index": e,
            "tasks": [store.attrs["tasks"][store.episode_task[e]]],
            "length": end - start,
            "data/chunk_index": loc["chunk_index"],
            "data/file_index": loc["file_index"],
            "dataset_from_index": start,
            "dataset_to_index": end,
            "meta/episodes/chunk_index": 0,
            "meta/episodes/file_index": 0,
        }
        for cam in store.cameras:
            key = f"videos/observation.images.{cam}"
            row[f"{key}/chunk_index"] = loc["chunk_index"]
            row[f"{key}/file_index"] = loc["file_index"]
            row[f"{key}/from_timestamp"] = (start - first) / fps
            row[f"{key}/to_timestamp"] = (end - first) / fps
        for key, values in lowdim.items():
            stats = RunningStats(values.shape[1])
            stats.update(values[start:end])
            row.update({f"stats/{KEYS[key]}/{k}": v for k, v in stats.to_dict().items()})
        rows.append(row)
    return rows


def _write_tasks(root: Path, tasks: list[str]) -> None:
    """tasks.parquet as pandas writes a frame indexed by task text (LeRobot reads it so)."""
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()),
                      "__index_level_0__": pa.array(tasks, pa.string())})  # fmt: skip
    pandas_meta = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
             "numpy_type": "int64", "metadata": None},
            {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode",
             "numpy_type": "object", "metadata": None},
        ],
        "pandas_version": "2.2.0",
    }  # fmt: skip
    table = table.replace_schema_metadata({"pandas": json.dumps(pandas_meta)})
    _write_table(root / "meta/tasks.parquet", table)


def _write_table(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
