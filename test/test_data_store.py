"""Dataset store: append, shards, parallel workers, stats merging, atomic replacement."""

from __future__ import annotations

from pathlib import Path

import numcodecs
import numpy as np
import pytest
from data_helpers import convert, convert_config, leftovers, robot_messages, write_bag

from uwm_training.data.config import load_config
from uwm_training.data.convert import bag_jobs, build_dataset, select_shard
from uwm_training.data.errors import DataError, DatasetError
from uwm_training.data.shards import ShardFiles
from uwm_training.data.stats import RunningStats
from uwm_training.data.store import ZSTD_LEVEL, Store


def bags(tmp_path: Path, n: int) -> list[Path]:
    return [
        write_bag(tmp_path / f"bag{i}", robot_messages(seconds=1.5, seed=i), storage="mcap")
        for i in range(n)
    ]


def snapshot(root: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*"))


def test_append_adds_episodes_and_merges_stats(tmp_path: Path) -> None:
    a, b = bags(tmp_path, 2)
    cfg = convert_config(tmp_path)
    convert([a], tmp_path / "one", cfg)
    convert([b], tmp_path / "other", cfg)
    convert([a], tmp_path / "ds", cfg)
    convert([b], tmp_path / "ds", cfg, append=True)
    both, first, second = (Store(tmp_path / n) for n in ("ds", "one", "other"))
    assert both.episode_ends.tolist() == [first.num_frames, first.num_frames + second.num_frames]
    q = np.concatenate([first.lowdim("joint_pos"), second.lowdim("joint_pos")])
    np.testing.assert_array_equal(both.lowdim("joint_pos"), q)
    np.testing.assert_array_equal(
        both.frames("wrist").read(first.num_frames), second.frames("wrist").read(0)
    )
    stats = both.attrs["stats"]["joint_pos"]
    np.testing.assert_allclose(stats["mean"], q.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats["std"], q.std(0), rtol=1e-4)
    assert [s["path"] for s in both.attrs["sources"]] == [str(a), str(b)]
    assert len(both.attrs["reports"]) == 2 and both.episode_source.tolist() == [0, 1]
    # the first dataset's frames were hard-linked, never rewritten: still readable and equal
    np.testing.assert_array_equal(both.frames("front").read(0), first.frames("front").read(0))


def test_append_with_actions_derived_from_the_joints(tmp_path: Path) -> None:
    """Actions from the next joint positions: the config's spec has no action names (the bags
    decide them for commands); appending another bag with the same config must still work."""
    a, b = bags(tmp_path, 2)
    cfg = convert_config(tmp_path, action={"source": "next_positions"})
    convert([a], tmp_path / "ds", cfg)
    convert([b], tmp_path / "ds", cfg, append=True)
    assert Store(tmp_path / "ds").num_episodes == 2
    with pytest.raises(DatasetError, match="already in the dataset"):
        convert([a], tmp_path / "ds", cfg, append=True)


def test_append_refuses_the_same_bag_and_a_mismatching_config(tmp_path: Path) -> None:
    (a,) = bags(tmp_path, 1)
    convert([a], tmp_path / "ds", convert_config(tmp_path))
    before = snapshot(tmp_path / "ds")
    with pytest.raises(DatasetError, match="already in the dataset"):
        convert([a], tmp_path / "ds", convert_config(tmp_path), append=True)
    with pytest.raises(DatasetError, match=r"config does not match the dataset: fps: 10 vs 15"):
        convert([a], tmp_path / "ds", convert_config(tmp_path, fps=15), append=True)
    with pytest.raises(DatasetError, match="needs an existing dataset"):
        convert([a], tmp_path / "nothing", convert_config(tmp_path), append=True)
    assert snapshot(tmp_path / "ds") == before and not leftovers(tmp_path)


def test_parallel_workers_give_the_same_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sources = bags(tmp_path, 3)
    cfg = convert_config(tmp_path)
    convert(sources, tmp_path / "serial", cfg, workers=1)
    reports = convert(sources, tmp_path / "parallel", cfg, workers=2, progress=True)
    assert "sources: 100%" in capsys.readouterr().err  # tqdm fed by the workers' events
    serial, parallel = Store(tmp_path / "serial"), Store(tmp_path / "parallel")
    assert [r["source"] for r in reports] == [str(s) for s in sources]
    assert serial.episode_ends.tolist() == parallel.episode_ends.tolist()
    np.testing.assert_array_equal(serial.lowdim("action"), parallel.lowdim("action"))
    last = serial.num_frames - 1
    np.testing.assert_array_equal(
        serial.frames("front").read(last), parallel.frames("front").read(last)
    )


def test_worker_failure_writes_nothing(tmp_path: Path) -> None:
    good = bags(tmp_path, 1)
    broken = tmp_path / "broken"
    broken.mkdir()
    cfg = load_config(convert_config(tmp_path))
    with pytest.raises(DataError, match="metadata.yaml is missing"):
        build_dataset(bag_jobs([*good, broken], cfg), tmp_path / "ds", workers=2, progress=False)
    assert not (tmp_path / "ds").exists() and not leftovers(tmp_path)


def test_shards_partition_the_sources() -> None:
    sources = [f"bag{i}" for i in (3, 0, 2, 1, 4)]
    shards = [select_shard(sources, f"{i}/2") for i in range(2)]
    assert shards == [["bag0", "bag2", "bag4"], ["bag1", "bag3"]]
    with pytest.raises(DataError, match="--shard"):
        select_shard(sources, "2/2")


def test_running_stats_merge_exactly() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 3)), rng.normal(3, 2, size=(70, 3))
    merged = RunningStats(3)
    merged.update(a)
    other = RunningStats(3)
    other.update(b)
    merged.merge(RunningStats.from_dict(other.to_dict(), 3))
    both = np.concatenate([a, b])
    d = merged.to_dict()
    np.testing.assert_allclose(d["mean"], both.mean(0))
    np.testing.assert_allclose(d["std"], both.std(0))
    np.testing.assert_allclose(d["min"], both.min(0))
    assert d["count"] == 120


def test_frame_encoder_writes_the_bytes_of_zarrs_codec(tmp_path: Path) -> None:
    """The writer's zstd (it keeps its context) gives the bytes numcodecs, zarr's codec, gives."""
    convert(bags(tmp_path, 1), tmp_path / "ds", convert_config(tmp_path))
    encode = Store(tmp_path / "ds").frames("front").encoder()
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, 32 * 32 * 3).reshape(32, 32, 3)
    frames = [ramp + rng.integers(0, 40, ramp.shape), rng.integers(0, 256, ramp.shape), 0 * ramp]
    for frame in (f.astype(np.uint8) for f in frames):
        assert encode(frame) == numcodecs.Zstd(level=ZSTD_LEVEL).encode(frame)


def test_not_a_dataset_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a readable dataset"):
        Store(tmp_path / "missing")
    with pytest.raises(DatasetError, match="no episode 5"):
        convert(bags(tmp_path, 1), tmp_path / "ds", convert_config(tmp_path))
        Store(tmp_path / "ds").episode_range(5)


def test_example_config_loads() -> None:
    cfg = load_config(Path(__file__).parents[1] / "config" / "convert.yaml")
    assert list(cfg.cameras) == ["front", "wrist"] and cfg.action.source == "command"
    assert cfg.cameras["wrist"].crop == (80, 0, 480, 480) and cfg.joints and cfg.joints.names


def test_a_shard_of_more_chunks_than_one_gathered_write_takes_is_written_whole(
    tmp_path: Path,
) -> None:
    """Shard files are written with writev, which takes at most 1024 buffers a call."""
    files = ShardFiles(tmp_path, (1, 1, 3), 3000, 1)
    chunks = [bytes([i % 256]) * (1 + i % 7) for i in range(2999)]
    files.write_shard(0, chunks)
    assert files.shard_chunks(0) == chunks
