"""``uwm bag info --config-out``: a starting convert config from what a bag holds.

Cameras (named after their topics), the joint-state topic with the joint names its messages
carry, a command topic as the action source if there is one (else actions derived from the
joint states), and an ``fps`` every camera supports (the slowest camera's rate, at most 10, the
rate UWM's recipe uses) with ``max_skew`` half a period, so the first conversion works without
reading the docs. Rates and names come from the first ``baginfo.SAMPLE_S`` seconds.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import yaml

from .baginfo import NO_CAMERA, SAMPLE_S
from .bags import Bag, Topic
from .config import LOWDIM_KEYS, ConvertConfig
from .errors import BagError
from .messages import (
    BOOL,
    CAMERA_TYPES,
    COMMAND_TYPES,
    FLOAT_ARRAY,
    JOINT_STATE,
    STRING,
    TRAJECTORY,
    TWIST,
    header_stamp,
    stamp_ns,
)
from .resample import StreamStats

MAX_FPS = 10
_GENERIC = {"", "camera", "cameras", "image", "image_raw", "compressed", "color", "rgb", "raw"}
_COMMAND_ORDER = (TRAJECTORY, JOINT_STATE, FLOAT_ARRAY, TWIST)  # the likelier action first
MARKER_TYPES = (STRING, BOOL)
_SIM_TIME_NS = 600 * 10**9  # header stamps this far from receive times: not wall-clock time


def camera_name(topic: str, taken: set[str]) -> str:
    """A dataset key for a camera topic: its first specific path part, as an identifier."""
    parts = [p for p in topic.split("/") if p.lower() not in _GENERIC]
    name = re.sub(r"\W", "_", parts[0] if parts else "camera")
    if not name[0].isalpha() or name in LOWDIM_KEYS:
        name = f"cam_{name}"
    unique, i = name, 2
    while unique in taken:
        unique, i = f"{name}_{i}", i + 1
    return unique


def supported_fps(rates: list[float]) -> float:
    """The grid rate for cameras at ``rates``: the slowest one's, at most ``MAX_FPS``."""
    slowest = min(rates)
    if slowest >= MAX_FPS:
        return int(MAX_FPS)
    whole = round(slowest)
    return whole if whole and abs(slowest - whole) < 0.05 * slowest else round(slowest, 2)


class _Sample:
    """What the first seconds of the needed topics say: rates, joint names, first messages."""

    def __init__(self, bag: Bag, topics: list[Topic]) -> None:
        self.stats = {t.name: StreamStats() for t in topics}
        self.first: dict[str, Any] = {}
        self.joint_names: dict[str, list[str]] = {}
        self.sim_time = False
        stop = bag.start_ns + round(SAMPLE_S * 1e9) + 1
        for name, recv_ns, raw in bag.messages([t.name for t in topics], stop_ns=stop):
            self.stats[name].add(recv_ns)
            topic = bag.topics[name]
            if topic.has_header and abs(recv_ns - stamp_ns(*header_stamp(raw))) > _SIM_TIME_NS:
                self.sim_time = True
            if topic.msgtype in CAMERA_TYPES:
                continue
            msg = bag.deserialize(raw, topic.msgtype)
            self.first.setdefault(name, msg)
            if topic.msgtype == JOINT_STATE:  # several publishers: the union, in order seen
                seen = self.joint_names.setdefault(name, [])
                seen += [n for n in msg.name if n not in seen]

    def rate(self, topic: str) -> float:
        stats = self.stats[topic]
        d = stats.to_dict()
        return float(d["nominal_hz"] or d["rate_hz"] or 0.0)


def starter_config(path: str | Path, distro: str = "humble") -> tuple[dict[str, Any], list[str]]:
    """A convert config for the bag at ``path`` (validated) and notes on the choices made."""
    with Bag(path, distro, allow_missing_files=True) as bag:
        usable = [t for t in bag.topics.values() if t.known and t.count]
        cameras = [t for t in usable if t.msgtype in CAMERA_TYPES]
        if not cameras:
            raise BagError(bag.name, f"{NO_CAMERA}; no config to start from")
        states = [t for t in usable if t.msgtype == JOINT_STATE]
        joints = min(
            states, key=lambda t: (t.name != "/joint_states", "cmd" in t.name), default=None
        )
        commands = [t for t in usable if t.msgtype in COMMAND_TYPES and t is not joints]
        commands.sort(key=lambda t: _COMMAND_ORDER.index(t.msgtype))
        markers = [t.name for t in usable if t.msgtype in MARKER_TYPES and "episode" in t.name]
        sample = _Sample(bag, cameras + ([joints] if joints else []) + commands[:1])
    notes: list[str] = []
    cfg = _base(cameras, sample, notes)
    if joints is not None:
        names = sample.joint_names.get(joints.name, [])
        if names:
            cfg["joints"] = {"topic": joints.name, "names": names}
            notes.append(f"joints: {len(names)} from {joints.name}")
        else:
            notes.append(f"{joints.name}: no message in the first {SAMPLE_S:g} s; joints left out")
    cfg["action"] = _action(commands[:1], sample, cfg, notes)
    # Pauses split episodes rather than join the frames either side of them.
    cfg["episodes"] = {"marker_topic": markers[0] if markers else None, "split_gap": 0.5}
    if markers:
        notes.append(f"episodes: marked by {markers[0]}")
    ConvertConfig.from_dict(cfg)  # what we write must load
    return cfg, notes


def _base(cameras: list[Topic], sample: _Sample, notes: list[str]) -> dict[str, Any]:
    cams: dict[str, Any] = {}
    for topic in cameras:
        cams[camera_name(topic.name, set(cams))] = {"topic": topic.name}
    rates = [sample.rate(t.name) for t in cameras]
    fps = supported_fps([r for r in rates if r > 0] or [MAX_FPS])
    shown = ", ".join(f"{n} {r:.3g} Hz" for n, r in zip(cams, rates))
    notes.append(f"fps {fps:g} (cameras: {shown})")
    if sample.sim_time:
        notes.append("header stamps are far from receive times (sim time?): time_source receive")
    return {
        "fps": fps,
        "image_size": 96,
        "time_source": "receive" if sample.sim_time else "header",
        "max_skew": round(0.5 / fps, 3),
        "cameras": cams,
    }


def _action(
    commands: list[Topic], sample: _Sample, cfg: dict[str, Any], notes: list[str]
) -> dict[str, Any]:
    if not commands or commands[0].name not in sample.first:
        source = "next_positions" if "joints" in cfg else "none"
        notes.append(f"action: {source} (no command topic with messages in the first seconds)")
        return {"source": source}
    topic, msg = commands[0], sample.first[commands[0].name]
    action: dict[str, Any] = {"source": "command", "topic": topic.name}
    rate = sample.rate(topic.name)
    if rate and rate < cfg["fps"]:  # each command serves the ticks nearest to it
        action["max_skew"] = math.ceil(0.6 / rate * 1000) / 1000
    if topic.msgtype == FLOAT_ARRAY:
        action["names"] = [f"a{i}" for i in range(len(msg.data))]
    elif topic.msgtype == TRAJECTORY and list(msg.joint_names) != cfg.get("joints", {}).get(
        "names"
    ):
        action["names"] = list(msg.joint_names)
    notes.append(f"action: command from {topic.name} ({topic.msgtype}, {rate:.3g} Hz)")
    return action


def write_config(cfg: dict[str, Any], out: Path, source: str) -> None:
    """Write atomically, with a header that says where it came from."""
    text = (
        f"# A starting convert config written by `uwm bag info --config-out` from {source}.\n"
        "# Check it, then: uwm convert --config THIS.yaml --out data/NAME BAGS...\n"
        "# Every key is documented in config/convert.yaml.\n"
    ) + yaml.safe_dump(cfg, sort_keys=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, out)
