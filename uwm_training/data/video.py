"""Video files in and out (PyAV): mp4 sources -> action-free episodes; mp4/gif writing.

A video source is one episode: one file per dataset camera, each decoded as a camera stream
stamped by its presentation time, resampled onto the dataset's grid exactly like bag cameras
(same Timeline and EpisodeBuilder: a video is a recording with cameras only), fitted to the
dataset resolution with the model contract's ``fit_image``.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import av
import numpy as np

from uwm_ros.bundle.contract import fit_image

from .config import CameraConfig, ConvertConfig
from .convert import Job
from .episodes import EpisodeBuilder
from .errors import DataError, VideoError
from .extract import Progress, dataset_spec, file_digest
from .resample import Timeline
from .store import open_store
from .writer import PartWriter

DEFAULT_FPS, DEFAULT_SIZE, DEFAULT_CAMERA = 10.0, 96, "front"


def video_settings(
    out: Path, append: bool, fps: float | None, size: int | None, cameras: str | None
) -> tuple[float, int, list[str]]:
    """fps, image size and cameras: the existing dataset's (appending) or the arguments'."""
    if append and out.exists():
        spec = open_store(out).attrs["spec"]
        have = {"fps": spec["fps"], "size": spec["image_size"], "cameras": spec["cameras"]}
        given = {"fps": fps, "size": size, "cameras": cameras.split(",") if cameras else None}
        bad = [
            f"--{k} {v} (dataset: {have[k]})" for k, v in given.items() if v not in (None, have[k])
        ]
        if bad:
            raise DataError(f"{out}: {', '.join(bad)}")
        return float(spec["fps"]), int(spec["image_size"]), list(spec["cameras"])
    return fps or DEFAULT_FPS, size or DEFAULT_SIZE, (cameras or DEFAULT_CAMERA).split(",")


def parse_video_arg(arg: str, cameras: Sequence[str]) -> dict[str, str]:
    """``a.mp4`` (single-camera datasets) or ``front=a.mp4,wrist=b.mp4`` -> camera -> file."""
    if "=" not in arg:
        if len(cameras) != 1:
            raise DataError(f"{arg}: the dataset has cameras {list(cameras)}; give cam=file,...")
        return {cameras[0]: arg}
    entry = dict(part.split("=", 1) for part in arg.split(","))
    if set(entry) != set(cameras):
        raise DataError(f"{arg}: must name every camera {list(cameras)} once")
    return entry


def video_jobs(
    entries: Sequence[dict[str, str]],
    fps: float,
    size: int,
    max_skew_ns: int,
    cameras: Sequence[str] | None = None,
) -> list[Job]:
    """One conversion job per video entry (see ``convert.Job``)."""
    jobs = []
    for entry in entries:
        order = list(cameras or entry)
        label = ",".join(f"{cam}={entry[cam]}" for cam in order)
        jobs.append(
            Job(label, convert_video, ({c: entry[c] for c in order}, fps, size, max_skew_ns))
        )
    return jobs


def read_frames(path: str | Path) -> Iterator[tuple[int, av.VideoFrame]]:
    """(presentation time ns, frame) of a file's first video stream, in order."""
    try:
        container = av.open(str(path))
    except (OSError, av.error.FFmpegError) as e:
        raise VideoError(f"{path}: cannot open video ({e})") from None
    with container:
        if not container.streams.video:
            raise VideoError(f"{path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                if frame.pts is not None and frame.time_base is not None:
                    yield round(frame.pts * frame.time_base * 1_000_000_000), frame
        except av.error.FFmpegError as e:
            raise VideoError(f"{path}: cannot decode ({e})") from None


def convert_video(
    files: dict[str, str],
    fps: float,
    size: int,
    max_skew_ns: int,
    part: Path,
    converter: dict[str, Any],
    progress: Progress | None = None,
) -> dict[str, Any]:
    """One video source (a file per camera) -> an action-free episode in a part store."""
    for path in files.values():
        if not Path(path).is_file():
            raise VideoError(f"{path}: no such video file")
    cfg = ConvertConfig(
        fps=fps,
        image_size=size,
        cameras={cam: CameraConfig(topic=f"/{cam}") for cam in files},
        max_skew=max_skew_ns / 1e9,
    )
    timeline = Timeline(fps, clock=next(iter(files)))
    for cam in files:
        timeline.add(cam, max_skew_ns, by_receive=False)
    digests = [file_digest(Path(f)) for f in files.values()]
    source = {
        "path": ",".join(str(Path(f).absolute()) for f in files.values()),
        "kind": "video",
        "blake3": "+".join(d["blake3"] for d in digests),
        "bytes": sum(d["bytes"] for d in digests),
    }
    writer = PartWriter(part, dataset_spec(cfg, None), converter)
    builder = EpisodeBuilder(cfg, writer, has_command=False)
    if progress:
        progress.start(0)
    streams = [_tagged(cam, path) for cam, path in files.items()]
    for stamp, cam, frame in heapq.merge(*streams, key=lambda x: x[0]):
        timeline.push(cam, stamp, _FrameJob(frame, size), stamp)
        for tick in timeline.ready():
            builder.add(*tick)
    timeline.finish()
    for tick in timeline.ready():
        builder.add(*tick)
    builder.close_episode()
    report = {
        "source": ",".join(files.values()),
        "frames": writer.n,
        "episodes": writer.num_episodes,
        "action": "none",
        **builder.report(),
    }
    for cam, stream in timeline.streams.items():
        report["streams"][cam].update(stream.stats.to_dict())
    writer.close(report, source)
    return report


def _tagged(camera: str, path: str) -> Iterator[tuple[int, str, av.VideoFrame]]:
    for stamp, frame in read_frames(path):
        yield stamp, camera, frame


class _FrameJob:
    """A decoded video frame, converted to RGB and fitted only if a dataset frame uses it."""

    __slots__ = ("frame", "size")

    def __init__(self, frame: av.VideoFrame, size: int) -> None:
        self.frame, self.size = frame, size

    def __call__(self) -> np.ndarray:
        return fit_image(self.frame.to_ndarray(format="rgb24"), self.size)


class VideoWriter:
    """RGB frames -> .mp4 (H.264, yuv420p) or .gif; use as a context manager."""

    def __init__(self, path: Path, fps: float, width: int, height: int, crf: int = 20) -> None:
        gif = path.suffix.lower() == ".gif"
        if not gif and path.suffix.lower() != ".mp4":
            raise VideoError(f"{path}: output must be .mp4 or .gif")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(path), "w")
        codec, options = ("gif", {}) if gif else ("libx264", {"crf": str(crf)})
        self.stream: Any = cast(
            Any, self.container.add_stream(codec, rate=round(fps), options=options)
        )
        self.stream.width, self.stream.height = width + width % 2, height + height % 2
        self.stream.pix_fmt = "rgb8" if gif else "yuv420p"
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        pad = (
            (0, self.stream.height - rgb.shape[0]),
            (0, self.stream.width - rgb.shape[1]),
            (0, 0),
        )
        frame = av.VideoFrame.from_ndarray(np.pad(rgb, pad), format="rgb24")
        self.container.mux(self.stream.encode(frame))
        self.frames += 1

    def close(self) -> None:
        self.container.mux(self.stream.encode(None))
        self.container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
