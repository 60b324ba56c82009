"""What people read: the per-bag conversion report and ``uwm dataset info`` (``baginfo``: bags).

Each view is built as a plain dict (stored in dataset attrs, or printed with ``--json``) and
formatted as aligned text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .store import Store, source_digests


def table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


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
    lines += table(rows)
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
    lines += table(rows)
    tasks = [t for t in info["tasks"] if t]
    if tasks:
        lines.append(f"  tasks: {'; '.join(tasks)}")
    lines.append(
        f"  sources ({len(info['sources'])}), converter {info['converter'].get('version')}:"
    )
    lines += [
        f"  - {s['path']} ({s['kind']}, {(source_digests(s) or ['no digest'])[0][:19]})"
        for s in info["sources"]
    ]
    return "\n".join(lines)
