"""Video sources, previews and the LeRobot v3 export, all read back with PyAV/pyarrow."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
from data_helpers import convert, convert_config, encode_mp4, frame_image, robot_messages, write_bag

from uwm_training.data.convert import build_dataset
from uwm_training.data.errors import DataError, VideoError
from uwm_training.data.lerobot import export_lerobot
from uwm_training.data.preview import write_preview
from uwm_training.data.store import Store
from uwm_training.data.video import parse_video_arg, video_jobs, video_settings


def decoded_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def clip(tmp_path: Path, name: str = "clip.mp4", n: int = 30, camera: int = 0) -> Path:
    frames = [frame_image(i, camera, (48, 64)) for i in range(n)]
    return encode_mp4(tmp_path / name, frames, fps=15)


def test_mp4_becomes_an_action_free_episode(tmp_path: Path) -> None:
    fps, size, cameras = video_settings(tmp_path / "ds", False, 5, 32, None)
    jobs = video_jobs([parse_video_arg(str(clip(tmp_path)), cameras)], fps, size, 100_000_000)
    (report,) = build_dataset(jobs, tmp_path / "ds", progress=False)
    store = Store(tmp_path / "ds")
    assert store.num_frames == report["frames"] == 11  # 0 .. 2 s at 5 fps
    assert store.has_action.tolist() == [False] and store.spec["lowdim"] == {}
    for k in range(store.num_frames):  # tick k at 0.2 k s shows source frame 3 k (or the last)
        got = store.frames("front").read(k).astype(int)
        assert np.abs(got - frame_image(min(3 * k, 29), 0, (32, 32))).max() <= 3


def test_video_appends_to_a_robot_dataset_with_zero_lowdim(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "bag", robot_messages(seconds=1.5))
    convert([bag], tmp_path / "ds", convert_config(tmp_path))
    stats = Store(tmp_path / "ds").attrs["stats"]
    fps, size, cameras = video_settings(tmp_path / "ds", True, None, None, None)
    assert (fps, size, cameras) == (10.0, 32, ["front", "wrist"])
    entry = parse_video_arg(
        f"wrist={clip(tmp_path, 'b.mp4', camera=1)},front={clip(tmp_path)}", cameras
    )
    build_dataset(video_jobs([entry], fps, size, 100_000_000, cameras), tmp_path / "ds", True,
                  progress=False)  # fmt: skip
    store = Store(tmp_path / "ds")
    assert store.has_action.tolist() == [True, False] and store.has_state.tolist() == [True, False]
    start, end = store.episode_range(1)
    assert not store.lowdim("joint_pos")[start:end].any()
    assert store.attrs["stats"] == stats  # video frames do not enter the statistics
    assert [s["kind"] for s in store.attrs["sources"]] == ["rosbag2", "video"]


def test_video_arguments_and_bad_files_are_clear(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="give cam=file"):
        parse_video_arg("a.mp4", ["front", "wrist"])
    with pytest.raises(DataError, match="must name every camera"):
        parse_video_arg("front=a.mp4", ["front", "wrist"])
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    jobs = video_jobs([{"front": str(tmp_path / "bad.mp4")}], 5, 32, 100_000_000)
    with pytest.raises(VideoError, match="bad.mp4: cannot open video"):
        build_dataset(jobs, tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds").exists()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("robot")
    bags = [write_bag(tmp / f"b{i}", robot_messages(seconds=1.5, seed=i)) for i in range(2)]
    convert(bags, tmp / "ds", convert_config(tmp))
    return tmp / "ds"


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_preview_renders_cameras_and_strip_plot(dataset: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"preview{suffix}"
    n = write_preview(dataset, out, episode=1, height=64)
    frames = decoded_frames(out)
    start, end = Store(dataset).episode_range(1)
    assert n == len(frames) == end - start
    assert frames[0].shape == (64 + 2 * 90, 128, 3)  # two tiles over two strips
    assert frames[0][64:].std() > 5  # the plot is not blank


def test_lerobot_export_reads_back(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "lerobot"
    export_lerobot(dataset, out, robot_type="arm", frames_per_file=20)  # forces 2 files
    store = Store(dataset)
    info = json.loads((out / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["total_frames"] == store.num_frames
    assert info["features"]["observation.images.front"]["dtype"] == "video"
    episodes = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [e["length"] for e in episodes] == np.diff([0, *store.episode_ends]).tolist()
    total = 0
    key = "observation.images.front"
    for e in episodes:
        data_file = out / info["data_path"].format(
            chunk_index=e["data/chunk_index"], file_index=e["data/file_index"]
        )
        table = pq.read_table(data_file).to_pydict()
        rows = [i for i, ep in enumerate(table["episode_index"]) if ep == e["episode_index"]]
        total += len(rows)
        span = range(e["dataset_from_index"], e["dataset_to_index"])
        assert [table["index"][i] for i in rows] == list(span)
        want = store.lowdim("joint_pos")[span.start : span.stop]
        np.testing.assert_allclose([table["observation.state"][i] for i in rows], want)
        video = out / info["video_path"].format(
            video_key=key,
            chunk_index=e[f"videos/{key}/chunk_index"],
            file_index=e[f"videos/{key}/file_index"],
        )
        frames = decoded_frames(video)
        first = round(e[f"videos/{key}/from_timestamp"] * info["fps"])
        assert len(frames) >= first + e["length"]
        error = np.abs(frames[first].astype(int) - store.frames("front").read(span.start))
        assert error.mean() < 4
    assert total == store.num_frames
    tasks = pq.read_table(out / "meta/tasks.parquet")
    assert tasks.column("__index_level_0__").to_pylist() == [""]
    assert b"index_columns" in tasks.schema.metadata[b"pandas"]
    with pytest.raises(DataError, match="exists"):
        export_lerobot(dataset, out)
