"""One bag -> one part store, in a single streaming pass (the unit of work of a worker process).

Per message: cameras and joint states keep their raw bytes (the stamp is read from the CDR
header without decoding) and are decoded only if a frame uses them (images by the writer,
joints by ``joints.JointDecoder``); commands (a few Hz) are decoded at once; markers feed
the episode builder. After each message, the timeline returns the ticks every stream has
resolved, and the builder turns them into frames. The bag's BLAKE3 digest is computed alongside,
on its own thread (blake3 releases the GIL: it runs on a second core while there is one).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from blake3 import blake3

from .bags import Bag, Topic
from .config import ConvertConfig
from .cores import CpuSample, core_free, cpu_sample
from .episodes import COMMAND, JOINTS, EpisodeBuilder
from .errors import BagError
from .joints import JointDecoder, JointSample
from .messages import (
    CAMERA_TYPES,
    COMMAND_TYPES,
    JOINT_STATE,
    FieldError,
    camera_frame,
    command_kind,
    command_names,
    command_vector,
    header_stamp,
    marker_event,
)
from .resample import StampsBackwards, Stream, Timeline
from .writer import PartWriter


class Progress(Protocol):
    """Where a conversion reports how far it got (``convert.Sink``)."""

    def start(self, total: int) -> None: ...

    def __call__(self, n: int) -> None: ...


# Frames to write from which they are compressed in a second process: measured on the bench
# bag (bench/convert_throughput.py, 300 s), 6,000 frames took 0.73 s in-process and 0.78 s
# with it, 18,000 frames 1.31 s and 1.18 s (its start and hand-offs cost more than it saves
# on fewer frames).
OFFLOAD_MIN_FRAMES = 10_000
HASH_BLOCK = 16 << 20  # bytes the hasher reads at a time


_CLOCK_SPLIT_NS = 600 * 10**9  # header vs receive clocks further apart than this: sim time


def dataset_spec(
    cfg: ConvertConfig, action_names: tuple[str, ...] | None, action_kind: str = "unknown"
) -> dict[str, Any]:
    """What makes two conversions appendable: grid, images, keys and their meaning."""
    lowdim: dict[str, list[str]] = {}
    if cfg.joints:
        lowdim["joint_pos"] = list(cfg.joints.names)
        if cfg.joints.velocity:
            lowdim["joint_vel"] = list(cfg.joints.names)
        if cfg.joints.effort:
            lowdim["joint_effort"] = list(cfg.joints.names)
    if action_names:
        lowdim["action"] = list(action_names)
    return {
        "fps": cfg.fps,
        "image_size": cfg.image_size,
        "cameras": list(cfg.cameras),
        "lowdim": lowdim,
        "action_source": cfg.action.source,
        **({"action_kind": action_kind} if action_names else {}),
    }


def derived_action(cfg: ConvertConfig) -> tuple[tuple[str, ...] | None, str] | None:
    """Action names and kind when the config derives actions from the joint states, else None
    (no actions, or a command topic's: the bags decide those)."""
    if cfg.action.source not in ("next_positions", "deltas"):
        return None
    names = cfg.joints.names if cfg.joints else None
    return names, "positions" if cfg.action.source == "next_positions" else "deltas"


def config_spec(cfg: ConvertConfig) -> dict[str, Any]:
    """The dataset spec a config fixes before any bag is read (what ``--append`` checks)."""
    return dataset_spec(cfg, *(derived_action(cfg) or (None, "unknown")))


def file_digest(path: Path) -> dict[str, Any]:
    """BLAKE3 and size over a bag's files (metadata.yaml + storage) or a single file: a content
    identity (duplicates are refused by it). Big blocks, as reading and hashing each release the
    GIL: sha256 in 1 MiB blocks took ~3x the CPU and a GIL hand-off per block from the reader."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest, size = blake3(), 0
    block = memoryview(bytearray(HASH_BLOCK))
    for file in files:
        digest.update(file.name.encode())
        with file.open("rb", buffering=0) as f:
            while n := f.readinto(block):
                digest.update(block[:n])
                size += n
    return {"blake3": digest.hexdigest(), "bytes": size}


class CameraDecoder:
    """Decodes one camera's raw messages; the source resolution may not change mid-bag."""

    def __init__(self, bag: Bag, topic: Topic, size: int, crop: Any) -> None:
        self.bag, self.topic, self.size, self.crop = bag, topic, size, crop
        self.source: tuple[int, int] | None = None

    def __call__(self, raw: bytes) -> np.ndarray:
        # A memoryview: rosbags slices the bytes it is given (a copy of the whole image), while
        # a view's slice is free, and the pixels stay a view until the image is converted.
        msg = _decode(self.bag, memoryview(raw), self.topic)
        try:
            frame, source = camera_frame(msg, self.topic.msgtype, self.size, self.crop)
        except FieldError as e:
            raise BagError(self.bag.name, e.detail, self.topic.name, e.field) from None
        if self.source is None:
            self.source = source
        elif source != self.source:
            (h0, w0), (h, w) = self.source, source
            raise BagError(
                self.bag.name,
                f"image size changed mid-bag from {w0}x{h0} to {w}x{h}",
                self.topic.name,
                "height/width",
            )
        return frame


class CameraSample:
    """One camera message; a frame job that decodes it (once, when the writer takes it)."""

    __slots__ = ("raw", "decoder")

    def __init__(self, raw: bytes, decoder: CameraDecoder) -> None:
        self.raw, self.decoder = raw, decoder

    def __call__(self) -> np.ndarray:
        return self.decoder(self.raw)


def _receive_time(raw: bytes, recv_ns: int) -> int:
    """The stamp of a message stamped by receive time."""
    return recv_ns


def _decode(bag: Bag, raw: bytes | memoryview, topic: Topic) -> Any:
    try:
        return bag.deserialize(raw, topic.msgtype)
    except Exception as e:  # damaged message bytes: generated deserialisers raise anything
        raise BagError(
            bag.name, f"cannot decode message ({type(e).__name__}: {e})", topic.name
        ) from None


class BagConverter:
    """State of one bag's pass: handlers per topic, the timeline and the episode builder."""

    def __init__(
        self,
        bag: Bag,
        cfg: ConvertConfig,
        part: Path,
        converter: dict[str, Any],
        cpu_since: CpuSample | None = None,
    ) -> None:
        """``cpu_since``: where the window that decides on a second process starts (opening
        the bag runs in it instead of a wait)."""
        self.bag, self.cfg = bag, cfg
        if not bag.count:
            raise BagError(bag.name, "empty bag: no messages")
        self.timeline = Timeline(cfg.fps, clock=next(iter(cfg.cameras)))
        self.handlers: dict[str, Callable[[int, bytes], None]] = {}
        self.unnormalized_stamps = 0
        self._clocks_checked = False
        for name, cam in cfg.cameras.items():
            topic = bag.require(cam.topic, CAMERA_TYPES, f"camera {name!r}")
            self._camera(name, topic, CameraDecoder(bag, topic, cfg.image_size, cam.crop))
        self.joints: JointDecoder | None = None
        self._last_joint: JointSample | None = None
        if cfg.joints:
            self._joints(bag.require(cfg.joints.topic, (JOINT_STATE,), "joints"))
        action_names, action_kind = self._command()
        if cfg.episodes.marker_topic:
            self._marker(bag.require(cfg.episodes.marker_topic, None, "marker"))
        spec = dataset_spec(cfg, action_names, action_kind)
        self.writer = PartWriter(part, spec, converter)
        self.episodes = EpisodeBuilder(cfg, self.writer, COMMAND in self.timeline.streams)
        if self._frames_to_write() >= OFFLOAD_MIN_FRAMES and core_free(cpu_since):
            self.writer.offload_frames()
        # Hashing reads the whole bag again: on its own thread, overlapping the pass (started
        # after the store: zarr's thread hand-offs took 3x longer beside it).
        self._hasher = ThreadPoolExecutor(1)
        self._digest = self._hasher.submit(file_digest, bag.path)

    def _frames_to_write(self) -> int:
        """About how many frames the cameras give on the grid (a tick each, or a message each)."""
        ticks = (self.bag.end_ns - self.bag.start_ns) / 1e9 * self.cfg.fps + 1
        counts = (self.bag.topics[c.topic].count for c in self.cfg.cameras.values())
        return sum(min(n, round(ticks)) for n in counts)

    # ----- handlers -----------------------------------------------------------------------------
    def _by_receive(self, topic: Topic) -> bool:
        """Stamped by receive time: headerless types, or ``time_source: receive``."""
        return self.cfg.time_source == "receive" or not topic.has_header

    def _stamper(self, topic: Topic) -> Callable[[bytes, int], int]:
        """``(raw, receive ns) -> stamp`` of the topic's messages (chosen once per topic)."""
        return _receive_time if self._by_receive(topic) else self._header_time

    def _header_time(self, raw: bytes, recv_ns: int) -> int:
        """Header stamp, read without decoding (receive time if it is zero)."""
        sec, nanosec = header_stamp(raw)
        if nanosec >= 1_000_000_000:
            self.unnormalized_stamps += 1
        stamp = sec * 1_000_000_000 + nanosec  # (stamp_ns, inline: it runs per message)
        if stamp <= 0:
            return recv_ns
        if not self._clocks_checked:
            self._check_clocks(recv_ns - stamp)
        return stamp

    def _stream(self, name: str, topic: Topic, skew: float | None) -> Stream:
        return self.timeline.add(name, self.cfg.skew_ns(skew), self._by_receive(topic))

    def _camera(self, name: str, topic: Topic, decoder: CameraDecoder) -> None:
        push = self._stream(name, topic, self.cfg.cameras[name].max_skew).push
        stamp_of = self._stamper(topic)

        def on_camera(recv_ns: int, raw: bytes) -> None:
            push(stamp_of(raw, recv_ns), CameraSample(raw, decoder), recv_ns)

        self.handlers[topic.name] = on_camera

    def _joints(self, topic: Topic) -> None:
        assert self.cfg.joints
        joints = self.cfg.joints
        fields = ("position",) + ("velocity",) * joints.velocity + ("effort",) * joints.effort
        decoder = self.joints = JointDecoder(
            joints.names, fields, lambda raw: _decode(self.bag, raw, topic), self.bag.name,
            topic.name,
        )  # fmt: skip
        push = self._stream(JOINTS, topic, joints.max_skew).push
        stamp_of = self._stamper(topic)
        tolerance, visible = self.cfg.skew_ns(joints.max_skew), 0

        def on_joints(recv_ns: int, raw: bytes) -> None:
            nonlocal visible
            stamp = stamp_of(raw, recv_ns)
            # Publishers sharing the topic may interleave slightly out of order (the decoder
            # checks each one's stamps); more than the skew tolerance is a clock going back.
            if stamp < visible - tolerance:
                raise StampsBackwards(
                    f"stamps go backwards: {stamp / 1e9:.6f} s after {visible / 1e9:.6f} s"
                )
            self._last_joint = decoder.sample(raw, stamp, self._last_joint)
            if stamp > visible:
                visible = stamp
            push(visible, self._last_joint, recv_ns)

        self.handlers[topic.name] = on_joints

    def _command(self) -> tuple[tuple[str, ...] | None, str]:
        """Set up the command stream; returns the action names (None: no action key) and what
        the actions are (``PolicySpec.action_kind``)."""
        action, joints = self.cfg.action, self.cfg.joints
        joint_names = joints.names if joints else None
        derived = derived_action(self.cfg)
        if derived:
            return derived
        if action.source == "none" or action.topic is None:
            return None, "unknown"
        if action.topic not in self.bag.topics or not self.bag.topics[action.topic].count:
            self.bag.problems.append(f"{action.topic}: command topic absent: action-free episodes")
            names = action.names or joint_names
            return names, command_kind(None, names or (), joint_names or ())
        topic = self.bag.require(action.topic, COMMAND_TYPES, "command")
        try:
            names = command_names(topic.msgtype, action.names, joint_names)
        except FieldError as e:
            raise BagError(self.bag.name, e.detail, topic.name, e.field) from None
        push = self._stream(COMMAND, topic, action.max_skew).push
        stamp_of = self._stamper(topic)

        def on_command(recv_ns: int, raw: bytes) -> None:
            vector = command_vector(_decode(self.bag, raw, topic), topic.msgtype, names)
            push(stamp_of(raw, recv_ns), vector, recv_ns)

        self.handlers[topic.name] = on_command
        return names, command_kind(topic.msgtype, names, joint_names or ())

    def _marker(self, topic: Topic) -> None:
        stamp_of = self._stamper(topic)

        def on_marker(recv_ns: int, raw: bytes) -> None:
            start, task = marker_event(_decode(self.bag, raw, topic), topic.msgtype)
            self.episodes.marker(stamp_of(raw, recv_ns), start, task)

        self.handlers[topic.name] = on_marker

    # ----- the pass -----------------------------------------------------------------------------
    def run(self, progress: Progress | None = None) -> dict[str, Any]:
        """Read every needed message once; returns the bag's report."""
        done, timeline, handlers, add = 0, self.timeline, self.handlers, self.episodes.add
        if progress:
            progress.start(sum(self.bag.topics[t].count for t in self.handlers))
        try:
            for topic, recv_ns, raw in self.bag.messages(list(handlers)):
                try:
                    handlers[topic](recv_ns, raw)
                except FieldError as e:
                    raise BagError(self.bag.name, e.detail, topic, e.field) from None
                except StampsBackwards as e:
                    raise BagError(self.bag.name, str(e), topic, "header.stamp") from None
                timeline.now = recv_ns  # the receive clock: how far silent streams have got
                for tick in timeline.ready():
                    add(*tick)
                done += 1
                if progress and not done % 256:
                    progress(256)
            self.timeline.finish()
            for tick in self.timeline.ready():
                self.episodes.add(*tick)
            self.episodes.close_episode()
            if self.joints:
                self.joints.require_complete(self._last_joint)
            report = self._report()
            source = {"path": str(Path(self.bag.name).absolute()), "kind": "rosbag2"}
            self.writer.close(report, {**source, **self._digest.result()})
        except BaseException:
            self.writer.abort()
            raise
        finally:
            self._hasher.shutdown(wait=False, cancel_futures=True)
        if progress:
            progress(done % 256)
        return report

    def _check_clocks(self, offset_ns: int) -> None:
        """Header and receive clocks must agree when some streams only have receive times."""
        self._clocks_checked = True
        by_receive = any(s.by_receive for s in self.timeline.streams.values())
        if by_receive and abs(offset_ns) > _CLOCK_SPLIT_NS:
            raise BagError(
                self.bag.name,
                f"header stamps are {offset_ns / 1e9:.0f} s away from receive times (sim time?) "
                "while some streams only have receive times; set time_source: receive",
            )

    def _report(self) -> dict[str, Any]:
        built = self.episodes.report()
        streams = {}
        for name, stream in self.timeline.streams.items():
            streams[name] = {**stream.stats.to_dict(), **built["streams"].get(name, {})}
        warnings = list(self.bag.problems)
        if self.unnormalized_stamps:
            warnings.append(f"{self.unnormalized_stamps} header stamps with nanosec >= 1e9")
        return {
            "source": self.bag.name,
            "storage": self.bag.storage,
            "compression": self.bag.compression,
            "duration_s": round((self.bag.end_ns - self.bag.start_ns) / 1e9, 3),
            "messages": self.bag.count,
            "frames": self.writer.n,
            "episodes": self.writer.num_episodes,
            "action": self.episodes.derived or ("command" if self.episodes.has_action else "none"),
            **{k: v for k, v in built.items() if k != "streams"},
            "streams": streams,
            "warnings": warnings,
        }


def convert_bag(
    path: Path,
    cfg: ConvertConfig,
    allow_missing_files: bool,
    part: Path,
    converter: dict[str, Any],
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Convert one bag into a part store at ``part``; returns its report. A split bag with
    storage files missing is refused unless ``allow_missing_files`` (then: the files present)."""
    since = cpu_sample()
    with Bag(path, cfg.typestore, allow_missing_files) as bag:
        return BagConverter(bag, cfg, part, converter, since).run(progress)
