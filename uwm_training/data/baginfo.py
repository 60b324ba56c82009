"""``uwm bag info``: what a bag holds, each topic's rate from its own stamps, and its problems.

Rates come from each topic's own stamps, never from the bag's duration (a 30 Hz camera in a
short bag is 30 Hz; a single message has no rate), and the view says which clock they use: by
default the receive times of the first ``SAMPLE_S`` seconds (the whole bag when shorter);
``--scan`` reads every message and uses header stamps (receive time for headerless topics).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from .bags import Bag
from .errors import BagError
from .messages import CAMERA_TYPES, header_stamp, stamp_ns
from .report import table
from .resample import StreamStats

SAMPLE_S = 10.0  # seconds read for the quick view's rates (and a starting config)
NO_CAMERA = "no camera topic (sensor_msgs/Image or CompressedImage): cannot feed the model"


def _time(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def bag_info(path: str | Path, distro: str = "humble", scan: bool = False) -> dict[str, Any]:
    """Topics, types, counts, rates, time range, storage and problems of one bag.

    ``scan`` reads every message once: rates over the whole bag (header stamps where there are
    any), stamps going backwards, nanosec >= 1e9, and counts checked against the declared ones.
    """
    with Bag(path, distro, allow_missing_files=True) as bag:  # describe what is there
        duration = (bag.end_ns - bag.start_ns) / 1e9
        topics = {
            t.name: {"type": t.msgtype, "count": t.count, "decodable": t.known}
            for t in bag.topics.values()
        }
        problems = list(bag.problems)
        if not any(t.msgtype in CAMERA_TYPES for t in bag.topics.values()):
            problems.append(NO_CAMERA)
        if scan:
            problems += _scan(bag, topics)
            rates = "header stamps (receive time for headerless topics), whole bag"
        else:
            whole = duration <= SAMPLE_S
            _sample(bag, topics)
            rates = "receive time, " + ("whole bag" if whole else f"first {SAMPLE_S:g} s")
        return {
            "path": str(path),
            "opened": str(bag.path),
            "storage": bag.storage,
            "compression": bag.compression,
            "metadata_version": bag.version,
            "start": _time(bag.start_ns) if bag.count else None,
            "end": _time(bag.end_ns) if bag.count else None,
            "duration_s": round(duration, 3),
            "messages": bag.count,
            "rates": rates,
            "topics": topics,
            "problems": problems,
        }


def _rate(stats: StreamStats) -> dict[str, Any]:
    """A topic's rate from its own stamps (None: fewer than two messages)."""
    d = stats.to_dict()
    return {
        "rate_hz": d["rate_hz"] if stats.messages > 1 else None,
        "nominal_hz": d["nominal_hz"],
        "gaps": d["gaps"],
    }


def _sample(bag: Bag, topics: dict[str, dict[str, Any]]) -> None:
    """Rates from the receive times of the first ``SAMPLE_S`` seconds (no decoding)."""
    stats = {name: StreamStats() for name in topics}
    stop = bag.start_ns + round(SAMPLE_S * 1e9) + 1
    try:
        for name, recv_ns, _ in bag.messages(list(topics), stop_ns=stop):
            stats[name].add(recv_ns)
    except BagError:  # damaged storage: the scan says where; the quick view shows what it read
        pass
    for name, s in stats.items():
        topics[name].update(_rate(s), gaps=None)  # a sample of the bag: gaps are the scan's


def _scan(bag: Bag, topics: dict[str, dict[str, Any]]) -> list[str]:
    stats = {name: StreamStats() for name in topics}
    last = dict.fromkeys(topics, -1)
    backwards, big_nanosec, problems = dict.fromkeys(topics, 0), 0, []
    try:
        for name, recv_ns, raw in bag.messages(list(topics)):
            stamp = recv_ns
            if bag.topics[name].has_header:
                sec, nanosec = header_stamp(raw)
                big_nanosec += nanosec >= 1_000_000_000
                stamp = stamp_ns(sec, nanosec) or recv_ns
            if stamp < last[name]:
                backwards[name] += 1
            else:
                stats[name].add(stamp)
            last[name] = max(last[name], stamp)
    except BagError as e:
        problems.append(e.detail if e.topic is None else f"{e.topic}: {e.detail}")
    for name, s in stats.items():
        topics[name].update(_rate(s), clock="header" if bag.topics[name].has_header else "receive")
        if backwards[name]:
            problems.append(f"{name}: {backwards[name]} stamps go backwards")
    if big_nanosec:
        problems.append(f"{big_nanosec} header stamps with nanosec >= 1e9 (carried into seconds)")
    return problems


def format_bag_info(info: dict[str, Any]) -> str:
    version = info["metadata_version"]
    lines = [
        f"bag {info['path']}"
        + (f" (read as {info['opened']})" if info["opened"] != info["path"] else ""),
        f"  storage {info['storage']}, compression {info['compression']}, metadata "
        + (f"v{version}" if version else "none (standalone file)"),
        f"  {info['messages']} messages, {info['duration_s']} s"
        + (f", {info['start']} .. {info['end']} UTC" if info["start"] else ""),
        f"  Hz: each topic's median interval between its own stamps ({info['rates']})",
    ]
    rows = [["topic", "type", "count", "Hz", "gaps"]]
    for name, t in sorted(info["topics"].items()):
        kind = t["type"] + ("" if t["decodable"] else " (no definition)")
        hz = t["nominal_hz"] or t["rate_hz"]  # the median interval's: pauses do not count
        rate = "-" if hz is None else f"{hz:g}"
        gaps = "-" if t.get("gaps") is None else str(t["gaps"])
        rows.append([name, kind, str(t["count"]), rate, gaps])
    lines += table(rows)
    lines.append(f"  problems: {len(info['problems']) or 'none'}")
    lines += [f"  - {p}" for p in info["problems"]]
    return "\n".join(lines)
