"""Data subcommands of ``uwm``: bag info, convert, convert-video, dataset info/preview/export.

Expected failures (``DataError``: bad bags, configs, datasets, videos) print one line and exit 2;
heavy modules are imported inside the handlers so ``uwm --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import DataError

Handler = Callable[[argparse.Namespace], int]
RAW = argparse.RawDescriptionHelpFormatter


def _guarded(handler: Handler) -> Handler:
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    return run


def _add(
    sub: Any, name: str, handler: Handler, help: str, examples: str, dataset: bool = False
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=help, description=help, epilog=f"examples:\n{examples}", formatter_class=RAW
    )
    parser.set_defaults(func=_guarded(handler))
    if dataset:
        parser.add_argument("dataset", type=Path, metavar="DATASET")
    return parser


# ----- handlers ---------------------------------------------------------------------------------
def _bag_info(args: argparse.Namespace) -> int:
    from .baginfo import bag_info, format_bag_info

    if args.config_out and len(args.bags) != 1:
        raise DataError("--config-out: give one bag to start the config from")
    infos = [bag_info(bag, args.typestore, args.scan) for bag in args.bags]
    if args.json:
        print(json.dumps(infos if len(infos) > 1 else infos[0], indent=2))
    else:
        print("\n\n".join(format_bag_info(info) for info in infos))
    if args.config_out:
        from .starter import starter_config, write_config

        cfg, notes = starter_config(args.bags[0], args.typestore)
        write_config(cfg, args.config_out, str(args.bags[0]))
        print(f"wrote {args.config_out}: " + "; ".join(notes), file=sys.stderr)
    return 0


def _convert(args: argparse.Namespace) -> int:
    from .config import load_config
    from .convert import bag_jobs, build_dataset, select_shard
    from .extract import config_spec
    from .report import format_report
    from .video import video_jobs

    cfg = load_config(args.config)
    sources = select_shard([*map(Path, args.bags), *cfg.video], args.shard)
    bags = [s for s in sources if isinstance(s, Path)]
    videos = [s for s in sources if isinstance(s, dict)]
    jobs = bag_jobs(bags, cfg, args.allow_missing_files) + video_jobs(
        videos, cfg.fps, cfg.image_size, cfg.skew_ns(None)
    )
    spec = config_spec(cfg)
    reports = build_dataset(
        jobs, args.out, args.append, args.workers, spec, not args.quiet, args.allow_losses
    )
    print("\n".join(format_report(r) for r in reports))
    print(f"wrote {args.out}")
    return 0


def _convert_video(args: argparse.Namespace) -> int:
    from .convert import build_dataset
    from .video import parse_video_arg, video_jobs, video_settings

    fps, size, cameras = video_settings(args.out, args.append, args.fps, args.size, args.cameras)
    entries = [parse_video_arg(v, cameras) for v in args.videos]
    jobs = video_jobs(entries, fps, size, round(args.max_skew * 1e9), cameras)
    reports = build_dataset(
        jobs, args.out, args.append, args.workers, None, not args.quiet, args.allow_losses
    )
    for r in reports:
        print(f"{r['source']}: {r['frames']} frames")
    print(f"wrote {args.out}")
    return 0


def _dataset_info(args: argparse.Namespace) -> int:
    from .report import dataset_info, format_dataset_info

    info = dataset_info(args.dataset)
    print(json.dumps(info, indent=2) if args.json else format_dataset_info(info))
    return 0


def _dataset_preview(args: argparse.Namespace) -> int:
    from .preview import write_preview

    frames = write_preview(args.dataset, args.out, args.episode, args.max_frames, args.height)
    print(f"wrote {args.out} ({frames} frames of episode {args.episode})")
    return 0


def _export_lerobot(args: argparse.Namespace) -> int:
    from .lerobot import export_lerobot

    info = export_lerobot(args.dataset, args.out, args.robot_type)
    print(f"wrote {args.out}: {info['total_episodes']} episodes, {info['total_frames']} frames")
    return 0


# ----- wiring -----------------------------------------------------------------------------------
def register(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    bag_commands: Callable[[Any], None] | None = None,
) -> None:
    """Add the data subcommands to the ``uwm`` parser; ``bag_commands`` adds more ``uwm bag``
    commands (play / record over DDS live in ``uwm_ros``, which the data package never imports)."""
    bag = sub.add_parser("bag", help="inspect rosbag2 recordings", formatter_class=RAW)
    bag_sub = bag.add_subparsers(dest="bag_command", metavar="COMMAND", required=True)
    if bag_commands is not None:
        bag_commands(bag_sub)
    p = _add(
        bag_sub, "info", _bag_info,
        "topics, types, counts, rates, time range, storage/compression and problems of a bag "
        "(rosbag2 folder, any name, or a single .mcap/.db3 file)",
        "  uwm bag info recordings/pick_01\n  uwm bag info --scan recordings/*.mcap\n"
        "  uwm bag info recordings/pick_01 --config-out convert.yaml  # a config to start from",
    )  # fmt: skip
    p.add_argument("bags", nargs="+", type=Path, metavar="BAG")
    p.add_argument("--scan", action="store_true", help="read every message: exact rates, "
                   "stamps going backwards, counts checked against the declared ones")  # fmt: skip
    p.add_argument("--typestore", default="humble", help="distro for bags without definitions")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--config-out", type=Path, metavar="YAML",
        help="write a starting convert config from the bag (cameras, joints, command, fps)",
    )  # fmt: skip

    p = _add(
        sub, "convert", _convert,
        "convert rosbag2 recordings (and the config's video sources) into a dataset",
        "  uwm convert --config config/convert.yaml --out data/pick recordings/*\n"
        "  uwm convert --config c.yaml --out data/pick --append recordings/new_*\n"
        "  uwm convert --config c.yaml --out data/pick-3 --shard 3/8 recordings/*  # job array",
    )  # fmt: skip
    p.add_argument("bags", nargs="*", metavar="BAG", help="rosbag2 folders or .mcap files")
    p.add_argument("--config", required=True, type=Path, help="conversion config YAML")
    _output_args(p)
    p.add_argument(
        "--shard", metavar="I/N", help="convert every N-th source from the I-th (0-based)"
    )
    p.add_argument(
        "--allow-missing-files",
        action="store_true",
        help="convert the storage files present of a split bag whose other files are missing",
    )

    p = _add(
        sub, "convert-video", _convert_video,
        "mp4 files -> action-free episodes, resized/cropped to the dataset's cameras",
        "  uwm convert-video --out data/web --fps 10 --size 96 clips/*.mp4\n"
        "  uwm convert-video --out data/pick --append front=a.mp4,wrist=b.mp4",
    )  # fmt: skip
    p.add_argument("videos", nargs="+", metavar="VIDEO",
                   help="a.mp4 (single-camera dataset) or cam=a.mp4,cam2=b.mp4")  # fmt: skip
    _output_args(p)
    p.add_argument("--fps", type=float, help="frame rate of a new dataset (default 10)")
    p.add_argument("--size", type=int, help="image size of a new dataset (default 96)")
    p.add_argument(
        "--cameras", help="comma-separated camera names of a new dataset (default front)"
    )
    p.add_argument("--max-skew", type=float, default=0.1, help="seconds (default 0.1)")

    ds = sub.add_parser("dataset", help="inspect, preview or export a dataset", formatter_class=RAW)
    ds_sub = ds.add_subparsers(dest="dataset_command", metavar="COMMAND", required=True)
    p = _add(
        ds_sub, "info", _dataset_info,
        "episodes, frames, fps, cameras, keys and shapes, action definition, stats, provenance",
        "  uwm dataset info data/pick\n  uwm dataset info --json data/pick", dataset=True,
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p = _add(
        ds_sub, "preview", _dataset_preview,
        "render an episode: cameras side by side over a strip plot of joints and actions",
        "  uwm dataset preview data/pick --out pick.mp4\n"
        "  uwm dataset preview data/pick --episode 3 --out ep3.gif --max-frames 100", dataset=True,
    )  # fmt: skip
    p.add_argument("--episode", type=int, default=0, help="episode index (default 0)")
    p.add_argument("--out", type=Path, required=True, help="output .mp4 or .gif")
    p.add_argument("--max-frames", type=int, help="stop after this many frames")
    p.add_argument("--height", type=int, default=192, help="camera tile height in pixels")
    p = _add(
        ds_sub, "export-lerobot", _export_lerobot,
        "export to the LeRobot dataset v3 layout (meta/info.json, parquet data, mp4 videos)",
        "  uwm dataset export-lerobot data/pick exports/pick_lerobot", dataset=True,
    )  # fmt: skip
    p.add_argument("out", type=Path, metavar="OUT")
    p.add_argument("--robot-type", default=None, help="robot_type written to meta/info.json")


def _output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, type=Path, help="dataset to create (or append to)")
    p.add_argument("--append", action="store_true", help="add episodes to an existing dataset")
    p.add_argument("--workers", type=int, help="worker processes (default: one per core)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--allow-losses",
        action="store_true",
        help="keep sources that yield no episode or lose more than 10%% of their frames "
        "(by default the conversion fails, naming the cause and the config fix)",
    )
