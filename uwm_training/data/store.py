"""The dataset store (Zarr v3, DESIGN §5): layout, read access, appends, atomic replacement.

::

    DATASET/                                 attrs: uwm_dataset (format), spec, stats, sources,
      data/<camera>    uint8 (N, S, S, 3)           reports, tasks, converter
                       one frame per (inner) chunk, zstd, 64 frames per shard file
      data/joint_pos   float32 (N, J)    (+ joint_vel, joint_effort)
      data/action      float32 (N, A)    zeros in action-free episodes
      meta/episode_ends int64 (E,)   meta/episode_has_action, episode_has_state bool (E,)
      meta/episode_task int32 (E,) -> attrs.tasks   meta/episode_source int32 (E,) -> sources

Image shards are read and written as files (``shards``) in their Zarr v3 sharding layout:
zarr's own per-chunk path costs ~0.6 ms a frame (the compression itself ~0.04 ms), and a file
per frame costs as much again on ext4. Reading a frame touches only its shard's index and its
own bytes; appends copy encoded frames without re-encoding. Zarr reads the result like any
array (tested).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import zarr
from zarr.codecs import BytesCodec, ShardingCodec, ShardingCodecIndexLocation, ZstdCodec

from ..atomic import replace_dir
from .errors import DatasetError
from .shards import ABSENT, FrameAppender, ShardFiles
from .stats import merge_stats

FORMAT = 1
# zstd's fast mode: on rendered frames the same ratio as level 1 (15x) at 1.5x the speed; on
# noisy camera-like frames 1.0x instead of 1.1x at 3-6x the speed (levels >= 1 entropy-code
# the pixels, which buys ~10 % there). The writer's CPU is what limits conversion on 2 cores.
ZSTD_LEVEL = -1
ROWS_PER_CHUNK = 4096
FRAMES_PER_SHARD = 64  # one file per 64 frames; a frame is still its own (inner) chunk
DIGESTS = ("blake3", "sha256")  # a source record's content digests (sha256: older datasets)
META_DTYPES = {
    "episode_ends": "int64",
    "episode_has_action": "bool",
    "episode_has_state": "bool",
    "episode_task": "int32",
    "episode_source": "int32",
}


def source_digests(source: dict[str, Any]) -> list[str]:
    """A source record's content identities, ``"<algorithm>:<hex>"`` (equal: the same content)."""
    return [f"{name}:{source[name]}" for name in DIGESTS if name in source]


def create_store(root: Path, spec: dict[str, Any], converter: dict[str, Any]) -> Any:
    """An empty dataset for ``spec`` (fps, image_size, cameras, lowdim key -> names, action)."""
    group = zarr.open_group(root, mode="w-")
    size = spec["image_size"]
    frame = (size, size, 3)
    sharding = ShardingCodec(
        chunk_shape=(1, *frame),
        codecs=[BytesCodec(), ZstdCodec(level=ZSTD_LEVEL)],
        index_codecs=[BytesCodec()],
        index_location=ShardingCodecIndexLocation.end,
    )
    for cam in spec["cameras"]:
        group.create_array(
            f"data/{cam}",
            shape=(0, *frame),
            chunks=(FRAMES_PER_SHARD, *frame),
            serializer=sharding,
            compressors=None,
            dtype="uint8",
            chunk_key_encoding={"name": "default", "separator": "."},
            fill_value=0,
        )
    for key, names in spec["lowdim"].items():
        group.create_array(
            f"data/{key}", shape=(0, len(names)), chunks=(ROWS_PER_CHUNK, len(names)), dtype="f4"
        )
    for key, dtype in META_DTYPES.items():
        group.create_array(f"meta/{key}", shape=(0,), chunks=(ROWS_PER_CHUNK,), dtype=dtype)
    group.update_attributes(  # one write of zarr.json, not one per key
        {
            "uwm_dataset": FORMAT,
            "spec": spec,
            "stats": {},
            "sources": [],
            "reports": [],
            "tasks": [""],
            "converter": converter,
        }
    )
    return group


def open_store(root: Path, mode: str = "r") -> Any:
    """Open a dataset (a zarr.Group, typed Any: its JSON-typed API fights mypy); anything else
    (or a newer format) is a DatasetError."""
    try:
        group = zarr.open_group(root, mode=mode)  # type: ignore[arg-type]
        version = group.attrs.get("uwm_dataset")
    except Exception as e:  # missing folder, not zarr, unreadable metadata
        raise DatasetError(f"{root}: not a readable dataset ({type(e).__name__}: {e})") from None
    if version != FORMAT:
        raise DatasetError(f"{root}: not a uwm dataset of format {FORMAT} (found {version!r})")
    return group


class Frames(ShardFiles):
    """The frames of one image array: Zarr v3 shards of one-frame chunks, read and written as
    files (``shards.ShardFiles``); built from the array's metadata, which must say that layout."""

    def __init__(self, array: Any, directory: Path) -> None:
        codecs = array.metadata.codecs
        codec = codecs[0]
        ok = (
            len(codecs) == 1
            and isinstance(codec, ShardingCodec)
            and tuple(codec.chunk_shape) == (1, *array.shape[1:])
            and [type(c) for c in codec.codecs] == [BytesCodec, ZstdCodec]
            and codec.index_codecs == (BytesCodec(),)
            and codec.index_location == ShardingCodecIndexLocation.end
            and array.metadata.chunk_key_encoding.encode_chunk_key((1, 0, 0, 0)) == "c.1.0.0.0"
        )
        if not ok:
            raise DatasetError(f"{directory}: image array is not sharded one-frame zstd chunks")
        per_shard = int(array.metadata.chunk_grid.chunk_shape[0])
        super().__init__(directory, tuple(array.shape[1:]), per_shard, codec.codecs[1].level)
        self._zstd = numcodecs.Zstd(level=self.level)

    def read(self, index: int) -> np.ndarray:
        """One frame: reads the shard's index and that frame's bytes, nothing else."""
        shard, k = divmod(index, self.per_shard)
        try:
            fd = os.open(self.path(shard), os.O_RDONLY)
        except FileNotFoundError:
            raise DatasetError(f"{self.dir}: frame {index} is missing (damaged dataset)") from None
        try:
            size = os.fstat(fd).st_size
            entry = os.pread(fd, 16, size - 16 * (self.per_shard - k))
            offset, nbytes = np.frombuffer(entry, "<u8").tolist()
            if offset == ABSENT:
                raise DatasetError(f"{self.dir}: frame {index} is missing (damaged dataset)")
            raw = os.pread(fd, nbytes, offset)
        finally:
            os.close(fd)
        return np.frombuffer(self._zstd.decode(raw), np.uint8).reshape(self.shape)


class Store:
    """Read access to a dataset: spec, episode table, low-dim arrays and image frames."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.group = open_store(self.root)
        self.attrs: dict[str, Any] = dict(self.group.attrs)
        self.spec: dict[str, Any] = self.attrs["spec"]
        meta = {k: np.asarray(self.group[f"meta/{k}"][:]) for k in META_DTYPES}
        self.episode_ends: np.ndarray = meta["episode_ends"]
        self.has_action: np.ndarray = meta["episode_has_action"]
        self.has_state: np.ndarray = meta["episode_has_state"]
        self.episode_task: np.ndarray = meta["episode_task"]
        self.episode_source: np.ndarray = meta["episode_source"]

    @property
    def cameras(self) -> list[str]:
        return list(self.spec["cameras"])

    @property
    def num_frames(self) -> int:
        return int(self.episode_ends[-1]) if len(self.episode_ends) else 0

    @property
    def num_episodes(self) -> int:
        return len(self.episode_ends)

    def episode_range(self, episode: int) -> tuple[int, int]:
        if not 0 <= episode < self.num_episodes:
            raise DatasetError(f"{self.root}: no episode {episode} (has {self.num_episodes})")
        start = int(self.episode_ends[episode - 1]) if episode else 0
        return start, int(self.episode_ends[episode])

    def lowdim(self, key: str) -> np.ndarray:
        """A whole low-dim array (small: ~4 bytes per value per frame)."""
        return np.asarray(self.group[f"data/{key}"][:])

    def frames(self, camera: str) -> Frames:
        return Frames(self.group[f"data/{camera}"], self.root / "data" / camera)


def spec_mismatch(have: dict[str, Any], new: dict[str, Any], video: bool = False) -> list[str]:
    """Spec keys that differ (video parts only need fps, image size and cameras to match)."""
    keys = ("fps", "image_size", "cameras") if video else tuple(sorted(set(have) | set(new)))
    return [f"{k}: {have.get(k)!r} vs {new.get(k)!r}" for k in keys if have.get(k) != new.get(k)]


def append_part(root: Path, part: Path) -> None:
    """Move a converted part's episodes to the end of the dataset at ``root``."""
    dst, src = open_store(root, "r+"), Store(part)
    spec, video = dst.attrs["spec"], not src.spec["lowdim"]
    bad = spec_mismatch(spec, src.spec, video)
    if bad:
        raise DatasetError(f"{part}: does not match the dataset's spec: {'; '.join(bad)}")
    n0 = int(dst["meta/episode_ends"][-1]) if dst["meta/episode_ends"].shape[0] else 0
    n = src.num_frames
    for cam in src.cameras:
        array = dst[f"data/{cam}"]
        array.resize((n0 + n, *array.shape[1:]))
        frames, target = src.frames(cam), Frames(array, root / "data" / cam)
        shards = range(-(-n // frames.per_shard))
        if n0 % frames.per_shard == 0:  # shard-aligned (e.g. the first part): move the files
            for shard in shards:
                os.replace(frames.path(shard), target.path(n0 // frames.per_shard + shard))
            continue
        appender = FrameAppender(target, n0)
        for shard in shards:  # copies encoded frames, no re-encoding
            for chunk in frames.shard_chunks(shard):
                appender.append(chunk)
        appender.close()
    for key, names in spec["lowdim"].items():
        array = dst[f"data/{key}"]
        array.resize((n0 + n, len(names)))
        for a in range(0, n, ROWS_PER_CHUNK):
            b = min(n, a + ROWS_PER_CHUNK)
            rows = src.group[f"data/{key}"][a:b] if key in src.spec["lowdim"] else 0.0
            array[n0 + a : n0 + b] = rows
    tasks: list[str] = list(dst.attrs["tasks"])
    task_map = []
    for task in src.attrs["tasks"]:
        if task not in tasks:
            tasks.append(task)
        task_map.append(tasks.index(task))
    sources: list[Any] = list(dst.attrs["sources"])
    columns = {
        "episode_ends": src.episode_ends + n0,
        "episode_has_action": src.has_action,
        "episode_has_state": src.has_state,
        "episode_task": np.asarray(task_map, np.int32)[src.episode_task],
        "episode_source": src.episode_source + len(sources),
    }
    for key, values in columns.items():
        array = dst[f"meta/{key}"]
        e0 = array.shape[0]
        array.resize((e0 + len(values),))
        array[e0:] = values
    dims = {k: len(v) for k, v in spec["lowdim"].items()}
    dst.update_attributes(
        {
            "stats": merge_stats(dst.attrs["stats"], src.attrs["stats"], dims),
            "sources": sources + src.attrs["sources"],
            "reports": list(dst.attrs["reports"]) + src.attrs["reports"],
            "tasks": tasks,
        }
    )


# ----- atomic output ----------------------------------------------------------------------------
@contextmanager
def staged(out: Path, append: bool) -> Iterator[Path]:
    """A temp dataset dir next to ``out`` that replaces it only if the block succeeds.

    With ``append`` the temp dir starts as a clone of ``out`` (image chunks hard-linked, which
    is safe because frames are never rewritten, everything else copied). On any failure the temp
    dir is removed and ``out`` is untouched.
    """
    out = out.absolute()
    if append and not out.exists():
        raise DatasetError(f"{out}: --append needs an existing dataset")
    if out.exists() and not append:
        raise DatasetError(f"{out}: exists; pass --append to add episodes, or choose a new path")
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    created = [p for p in out.parents if not p.exists()]  # innermost first
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        if append:
            open_store(out)
            _clone(out, tmp)
        yield tmp
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for parent in created:  # the folders made for the output, if nothing else is in them
            with suppress(OSError):
                parent.rmdir()
        raise


def _clone(src: Path, dst: Path) -> None:
    cameras = set(open_store(src).attrs["spec"]["cameras"])
    for dirpath, _, files in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        frames = len(rel.parts) == 2 and rel.parts[0] == "data" and rel.parts[1] in cameras
        for name in files:
            if frames and name != "zarr.json":
                try:
                    os.link(Path(dirpath) / name, dst / rel / name)
                    continue
                except OSError:  # no hard links on this filesystem: copy
                    pass
            shutil.copy2(Path(dirpath) / name, dst / rel / name)
