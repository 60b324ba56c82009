"""``uwm train``: argparse wiring, shared by the ``uwm`` entry point and ``python -m
uwm_training.train`` (what torchrun launches)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXAMPLES = """\
examples:
  uwm train config/train_small.yaml stage=autoencoder out_dir=runs/ae
  uwm train config/train_small.yaml autoencoder_from=runs/ae/last
  uwm train --resume config/train_small.yaml optim.lr=3e-4 batch_size=8
  uwm train config/cotrain_small.yaml data.sources.1.weight=0.5
  uwm train config/train_small.yaml stage=finetune init_from=runs/small/last \\
      data.sources.0.path=data/new_task steps=2000
  torchrun --nproc_per_node 8 -m uwm_training.train config/train_paper.yaml
  torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d \\
      --rdzv_endpoint HOST:29500 -m uwm_training.train config/train_paper.yaml

Overrides are dotted keys with YAML values; unknown keys are errors. Put --resume before
CONFIG.yaml or after the last override.
Outputs in OUT_DIR: checkpoints/step-*/ (ema.safetensors for `uwm export`), last -> newest,
train.yaml, metrics.jsonl, tb/ (tensorboard --logdir OUT_DIR/tb), samples/*.gif."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG.yaml", help="training config (see config/)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides, e.g. optim.lr=3e-4 model.depth=4")  # fmt: skip
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in out_dir from its newest checkpoint (a fresh start if it has "
        "none, so a preempted job can be requeued with the same command)",
    )
    resume.add_argument(
        "--resume-from", type=Path, metavar="CKPT", help="continue from this checkpoint directory"
    )


def run(args: argparse.Namespace) -> int:
    """Load the config, train; expected failures print one line and exit 2."""
    from ..data.errors import DataError
    from ..model import ConfigError, WeightsError
    from .config import TrainError, load_config
    from .loop import train

    try:
        cfg = load_config(args.config, args.overrides)
        result = train(cfg, resume=args.resume_from or args.resume)
    except (TrainError, DataError, ConfigError, WeightsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if result.checkpoint is not None and result.ema is not None:
        print(f"done: step {result.step}, checkpoint {result.checkpoint}")
    return 0


def register(sub: Any) -> None:
    """Add ``train`` to the ``uwm`` subcommands."""
    parser = sub.add_parser(
        "train",
        help="train a UWM: autoencoder, pretrain, cotrain or finetune stage (DDP via torchrun)",
        description="Train a Unified World Model from a YAML config (stages autoencoder, "
        "pretrain, cotrain, finetune). Single process as is; DDP when launched by torchrun.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m uwm_training.train CONFIG.yaml [KEY=VALUE ...] [--resume]``."""
    parser = argparse.ArgumentParser(
        prog="python -m uwm_training.train",
        description="Train a Unified World Model (as `uwm train`); torchrun runs it as DDP.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
