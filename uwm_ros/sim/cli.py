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
                            args.image_size, args.storage, noise=args.noise)  # fmt: skip
    except (BagToolError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    kind = "action-free (camera only)" if args.action_free else "expert"
    print(f"wrote {args.out}: {rec.episodes} {kind} episodes, {rec.frames} frames, "
          f"expert success {rec.successes}/{rec.episodes}")  # fmt: skip
    if rec.skipped_seeds:
        print(f"skipped {len(rec.skipped_seeds)} failed demonstrations (seeds "
              f"{', '.join(map(str, rec.skipped_seeds))})")  # fmt: skip
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
        "  uwm sim record --episodes 20 --seed 5000 --action-free --out recordings/video\n"
        "  uwm sim record --episodes 200 --noise 0.05 --out recordings/dart"
    ))  # fmt: skip
    r.add_argument("--episodes", type=int, required=True)
    r.add_argument("--out", type=Path, required=True, help="bag folder to create")
    r.add_argument("--seed", type=int, default=0, help="episode i uses seed + i")
    r.add_argument("--action-free", action="store_true",
                   help="camera and episode markers only: video without actions")  # fmt: skip
    r.add_argument("--image-size", type=int, default=64, help="camera resolution (square)")
    r.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    r.add_argument("--noise", type=float, default=0.0,
                   help="std (rad) of noise on the executed joint targets; the recorded "
                   "commands stay the expert's (DART)")  # fmt: skip
    r.set_defaults(func=_cmd_record)


def _cmd_eval(args: argparse.Namespace) -> int:
    import json

    from .evaluate import Execution, Summary, closed_loop_success, report, seeds_from

    seeds = seeds_from(args.seed, args.episodes)
    execution = Execution(args.execute_steps, args.seam, args.blend_steps)
    engine = _eval_engine(args.model, args.backend, args.precision)
    summaries = closed_loop_success(engine, seeds, args.mode, execution, args.parallel,
                                    not args.no_baselines)  # fmt: skip
    if args.dds:
        summaries["policy_dds"] = Summary.of(_dds_results(args, seeds))
    for name, summary in summaries.items():
        print(f"{name:<12} {summary.line()}")
    if args.out:
        out = {"model": str(args.model), "seeds": [seeds[0], seeds[-1]], "mode": args.mode,
               "execution": vars(execution), "success": report(summaries)}  # fmt: skip
        args.out.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


def _eval_engine(model: Path, backend: str, precision: str) -> Any:
    """A bundle through ``load_engine``; a training checkpoint on the torch engine."""
    from uwm_ros.engines import load_engine
    from uwm_ros.engines.torch_engine import TorchEngine

    if (model / "bundle.yaml").is_file():
        return load_engine(model, backend, "cpu", precision)
    return TorchEngine.from_checkpoint(model, "cpu", precision)


def _dds_results(args: argparse.Namespace, seeds: list[int]) -> list[Any]:
    """The same episodes through the real policy node (its own process) over loopback DDS."""
    import tempfile

    from .closed_loop import run_closed_loop

    if not (args.model / "bundle.yaml").is_file():
        raise SystemExit("error: --dds runs the policy node, which loads a bundle (uwm export)")
    params = {"execute_steps": args.execute_steps, "seam": args.seam,
              "blend_steps": args.blend_steps, "backend": args.backend}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "policy.log"
        return run_closed_loop(args.model, len(seeds), seeds[0], log, params).results


def register_eval(sub: Any) -> None:
    """Add ``eval``: closed-loop success of a bundle or checkpoint on the simulated robot."""
    from .evaluate import EVAL_SEED

    doc = "closed-loop success of a policy on the simulated push robot"
    p = sub.add_parser("eval", help=doc, formatter_class=RAW, description=doc + (
        ": episodes on fixed seeds (unseen in training by default), run in process with one "
        "batched engine call per control step and chunks executed by the node's scheduler; "
        "the scripted expert and a random policy run on the same seeds. Prints success rates "
        "with Wilson 95 % intervals."), epilog=(
        "examples:\n  uwm eval runs/uwm/last                       # a training checkpoint\n"
        "  uwm eval bundles/small --episodes 100 --out eval.json\n"
        "  uwm eval bundles/small --dds --episodes 20    # also through the node over DDS\n"
        "  uwm eval runs/uwm/last --mode joint           # the joint sampler drives"
    ))  # fmt: skip
    p.add_argument("model", type=Path, help="policy bundle directory or training checkpoint")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=EVAL_SEED, help="episode i uses seed + i")
    p.add_argument("--mode", choices=("policy", "joint"), default="policy",
                   help="sampler whose actions are executed")  # fmt: skip
    p.add_argument("--execute-steps", type=int, default=4, help="actions run per chunk")
    p.add_argument("--seam", choices=("blend", "switch"), default="switch")
    p.add_argument("--blend-steps", type=int, default=4)
    p.add_argument("--backend", default="torch",
                   help="engine for a bundle (torch batches episodes; default torch)")  # fmt: skip
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    p.add_argument("--parallel", type=int, default=50, help="episodes run in lock step")
    p.add_argument("--dds", action="store_true", help="also run them through the node over DDS")
    p.add_argument("--no-baselines", action="store_true", help="skip the expert and random")
    p.add_argument("--out", type=Path, help="write the results as JSON")
    p.set_defaults(func=_cmd_eval)
