"""`uwm export` and `uwm bundle check`."""

from __future__ import annotations

import argparse
import sys

from uwm_ros.bundle.manifest import DEFAULT_MODES, LOOP_MODES, MIN_OPSET, BundleError


def _csv(text: str) -> list[str]:
    return [t for t in text.split(",") if t]


def _cmd_export(args: argparse.Namespace) -> int:
    from .exporter import export_bundle

    manifest = export_bundle(
        args.checkpoint,
        args.out,
        modes=args.modes,
        opset=args.opset,
        precisions=args.precision,
        batch_sizes=[int(b) for b in args.batch_sizes],
    )
    print(f"wrote {args.out}: {len(manifest.graphs)} graphs, modes {manifest.modes}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from .check import check_bundle

    manifest = check_bundle(args.bundle)
    graphs = ", ".join(sorted({g.file for g in manifest.graphs}))
    print(f"{args.bundle}: OK (opset {manifest.opset}; {graphs})")
    return 0


def _guarded(fn):  # type: ignore[no-untyped-def]
    """Expected errors print one line and exit 2, no traceback."""

    def run(args: argparse.Namespace) -> int:
        from uwm_training.model import WeightsError  # torch, once an export command runs

        try:
            return int(fn(args))
        except (BundleError, WeightsError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    return run


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    raw = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "export",
        help="checkpoint -> policy bundle (weights + ONNX graphs + bundle.yaml)",
        description="Export a checkpoint (a model .safetensors file or a checkpoint directory "
        "holding ema.safetensors) to a policy bundle for the runtime. Written atomically.",
        epilog="examples:\n  uwm export runs/small/ema.safetensors --out bundles/small\n"
        "  uwm export runs/paper --out bundles/paper --modes policy,joint --precision fp32,bf16",
        formatter_class=raw,
    )
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True, help="bundle directory to write (replaced if present)")
    p.add_argument(
        "--modes",
        type=_csv,
        default=None,
        help=f"loops to export, from {LOOP_MODES}; default {','.join(DEFAULT_MODES)} "
        "(policy only for a model without future_obs)",
    )
    p.add_argument("--opset", type=int, default=MIN_OPSET)
    p.add_argument(
        "--precision",
        type=_csv,
        default=["fp32"],
        help="fp32 (always) plus bf16/fp16 graphs for TensorRT, e.g. fp32,bf16",
    )
    p.add_argument("--batch-sizes", type=_csv, default=["1"], help="static batch sizes, e.g. 1,8")
    p.set_defaults(func=_guarded(_cmd_export))

    b = sub.add_parser("bundle", help="policy bundle tools")
    bsub = b.add_subparsers(dest="bundle_command", metavar="COMMAND", required=True)
    c = bsub.add_parser(
        "check",
        help="validate a bundle: files, hashes, ONNX checker, I/O names and shapes",
        epilog="example:\n  uwm bundle check bundles/small",
        formatter_class=raw,
    )
    c.add_argument("bundle")
    c.set_defaults(func=_guarded(_cmd_check))
