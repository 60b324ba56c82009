"""What people read: ``uwm bag info``, the per-bag conversion report, ``uwm dataset info``.

Each view is built as a plain dict (stored in dataset attrs, or printed with ``--json``) and
formatted as aligned text.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from .bags import Bag
from .errors import BagError
from .messages import header_stamp, stamp_ns
from .resample import StreamStats
from .store import Store


def _time(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


# ----- bag info ---------------------------------------------------------------------------------
def bag_info(path: str | Path, distro: str = "humble", scan: bool = False) -> dict[str, Any]:
    """Topics, types, counts, rates, time range, storage and problems of one bag.

    ``scan`` reads every message once: exact per-topic rates (header stamps where there are
    any), stamps going backwards, nanosec >= 1e9, and counts checked against the declared ones.
    """
    with Bag(path, distro, allow_missing_files=True) as bag:  # describe what is there
        duration = (bag.end_ns - bag.start_ns) / 1e9
        topics = {
            t.name: {
                "type": t.msgtype,
                "count": t.count,
                "rate_hz": round(t.count / duration, 2) if duration > 0 else 0.0,
                "decodable": t.known,
            }
            for t in bag.topics.values()
        }
        problems = list(bag.problems)
        if scan:
            problems += _scan(bag, topics)
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
            "topics": topics,
            "problems": problems,
        }


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
        topics[name].update(s.to_dict())
        topics[name].pop("messages")
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
    ]
    rows = [["topic", "type", "count", "Hz", "gaps"]]
    for name, t in sorted(info["topics"].items()):
        kind = t["type"] + ("" if t["decodable"] else " (no definition)")
        rows.append([name, kind, str(t["count"]), f"{t['rate_hz']:g}", str(t.get("gaps", "-"))])
    lines += _table(rows)
    lines.append(f"  problems: {len(info['problems']) or 'none'}")
    lines += [f"  - {p}" for p in info["problems"]]
    return "\n".join(lines)


# ----- conversion report ------------------------------------------------------------------------
def format_report(report: dict[str, Any]) -> str:
    """One source's conversion report (rates, skews, dropped/duplicated frames)."""
    lines = [
        f"{report['source']}: {report['frames']} frames in {report['episodes']} episodes, "
        f"action {report['action']}; {report.get('dropped', 0)} frames dropped, "
        f"{report.get('splits', 0)} gap splits, {report.get('short_episodes', 0)} short "
        f"episodes discarded ({report.get('short_frames', 0)} frames)"
    ]
    rows = [["stream", "msgs", "Hz", "gaps", "max skew ms", "stale", "duplicated"]]
    for name, s in report["streams"].items():
        rows.append(
            [name, str(s["messages"]), f"{s['rate_hz']:g}", str(s["gaps"]),
             f"{s.get('max_skew_ms', 0):g}", str(s.get("stale_ticks", 0)),
             str(s.get("duplicated_ticks", 0))]
        )  # fmt: skip
    lines += _table(rows)
    lines += [f"  warning: {w}" for w in report.get("warnings", [])]
    return "\n".join(lines)


# ----- dataset info -----------------------------------------------------------------------------
def dataset_info(root: str | Path) -> dict[str, Any]:
    """Episodes, frames, fps, cameras, keys and shapes, action definition, stats, provenance."""
    store = Store(root)
    spec = store.spec
    size = spec["image_size"]
    keys = {cam: [store.num_frames, size, size, 3] for cam in spec["cameras"]}
    keys.update({k: [store.num_frames, len(v)] for k, v in spec["lowdim"].items()})
    lengths = store.episode_ends - [0, *store.episode_ends[:-1]] if store.num_episodes else []
    return {
        "path": str(root),
        "episodes": store.num_episodes,
        "frames": store.num_frames,
        "episodes_with_action": int(store.has_action.sum()),
        "episode_frames": {
            "min": int(min(lengths, default=0)),
            "max": int(max(lengths, default=0)),
        },
        "fps": spec["fps"],
        "cameras": spec["cameras"],
        "image_size": size,
        "keys": keys,
        "names": spec["lowdim"],
        "action_source": spec["action_source"],
        "tasks": store.attrs["tasks"],
        "stats": store.attrs["stats"],
        "sources": store.attrs["sources"],
        "converter": store.attrs["converter"],
    }


def format_dataset_info(info: dict[str, Any]) -> str:
    lines = [
        f"dataset {info['path']}",
        f"  {info['episodes']} episodes ({info['episodes_with_action']} with actions), "
        f"{info['frames']} frames at {info['fps']:g} fps "
        f"({info['episode_frames']['min']}-{info['episode_frames']['max']} per episode)",
        f"  cameras {', '.join(info['cameras'])} at {info['image_size']}x{info['image_size']}",
        f"  action: {info['action_source']}",
    ]
    rows = [["key", "shape", "names / stats"]]
    for key, shape in info["keys"].items():
        detail = ""
        if key in info["names"]:
            s = info["stats"].get(key, {})
            rng = [f"[{lo:.3g}, {hi:.3g}]" for lo, hi in zip(s.get("min", []), s.get("max", []))]
            detail = ", ".join(f"{n} {r}" for n, r in zip(info["names"][key], rng)) or "no stats"
        rows.append([key, "x".join(map(str, shape)), detail])
    lines += _table(rows)
    tasks = [t for t in info["tasks"] if t]
    if tasks:
        lines.append(f"  tasks: {'; '.join(tasks)}")
    lines.append(
        f"  sources ({len(info['sources'])}), converter {info['converter'].get('version')}:"
    )
    lines += [
        f"  - {s['path']} ({s['kind']}, sha256 {s.get('sha256', '?')[:12]})"
        for s in info["sources"]
    ]
    return "\n".join(lines)
