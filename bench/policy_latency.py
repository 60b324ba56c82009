"""Policy chunk latency (obs encoding + all DDIM steps), baseline vs faster paths, one process.

Baseline: eager fp32 recomputing the observation part of every adaLN modulation at each step,
as the official code does. Variants add the obs-conditioning cache, bf16 autocast and
torch.compile (with freezing on CPU; CUDA graphs through ``mode="reduce-overhead"`` on GPU).
Medians over ``--runs`` timed calls after warm-up; every ratio is against the baseline of the
same run. Prints a table and writes JSON.

Examples:
    python bench/policy_latency.py                      # small on CPU (+ paper on CUDA if present)
    python bench/policy_latency.py --runs 50 --variants official-fp32,cached-bf16
    python bench/policy_latency.py --preset paper --device cuda
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from uwm_training.model import UnifiedWorldModel, preset
from uwm_training.model.info import model_info

# name -> (cache obs conditioning, autocast dtype or None, torch.compile)
VARIANTS: dict[str, tuple[bool, torch.dtype | None, bool]] = {
    "official-fp32": (False, None, False),
    "cached-fp32": (True, None, False),
    "cached-bf16": (True, torch.bfloat16, False),
    "compiled-fp32": (True, None, True),
    "compiled-bf16": (True, torch.bfloat16, True),
}
BASELINE = "official-fp32"


def build_model(name: str, device: str) -> UnifiedWorldModel:
    """Random weights; the zero-initialised layers get small noise so outputs are non-trivial."""
    torch.manual_seed(0)
    model = UnifiedWorldModel(preset(name)).eval().to(device)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(std=0.02)
    return model


def make_chunk_fn(
    model: UnifiedWorldModel, cache: bool, dtype: torch.dtype | None, compiled: bool, device: str
) -> Callable[..., torch.Tensor]:
    def chunk(
        images: torch.Tensor,
        proprio: torch.Tensor | None,
        noise_a: torch.Tensor,
        noise_o: torch.Tensor | None,
    ) -> torch.Tensor:
        autocast = (
            torch.autocast(device_type=device.split(":")[0], dtype=dtype)
            if dtype is not None
            else contextlib.nullcontext()
        )
        with autocast:
            out = model.sample(
                "policy",
                images,
                proprio,
                noise_actions=noise_a,
                noise_future=noise_o,
                cache_obs_conditioning=cache,
            )
        assert out.actions is not None
        return out.actions.float()

    if not compiled:
        return chunk
    if device == "cpu":
        torch._inductor.config.freezing = True  # fold weights (and their bf16 casts) as constants
        return torch.compile(chunk, fullgraph=True)
    return torch.compile(chunk, mode="reduce-overhead", fullgraph=True)  # CUDA graphs


def time_fn(fn: Callable[[], torch.Tensor], runs: int, warmup: int, device: str) -> list[float]:
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def run(args: argparse.Namespace, preset_name: str, device: str) -> dict:  # type: ignore[type-arg]
    model = build_model(preset_name, device)
    cfg = model.cfg
    g = torch.Generator().manual_seed(1)
    S, B = cfg.image_size, args.batch_size
    inputs = [
        torch.rand(B, cfg.num_views, cfg.n_obs_steps, 3, S, S, generator=g),
        torch.rand(B, cfg.n_obs_steps, cfg.proprio_dim, generator=g) if cfg.proprio_dim else None,
        torch.randn(B, cfg.horizon, cfg.action_dim, generator=g),
        torch.randn(B, *cfg.latent_shape, generator=g) if cfg.future_obs else None,
    ]
    inputs = [x.to(device) if x is not None else None for x in inputs]
    flops = model_info(cfg, B).flops["policy chunk (obs cached)"]

    rows, reference = [], None
    for name in args.variants:
        cache, dtype, compiled = VARIANTS[name]
        fn = make_chunk_fn(model, cache, dtype, compiled, device)
        t0 = time.perf_counter()
        with torch.no_grad():
            out = fn(*inputs)
            first_ms = (time.perf_counter() - t0) * 1e3
            times = time_fn(lambda: fn(*inputs), args.runs, args.warmup, device)  # noqa: B023
        reference = out if reference is None else reference
        rows.append(
            {
                "variant": name,
                "median_ms": statistics.median(times),
                "p90_ms": sorted(times)[int(0.9 * (len(times) - 1))],
                "first_call_ms": first_ms,
                "gflops_per_s": flops / statistics.median(times) / 1e6,
                "max_abs_err_vs_first": float((out - reference).abs().max()),
            }
        )
        print(f"  {name}: median {rows[-1]['median_ms']:.1f} ms", file=sys.stderr)
    base = next((r["median_ms"] for r in rows if r["variant"] == BASELINE), rows[0]["median_ms"])
    for r in rows:
        r["speedup_vs_baseline"] = base / r["median_ms"]
    return {
        "benchmark": "policy_latency",
        "preset": preset_name,
        "device": device,
        "batch_size": B,
        "runs": args.runs,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "chunk_gflop": flops / 1e9,
        "baseline": rows[0]["variant"],
        "rows": rows,
    }


def print_table(result: dict) -> None:  # type: ignore[type-arg]
    print(
        f"\npolicy chunk latency: preset={result['preset']} device={result['device']} "
        f"batch={result['batch_size']} threads={result['threads']} "
        f"chunk={result['chunk_gflop']:.2f} GFLOP, {result['runs']} runs"
    )
    head = (
        f"{'variant':<24}{'median ms':>11}{'p90 ms':>9}{'speedup':>9}{'GFLOP/s':>9}{'max|Δ|':>10}"
    )
    print(head + "\n" + "-" * len(head))
    for r in result["rows"]:
        print(
            f"{r['variant']:<24}{r['median_ms']:>11.2f}{r['p90_ms']:>9.2f}"
            f"{r['speedup_vs_baseline']:>8.2f}x{r['gflops_per_s']:>9.1f}"
            f"{r['max_abs_err_vs_first']:>10.1e}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n")[-1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--preset",
        choices=("small", "paper"),
        help="default: small on CPU, and paper on CUDA when a GPU is present",
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: see --preset)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--variants",
        type=lambda s: s.split(","),
        default=list(VARIANTS),
        help="comma-separated subset of: " + ", ".join(VARIANTS),
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/policy_latency.json"))
    args = parser.parse_args(argv)
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    if args.preset or args.device:
        jobs = [(args.preset or "small", args.device or "cpu")]
    else:
        jobs = [("small", "cpu")] + ([("paper", "cuda")] if torch.cuda.is_available() else [])
    results = [run(args, name, device) for name, device in jobs]
    for result in results:
        print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
