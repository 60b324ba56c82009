"""``uwm sim``: the simulated push robot over DDS (or rclpy), and ``uwm sim record``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

RAW = argparse.RawDescriptionHelpFormatter


def _cmd_sim(args: argparse.Namespace) -> int:
    import numpy as np

    from uwm_ros.nodes.cli import log_to_stderr

    from .node import main, run

    log_to_stderr()
    if args.transport == "ros":
        main()
        return 0
    from uwm_ros.transport.dds import DDSTransport

    params = {"seed": args.seed, "image_size": args.image_size}
    transport = DDSTransport("uwm_sim", params=params)
    transport.logger.info("uwm_sim running over DDS (domain %d)", transport.domain_id)
    results = run(transport, args.episodes)
    if results:
        rate = np.mean([r.success for r in results])
        print(f"{len(results)} episodes, success rate {rate:.0%}")
    return 0


def _cmd_record(args: argparse.Namespace) -> int:
    from uwm_ros.nodes.bag_tools import BagToolError

    from .record import record_expert

    try:
        rec = record_expert(args.out, args.episodes, args.seed, args.action_free,
                            args.image_size, args.storage)  # fmt: skip
    except (BagToolError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    kind = "action-free (camera only)" if args.action_free else "expert"
    print(f"wrote {args.out}: {rec.episodes} {kind} episodes, {rec.frames} frames, "
          f"expert success {rec.successes}/{rec.episodes}")  # fmt: skip
    return 0


def register(sub: Any) -> None:
    """Add ``sim`` (run the robot) with its ``record`` subcommand."""
    doc = "the simulated push robot: camera + joint states out, action chunks in"
    p = sub.add_parser("sim", help=doc, formatter_class=RAW, description=doc + (
        ". A planar 3-joint arm pushes a block into a goal; episodes reset on success or "
        "after 8 s, reported on /sim/success."), epilog=(
        "examples:\n  uwm sim --transport dds                 # run until Ctrl-C\n"
        "  uwm sim --episodes 10 --seed 1000       # then print the success rate\n"
        "  uwm sim record --episodes 100 --out recordings/expert\n"
        "  uwm sim record --episodes 20 --action-free --out recordings/video"
    ))  # fmt: skip
    p.add_argument("--transport", choices=("dds", "ros"), default="dds")
    p.add_argument("--episodes", type=int, default=0, help="stop after N episodes (0: never)")
    p.add_argument("--seed", type=int, default=0, help="episode i uses seed + i")
    p.add_argument("--image-size", type=int, default=64, help="camera resolution (square)")
    p.set_defaults(func=_cmd_sim)
    sim_sub = p.add_subparsers(dest="sim_command", metavar="COMMAND")
    doc = "record scripted-expert episodes to a rosbag2 (faster than real time)"
    r = sim_sub.add_parser("record", help=doc, description=doc, formatter_class=RAW, epilog=(
        "examples:\n  uwm sim record --episodes 100 --out recordings/expert\n"
        "  uwm sim record --episodes 20 --seed 5000 --action-free --out recordings/video"
    ))  # fmt: skip
    r.add_argument("--episodes", type=int, required=True)
    r.add_argument("--out", type=Path, required=True, help="bag folder to create")
    r.add_argument("--seed", type=int, default=0, help="episode i uses seed + i")
    r.add_argument("--action-free", action="store_true",
                   help="camera and episode markers only: video without actions")  # fmt: skip
    r.add_argument("--image-size", type=int, default=64, help="camera resolution (square)")
    r.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    r.set_defaults(func=_cmd_record)
