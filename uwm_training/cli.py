"""The ``uwm`` command: one entry point, one subcommand per job.

With the demo, the integration layer: it dispatches to both sides (``uwm_training`` and
``uwm_ros``) and imports each command's code only when that command runs, so ``uwm policy`` on
a deploy install (no torch) works.

Examples:
    uwm model-info --preset paper
    uwm export runs/small/ema.safetensors --out bundles/small
    uwm bundle check bundles/small
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from uwm_ros.nodes.bag_tools import add_bag_commands
from uwm_ros.nodes.cli import register as register_policy
from uwm_ros.sim.cli import register as register_sim
from uwm_ros.sim.cli import register_eval

from .data.cli import register as register_data
from .demo.pipeline import register as register_demo
from .export.cli import register as register_export
from .train.cli import register as register_train

# Packages only the training install has (setup.py extra "train"); the deploy install lacks them.
TRAINING_STACK = {"torch", "safetensors", "zarr", "numcodecs", "onnx", "onnxscript"} | {
    "tensorboard",
    "av",
    "pyarrow",
}


def _cmd_model_info(args: argparse.Namespace) -> int:
    from .model import preset
    from .model.info import model_info

    info = model_info(preset(args.preset), batch_size=args.batch_size)
    print(f"UWM preset {args.preset!r}: parameters")
    for name, n in info.params.items():
        print(f"  {name:<36} {n / 1e6:>10.3f} M")
    print(f"FLOPs at batch size {args.batch_size} (multiply-add = 2 FLOPs)")
    for name, n in info.flops.items():
        print(f"  {name:<36} {n / 1e9:>10.3f} GFLOP")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="uwm",
        description="uwm-ros: Unified World Models from rosbag2 data to a ROS 2 robot.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'uwm COMMAND --help' for a command's options and examples.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = sub.add_parser(
        "model-info",
        help="parameter counts per component and FLOPs of a denoiser pass / policy chunk",
        description="Parameter counts per component and FLOPs of one denoiser pass and of a "
        "full policy chunk (obs encoding + all DDIM steps). Shapes only: costs no memory.",
        epilog="examples:\n  uwm model-info --preset paper\n  uwm model-info --preset small",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--preset", choices=("paper", "small"), default="small")
    p.add_argument("--batch-size", type=int, default=1, help="batch size for the FLOP count")
    p.set_defaults(func=_cmd_model_info)
    register_export(sub)
    register_data(sub, add_bag_commands)
    register_train(sub)
    register_policy(sub)
    register_sim(sub)
    register_eval(sub)
    register_demo(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in TRAINING_STACK:
            raise
        print(
            f"error: 'uwm {args.command}' needs {e.name}, part of the training install "
            "(this looks like a deploy install): pip install 'uwm-ros[train]'",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
