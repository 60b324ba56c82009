"""Test helpers for the data pipeline: real rosbag2 files written with rosbags' Writer.

Messages are given as ``(topic, receive_ns, message)``; ``message`` is a rosbags message object
or a ``Raw`` (type name, definition, bytes) for types the typestore does not know. Helpers below
also reproduce the messy field cases: old metadata versions, old sqlite layouts, ROS 1-style
type names, edited QoS text, truncated files.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

TS = get_typestore(Stores.ROS2_HUMBLE)
T = TS.types
JOINTS = ("shoulder", "elbow", "wrist")


@dataclass(frozen=True)
class Raw:
    """A message the typestore cannot build: its type name, definition text and CDR bytes."""

    msgtype: str
    msgdef: str
    data: bytes


Message = tuple[str, int, Any]


def header(ns: int, frame_id: str = "") -> Any:
    return T["std_msgs/msg/Header"](
        stamp=T["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9),
        frame_id=frame_id,
    )


def image_msg(ns: int, rgb: np.ndarray, encoding: str = "rgb8", row_pad: int = 0) -> Any:
    """sensor_msgs/Image holding ``rgb`` (H, W, 3) in ``encoding``; ``row_pad`` extra bytes/row."""
    h, w = rgb.shape[:2]
    gray = rgb[..., 0]
    pixels = {
        "rgb8": rgb,
        "bgr8": rgb[..., ::-1],
        "rgba8": np.dstack([rgb, np.full((h, w), 255, np.uint8)]),
        "bgra8": np.dstack([rgb[..., ::-1], np.full((h, w), 255, np.uint8)]),
        "mono8": gray,
        "mono16": gray.astype("<u2") * 257,
    }.get(encoding, rgb)
    rows = np.ascontiguousarray(pixels).view(np.uint8).reshape(h, -1)
    rows = np.pad(rows, ((0, 0), (0, row_pad)))
    return T["sensor_msgs/msg/Image"](
        header=header(ns),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=rows.shape[1],
        data=rows.ravel(),
    )


def compressed_msg(ns: int, rgb: np.ndarray, fmt: str = "png") -> Any:
    ok, buf = cv2.imencode(f".{fmt}", rgb[..., ::-1])
    assert ok
    return T["sensor_msgs/msg/CompressedImage"](
        header=header(ns), format=f"rgb8; {fmt} compressed bgr8", data=buf.ravel()
    )


def joint_state_msg(
    ns: int,
    names: Sequence[str],
    positions: Sequence[float],
    velocities: Sequence[float] = (),
    efforts: Sequence[float] = (),
) -> Any:
    return T["sensor_msgs/msg/JointState"](
        header=header(ns),
        name=list(names),
        position=np.asarray(positions, np.float64),
        velocity=np.asarray(velocities, np.float64),
        effort=np.asarray(efforts, np.float64),
    )


def trajectory_msg(ns: int, names: Sequence[str], positions: Sequence[float]) -> Any:
    empty = np.zeros(0, np.float64)
    point = T["trajectory_msgs/msg/JointTrajectoryPoint"](
        positions=np.asarray(positions, np.float64),
        velocities=empty,
        accelerations=empty,
        effort=empty,
        time_from_start=T["builtin_interfaces/msg/Duration"](sec=0, nanosec=100_000_000),
    )
    return T["trajectory_msgs/msg/JointTrajectory"](
        header=header(ns), joint_names=list(names), points=[point]
    )


def float_array_msg(values: Sequence[float]) -> Any:
    layout = T["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
    return T["std_msgs/msg/Float64MultiArray"](layout=layout, data=np.asarray(values, np.float64))


def twist_msg(linear: Sequence[float], angular: Sequence[float]) -> Any:
    vec = T["geometry_msgs/msg/Vector3"]
    return T["geometry_msgs/msg/Twist"](linear=vec(*linear), angular=vec(*angular))


def bool_msg(value: bool) -> Any:
    return T["std_msgs/msg/Bool"](data=value)


def string_msg(value: str) -> Any:
    return T["std_msgs/msg/String"](data=value)


def write_bag(
    path: Path,
    messages: Iterable[Message],
    storage: str = "sqlite3",
    compression: str | None = None,
    version: int = 9,
    ros1_names: bool = False,
) -> Path:
    """Write messages (sorted by receive time) to a rosbag2 bag; one connection per topic.

    ``compression``: None, "message", "file" (zstd) or "storage" (mcap chunk compression).
    ``ros1_names``: record type names as ``pkg/Type``, as bags bridged from ROS 1 do.
    """
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    writer = Writer(path, version=version, storage_plugin=plugin)  # type: ignore[arg-type]
    modes = {
        "message": CompressionMode.MESSAGE,
        "file": CompressionMode.FILE,
        "storage": CompressionMode.STORAGE,
    }
    if compression:
        writer.set_compression(modes[compression], CompressionFormat.ZSTD)
    connections: dict[str, Any] = {}
    with writer:
        for topic, recv_ns, msg in sorted(messages, key=lambda m: m[1]):
            raw = isinstance(msg, Raw)
            msgtype = msg.msgtype if raw else msg.__msgtype__
            if topic not in connections:
                msgdef = msg.msgdef if raw else TS.generate_msgdef(msgtype, ros_version=2)[0]
                name = msgtype.replace("/msg/", "/") if ros1_names else msgtype
                connections[topic] = writer.add_connection(
                    topic, name, msgdef=msgdef, rihs01="RIHS01_" + "0" * 64
                )
            data = msg.data if raw else TS.serialize_cdr(msg, msgtype)
            writer.write(connections[topic], recv_ns, data)
    return path


# ----- messy field bags -------------------------------------------------------------------------
def edit_metadata(bag: Path, **changes: Any) -> dict[str, Any]:
    """Rewrite metadata.yaml: top-level keys set (None deletes); returns the new info dict."""
    meta_path = bag / "metadata.yaml"
    meta = yaml.safe_load(meta_path.read_text())
    info = meta["rosbag2_bagfile_information"]
    for key, value in changes.items():
        if value is None:
            info.pop(key, None)
        else:
            info[key] = value
    meta_path.write_text(yaml.safe_dump(meta))
    return dict(info)


def downgrade_metadata(bag: Path, version: int) -> None:
    """Metadata as Foxy/Galactic wrote it (v4, v5): no hashes, custom data or distro."""
    info = edit_metadata(
        bag, version=version, custom_data=None, ros_distro=None, files=None if version < 5 else []
    )
    for topic in info["topics_with_message_count"]:
        topic["topic_metadata"].pop("type_description_hash", None)
    edit_metadata(bag, topics_with_message_count=info["topics_with_message_count"])


def downgrade_sqlite(bag: Path, with_qos: bool = True) -> None:
    """Rewrite the .db3 in the pre-Humble layout: no schema/metadata/message_definitions tables.

    ``with_qos=False`` drops the topics' QoS column too (Dashing/Eloquent layout).
    """
    (db,) = bag.glob("*.db3")
    old = db.with_suffix(".old")
    db.rename(old)
    src, dst = sqlite3.connect(old), sqlite3.connect(db)
    qos_col = ", offered_qos_profiles TEXT NOT NULL" if with_qos else ""
    dst.executescript(
        "CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL, "
        f"serialization_format TEXT NOT NULL{qos_col});"
        "CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL, "
        "timestamp INTEGER NOT NULL, data BLOB NOT NULL);"
    )
    cols = "id, name, type, serialization_format" + (", offered_qos_profiles" if with_qos else "")
    marks = ", ".join("?" * len(cols.split(",")))
    dst.executemany(
        f"INSERT INTO topics VALUES ({marks})", src.execute(f"SELECT {cols} FROM topics")
    )
    dst.executemany(
        "INSERT INTO messages VALUES (?, ?, ?, ?)",
        src.execute("SELECT id, topic_id, timestamp, data FROM messages"),
    )
    dst.commit()
    src.close()
    dst.close()
    old.unlink()


def split_bag(path: Path, messages: list[Message], parts: int = 2) -> Path:
    """A split mcap bag (as ``ros2 bag record --max-bag-duration`` writes): ``parts`` storage
    files of consecutive receive-time ranges under one metadata.yaml."""
    ordered = sorted(messages, key=lambda m: m[1])
    size = -(-len(ordered) // parts)
    path.mkdir()
    metas = []
    for i in range(parts):
        bag = write_bag(path / f"part{i}", ordered[i * size : (i + 1) * size], storage="mcap")
        storage_file(bag).rename(path / f"{path.name}_{i}.mcap")
        metas.append(yaml.safe_load((bag / "metadata.yaml").read_text()))
        (bag / "metadata.yaml").unlink()
        bag.rmdir()
    infos = [m["rosbag2_bagfile_information"] for m in metas]
    info = infos[0]
    info["relative_file_paths"] = [f"{path.name}_{i}.mcap" for i in range(parts)]
    info["files"] = [
        {**part["files"][0], "path": f"{path.name}_{i}.mcap"} for i, part in enumerate(infos)
    ]
    counts: dict[str, int] = {}
    for part in infos:
        for topic in part["topics_with_message_count"]:
            name = topic["topic_metadata"]["name"]
            counts[name] = counts.get(name, 0) + topic["message_count"]
    for topic in info["topics_with_message_count"]:
        topic["message_count"] = counts[topic["topic_metadata"]["name"]]
    info["message_count"] = sum(counts.values())
    end = (
        infos[-1]["starting_time"]["nanoseconds_since_epoch"] + infos[-1]["duration"]["nanoseconds"]
    )
    info["duration"] = {"nanoseconds": end - info["starting_time"]["nanoseconds_since_epoch"]}
    (path / "metadata.yaml").write_text(yaml.safe_dump(metas[0]))
    return path


def truncate(path: Path, fraction: float = 0.6) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def storage_file(bag: Path) -> Path:
    (file,) = [p for p in bag.iterdir() if p.suffix in (".db3", ".mcap", ".zstd")]
    return file


# ----- synthetic robot recordings ---------------------------------------------------------------
def frame_image(index: int, camera: int, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    """A constant colour that encodes the frame and camera (exact through resize and crop)."""
    color = ((index * 7) % 251, (index * 13 + 50 * camera) % 251, (camera * 90 + 3) % 251)
    return np.broadcast_to(np.array(color, np.uint8), (*size, 3)).copy()


T0 = 1_700_000_000 * 10**9  # recordings start here (ns since the epoch)


def joint_positions(t_ns: int) -> np.ndarray:
    """Smooth and distinct per joint, in float32 range (time relative to T0)."""
    t = (t_ns - T0) / 1e9
    return np.array([np.sin(t), np.cos(2 * t), 0.5 * t], np.float64)


def robot_messages(
    seconds: float = 2.0,
    t0: int = T0,
    camera_hz: float | Sequence[float] = 30.0,
    joint_hz: float = 250.0,
    command_hz: float = 10.0,
    cameras: Sequence[str] = ("front", "wrist"),
    drop: Sequence[int] = (17,),
    jitter_ns: int = 2_000_000,
    seed: int = 0,
) -> list[Message]:
    """A multi-camera, multi-rate recording with jittered stamps and dropped camera frames.

    Cameras at ``camera_hz`` (one rate, or one per camera; frame ``i`` of camera ``c`` shows
    ``frame_image(i, c)``; indices in ``drop`` are missing on the first camera), joint states at
    ``joint_hz`` with names in a scrambled order, JointTrajectory commands at ``command_hz``.
    Receive time = stamp + latency.
    """
    rng = np.random.default_rng(seed)
    msgs: list[Message] = []

    def stamps(hz: float) -> list[int]:
        n = int(seconds * hz)
        base = t0 + (np.arange(n) * 1e9 / hz).astype(np.int64)
        return sorted(int(s) for s in base + rng.integers(-jitter_ns, jitter_ns + 1, n))

    for c, cam in enumerate(cameras):
        topic = f"/{cam}/image_raw"
        cam_stamps = stamps(camera_hz if isinstance(camera_hz, (int, float)) else camera_hz[c])
        kept = [(i, s) for i, s in enumerate(cam_stamps) if not (c == 0 and i in drop)]
        for i, s in kept:
            msgs.append((topic, s + 5_000_000, image_msg(s, frame_image(i, c))))
    order = [2, 0, 1]  # messages list joints in another order than the config
    for s in stamps(joint_hz):
        q = joint_positions(s)
        msgs.append(
            (
                "/joint_states",
                s + 1_000_000,
                joint_state_msg(s, [JOINTS[i] for i in order], q[order]),
            )
        )
    for s in stamps(command_hz):
        msgs.append(("/command", s + 1_000_000, trajectory_msg(s, JOINTS, joint_positions(s) + 1)))
    return msgs


def camera_messages(stamps: Sequence[int], topic: str = "/front/image_raw") -> list[Message]:
    """One camera's frames at these stamps (frame i shows ``frame_image(i, 0)``), received 5 ms
    later."""
    return [(topic, s + 5_000_000, image_msg(s, frame_image(i, 0))) for i, s in enumerate(stamps)]


def jittered(count: int, hz: float, jitter_ns: int = 1_000_000, seed: int = 0) -> list[int]:
    """``count`` stamps at ``hz`` from T0, each moved by up to +-``jitter_ns`` (uniform)."""
    rng = np.random.default_rng(seed)
    base = T0 + np.round(np.arange(count) * 1e9 / hz).astype(np.int64)
    return (base + rng.integers(-jitter_ns, jitter_ns + 1, count)).tolist()


def frame_indices(frames: Iterable[np.ndarray]) -> list[int]:
    """Which ``frame_image(i, 0)`` each stored frame shows (i modulo 251: colours repeat)."""
    inverse = pow(7, -1, 251)
    return [int(frame[0, 0, 0]) * inverse % 251 for frame in frames]


def convert_config(tmp_path: Path, **overrides: Any) -> Path:
    """Write a convert config for ``robot_messages`` bags (overrides replace top-level keys)."""
    cfg: dict[str, Any] = {
        "fps": 10,
        "image_size": 32,
        "max_skew": 0.05,
        "cameras": {
            "front": {"topic": "/front/image_raw"},
            "wrist": {"topic": "/wrist/image_raw"},
        },
        "joints": {"topic": "/joint_states", "names": list(JOINTS)},
        "action": {"source": "command", "topic": "/command", "max_skew": 0.15},
    }
    cfg.update(overrides)
    path = tmp_path / "convert.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def encode_mp4(path: Path, frames: Sequence[np.ndarray], fps: int = 15) -> Path:
    """Encode RGB frames to an mp4 (lossless-ish: high quality x264) for video-source tests."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"qp": "0"})
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv444p"
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def convert(
    bags: Sequence[Path],
    out: Path,
    config: Path,
    append: bool = False,
    workers: int = 1,
    progress: bool = False,
    allow_losses: bool = False,
) -> list[dict[str, Any]]:
    """Run the conversion as ``uwm convert`` does (by default without progress bars)."""
    from uwm_training.data.config import load_config
    from uwm_training.data.convert import bag_jobs, build_dataset
    from uwm_training.data.extract import config_spec

    cfg = load_config(config)
    jobs = bag_jobs(bags, cfg)
    spec = config_spec(cfg)
    return build_dataset(jobs, out, append, workers, spec, progress, allow_losses)


def leftovers(folder: Path) -> list[Path]:
    """Temp dirs a failed conversion might have left next to its output."""
    return [p for p in folder.iterdir() if ".tmp-" in p.name or p.name.endswith(".parts")]
