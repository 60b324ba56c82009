"""Conversion config: YAML -> dataclasses validated in ``__post_init__``.

Errors name the file and the key (``convert.yaml: cameras.front.topic: ...``). A documented
example is ``config/convert.yaml``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

# Low-dim keys of the store; camera names share the ``data/`` namespace, so they may not use them.
LOWDIM_KEYS = ("joint_pos", "joint_vel", "joint_effort", "action")
ACTION_SOURCES = ("command", "next_positions", "deltas", "none")
TIME_SOURCES = ("header", "receive")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _topic(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigError(f"{key}: must be a topic name starting with '/', got {value!r}")
    return value


def _seconds(value: float | None, key: str) -> None:
    if value is not None and not value > 0:
        raise ConfigError(f"{key}: must be > 0 seconds, got {value!r}")


@dataclass
class CameraConfig:
    """One camera stream.

    Args:
        topic: a sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8, mono16) or
            sensor_msgs/CompressedImage (jpeg, png) topic.
        crop: optional ``[x, y, width, height]`` in source pixels, cut before the resize and
            centre crop to ``image_size`` (e.g. to drop a strip that shows the robot base).
        max_skew: this stream's tolerance in seconds; ``None`` uses the top-level ``max_skew``.
    """

    topic: str
    crop: tuple[int, int, int, int] | None = None
    max_skew: float | None = None

    def __post_init__(self) -> None:
        _topic(self.topic, "topic")
        if self.crop is not None:
            crop = tuple(self.crop)
            if len(crop) != 4 or not all(isinstance(v, int) and v >= 0 for v in crop):
                raise ConfigError(f"crop: must be [x, y, width, height] integers, got {crop}")
            if crop[2] == 0 or crop[3] == 0:
                raise ConfigError(f"crop: width and height must be > 0, got {crop}")
            self.crop = crop  # type: ignore[assignment]
        _seconds(self.max_skew, "max_skew")


@dataclass
class JointsConfig:
    """Joint states: which joints, in which order, and which fields become low-dim keys.

    Args:
        topic: sensor_msgs/JointState topic; messages may list joints in any order or only some
            of them (several publishers): values are merged per joint by name.
        names: joints in dataset order -> ``joint_pos`` (and ``joint_vel``/``joint_effort``).
        velocity: also store velocities as ``joint_vel``.
        effort: also store efforts as ``joint_effort``.
        max_skew: this stream's tolerance in seconds (default: top-level ``max_skew``).
    """

    topic: str
    names: tuple[str, ...]
    velocity: bool = False
    effort: bool = False
    max_skew: float | None = None

    def __post_init__(self) -> None:
        _topic(self.topic, "topic")
        self.names = tuple(self.names or ())
        if not self.names or len(set(self.names)) != len(self.names):
            raise ConfigError(f"names: must list unique joint names, got {list(self.names)}")
        _seconds(self.max_skew, "max_skew")


@dataclass
class ActionConfig:
    """Where actions come from.

    Args:
        source: ``command`` (a topic of sensor_msgs/JointState, trajectory_msgs/JointTrajectory
            (first point), std_msgs/Float64MultiArray or geometry_msgs/Twist), ``next_positions``
            (joint positions one frame later), ``deltas`` (next minus current joint positions)
            or ``none`` (every episode is action-free). Bags without the command topic become
            action-free episodes.
        topic: the command topic (``source: command`` only).
        names: JointState/JointTrajectory: joints to pick by name (default ``joints.names``);
            Float64MultiArray: one label per element (required, fixes the size); Twist: unused.
        max_skew: tolerance in seconds; commands are often slower than the frame rate, so this
            is usually larger than the cameras' (a command serves the ticks nearest to it).
    """

    source: str = "none"
    topic: str | None = None
    names: tuple[str, ...] | None = None
    max_skew: float | None = None

    def __post_init__(self) -> None:
        if self.source not in ACTION_SOURCES:
            raise ConfigError(f"source: must be one of {list(ACTION_SOURCES)}, got {self.source!r}")
        if self.source == "command":
            _topic(self.topic, "topic")
        elif self.topic is not None:
            raise ConfigError(f"topic: only used with source 'command', not {self.source!r}")
        if self.names is not None:
            self.names = tuple(self.names)
        _seconds(self.max_skew, "max_skew")


@dataclass
class EpisodeConfig:
    """How a bag is cut into episodes (default: one episode per bag).

    Args:
        marker_topic: every message on this topic starts a new episode; std_msgs/Bool ``false``
            ends one (frames until the next ``true`` are discarded); std_msgs/String sets the
            task text of the episode it starts.
        split_gap: a run of frames outside the skew tolerance at least this long (seconds)
            splits the episode; shorter runs are dropped frames. ``None``: never split.
        min_frames: shorter episodes are discarded (and reported).
    """

    marker_topic: str | None = None
    split_gap: float | None = None
    min_frames: int = 1

    def __post_init__(self) -> None:
        if self.marker_topic is not None:
            _topic(self.marker_topic, "marker_topic")
        if self.split_gap is not None and self.split_gap < 0:
            raise ConfigError(f"split_gap: must be >= 0 seconds, got {self.split_gap}")
        if not isinstance(self.min_frames, int) or self.min_frames < 1:
            raise ConfigError(f"min_frames: must be an integer >= 1, got {self.min_frames!r}")


@dataclass
class ConvertConfig:
    """A rosbag2 -> dataset mapping.

    Args:
        fps: the dataset's frame grid; every stream is resampled onto it.
        image_size: square side of stored frames (resize the short side, centre crop).
        cameras: name -> camera stream; names become ``data/<name>`` arrays.
        joints: joint states (``None``: no proprio, e.g. camera-only bags).
        action: the action source.
        episodes: episode splitting.
        time_source: ``header`` (header.stamp; receive time for headerless types and zero
            stamps) or ``receive`` (bag receive time for everything).
        max_skew: seconds a stream's sample nearest to a grid tick may be from it; farther ->
            the frame is out of tolerance (dropped, or the episode split, per
            ``episodes.split_gap``). Half a period suits a camera at ``fps``.
        typestore: ROS 2 distro whose message definitions decode bags that carry none.
        video: mp4 sources converted to action-free episodes: a path (single-camera datasets)
            or a mapping camera -> path; relative paths are relative to the config file.
    """

    fps: float
    image_size: int
    cameras: dict[str, CameraConfig]
    joints: JointsConfig | None = None
    action: ActionConfig = field(default_factory=ActionConfig)
    episodes: EpisodeConfig = field(default_factory=EpisodeConfig)
    time_source: str = "header"
    max_skew: float = 0.05
    typestore: str = "humble"
    video: tuple[dict[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.fps, (int, float)) or not self.fps > 0:
            raise ConfigError(f"fps: must be > 0, got {self.fps!r}")
        if not isinstance(self.image_size, int) or self.image_size < 8:
            raise ConfigError(f"image_size: must be an integer >= 8, got {self.image_size!r}")
        if not self.cameras:
            raise ConfigError("cameras: at least one camera is required")
        for name in self.cameras:
            if not _NAME.match(str(name)) or name in LOWDIM_KEYS:
                raise ConfigError(
                    f"cameras: name {name!r} must be an identifier and not one of {LOWDIM_KEYS}"
                )
        if self.time_source not in TIME_SOURCES:
            raise ConfigError(
                f"time_source: must be one of {list(TIME_SOURCES)}, got {self.time_source!r}"
            )
        _seconds(self.max_skew, "max_skew")
        if self.action.source in ("next_positions", "deltas") and self.joints is None:
            raise ConfigError(f"action.source: {self.action.source!r} needs a joints section")
        if self.action.source == "command" and self.action.topic in self.topics(commands=False):
            raise ConfigError(f"action.topic: {self.action.topic} is already used by a stream")
        self.video = tuple(self._video_entry(v, i) for i, v in enumerate(self.video))

    def _video_entry(self, entry: Any, index: int) -> dict[str, str]:
        if isinstance(entry, str):
            if len(self.cameras) != 1:
                raise ConfigError(
                    f"video[{index}]: a plain path needs a single-camera dataset; map cameras "
                    f"to files instead, e.g. {{{', '.join(f'{c}: a.mp4' for c in self.cameras)}}}"
                )
            return {next(iter(self.cameras)): entry}
        if not isinstance(entry, dict) or set(entry) != set(self.cameras):
            raise ConfigError(
                f"video[{index}]: must map every camera {sorted(self.cameras)} to a file"
            )
        return {str(k): str(v) for k, v in entry.items()}

    def topics(self, commands: bool = True) -> list[str]:
        """Topics a bag must or may provide (cameras, joints, command, marker)."""
        topics = [c.topic for c in self.cameras.values()]
        if self.joints:
            topics.append(self.joints.topic)
        if commands and self.action.topic:
            topics.append(self.action.topic)
        if commands and self.episodes.marker_topic:
            topics.append(self.episodes.marker_topic)
        return topics

    def skew_ns(self, stream_max_skew: float | None) -> int:
        """A stream's tolerance in ns (its own, or the global one)."""
        return round((stream_max_skew or self.max_skew) * 1e9)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any], base_dir: Path | None = None) -> ConvertConfig:
        """Build and validate; ``base_dir`` resolves relative video paths."""
        data = dict(data)
        sections = {"action": ActionConfig, "episodes": EpisodeConfig}
        for key, section in sections.items():
            if key in data:
                data[key] = _build(section, data[key], key)
        if data.get("joints") is not None:
            data["joints"] = _build(JointsConfig, data["joints"], "joints")
        cams = data.get("cameras") or {}
        if not isinstance(cams, dict):
            raise ConfigError("cameras: must map camera names to {topic: ...}")
        data["cameras"] = {n: _build(CameraConfig, c, f"cameras.{n}") for n, c in cams.items()}
        cfg: ConvertConfig = _build(cls, data, "")
        if base_dir is not None:
            cfg.video = tuple(
                {cam: str(base_dir / path) for cam, path in entry.items()} for entry in cfg.video
            )
        return cfg


def load_config(path: str | Path) -> ConvertConfig:
    """Read a convert config YAML; every error names the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read config: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a YAML mapping, got {type(data).__name__}")
    try:
        return ConvertConfig.from_dict(data, base_dir=path.parent)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def _build(cls: Any, data: Any, where: str) -> Any:
    """cls(**data) with unknown/missing keys and validation errors prefixed by ``where``."""
    prefix = f"{where}." if where else ""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: must be a mapping, got {data!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key; valid keys: {sorted(names)}")
    try:
        return cls(**data)
    except TypeError as e:  # a required key is missing
        missing = re.findall(r"'(\w+)'", str(e))
        raise ConfigError(
            f"{prefix}{missing[0] if missing else ''}: required key missing"
        ) from None
    except ConfigError as e:
        raise ConfigError(f"{prefix}{e}") from None


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively (JSON/YAML friendly)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
