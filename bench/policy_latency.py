"""Policy chunk latency (obs encoding + all DDIM steps) per backend and precision, one process.

Baseline: eager fp32 that recomputes the adaLN conditioning at every step, as the official code
does. Model rows add the conditioning cache, bf16 autocast and torch.compile (weight freezing on
CPU; CUDA graphs via ``mode="reduce-overhead"`` on GPU). Engine rows time a real exported bundle
through ``uwm_ros.engines`` from raw uint8 frames (pre/post-processing included): torch,
onnxruntime and, when installed with a GPU, TensorRT. p50/p99 over ``--runs`` calls after
warm-up; every ratio is against the baseline of the same run; the FLOP floor is the chunk's
FLOPs at the peak matmul throughput measured in the same run. Prints a table, writes JSON.

Examples:
    python bench/policy_latency.py                      # small on CPU (+ paper on CUDA if present)
    python bench/policy_latency.py --runs 100 --rows official-fp32,engine-onnxruntime-fp32
    python bench/policy_latency.py --preset paper --device cuda
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from uwm_ros.engines import Observation, load_engine
from uwm_ros.engines.torch_engine import compile_loop
from uwm_training.export import export_bundle
from uwm_training.model import PolicySpec, UnifiedWorldModel, preset, save_model
from uwm_training.model.info import model_info

# model rows: name -> (cache conditioning, autocast dtype, torch.compile)
MODEL_ROWS: dict[str, tuple[bool, torch.dtype | None, bool]] = {
    "official-fp32": (False, None, False),
    "cached-fp32": (True, None, False),
    "cached-bf16": (True, torch.bfloat16, False),
    "compiled-fp32": (True, None, True),
    "compiled-bf16": (True, torch.bfloat16, True),
}
# engine rows: name -> (backend, precision, options)
ENGINE_ROWS: dict[str, tuple[str, str, dict[str, bool]]] = {
    "engine-torch-fp32": ("torch", "fp32", {}),
    "engine-torch-bf16-compiled": ("torch", "bf16", {"compile": True}),
    "engine-onnxruntime-fp32": ("onnxruntime", "fp32", {}),
    "engine-tensorrt-bf16": ("tensorrt", "bf16", {}),
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


def model_row(
    model: UnifiedWorldModel, name: str, device: str, inputs: list
) -> Callable[[], object]:  # type: ignore[type-arg]
    cache, dtype, compiled = MODEL_ROWS[name]
    autocast = torch.autocast(device.split(":")[0], dtype) if dtype else contextlib.nullcontext()

    def chunk(images, proprio, noise_a, noise_o):  # type: ignore[no-untyped-def]
        with autocast:
            out = model.sample(
                "policy",
                images,
                proprio,
                noise_actions=noise_a,
                noise_future=noise_o,
                cache_obs_conditioning=cache,
            )
        return out.actions.float()  # type: ignore[union-attr]

    fn = compile_loop(chunk, device, fullgraph=True) if compiled else chunk
    return lambda: fn(*inputs)


def engine_row(
    bundle: Path, name: str, device: str, obs: Observation
) -> Callable[[], object] | None:
    backend, precision, options = ENGINE_ROWS[name]
    if backend == "tensorrt" and not (
        device.startswith("cuda") and importlib.util.find_spec("tensorrt")
    ):
        return None
    engine = load_engine(bundle, backend, device, precision, **options)
    return lambda: engine.policy(obs)


def export_random_bundle(model: UnifiedWorldModel, out: Path, precisions: list[str]) -> Path:
    cfg = model.cfg
    unit = {"min": [-1.0] * cfg.action_dim, "max": [1.0] * cfg.action_dim}
    spec = PolicySpec(
        fps=10.0,
        action_names=tuple(f"a{i}" for i in range(cfg.action_dim)),
        proprio_names=tuple(f"j{i}" for i in range(cfg.proprio_dim)),
        normalization={
            "actions": unit,
            "proprio": {k: v[: cfg.proprio_dim] for k, v in unit.items()},
        },
    )
    save_model(model, out / "model.safetensors", spec)
    export_bundle(out / "model.safetensors", out / "bundle", precisions=precisions)
    return out / "bundle"


def peak_gflops(device: str, dtype: torch.dtype, n: int = 1024) -> float:
    """Achievable matmul throughput on this device: the denominator of the FLOP floor."""
    a, b = (
        torch.randn(n, n, device=device, dtype=dtype),
        torch.randn(n, n, device=device, dtype=dtype),
    )
    times = time_fn(lambda: a @ b, runs=10, warmup=2, device=device)
    return 2 * n**3 / (np.median(times) / 1e3) / 1e9


def time_fn(fn: Callable[[], object], runs: int, warmup: int, device: str) -> list[float]:
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.inference_mode():
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
    S = cfg.image_size
    inputs = [
        torch.rand(1, cfg.num_views, cfg.n_obs_steps, 3, S, S, generator=g),
        torch.rand(1, cfg.n_obs_steps, cfg.proprio_dim, generator=g) if cfg.proprio_dim else None,
        torch.randn(1, cfg.horizon, cfg.action_dim, generator=g),
        torch.randn(1, *cfg.latent_shape, generator=g),
    ]
    inputs = [x.to(device) if x is not None else None for x in inputs]
    rng = np.random.default_rng(0)
    obs = Observation(
        {
            c: rng.integers(0, 256, (cfg.n_obs_steps, 480, 640, 3), dtype=np.uint8)
            for c in cfg.cameras
        },
        rng.uniform(-1, 1, (cfg.n_obs_steps, cfg.proprio_dim)) if cfg.proprio_dim else None,
    )
    flops = model_info(cfg).flops["policy chunk (obs cached)"]
    peaks = {
        "fp32": peak_gflops(device, torch.float32),
        "bf16": peak_gflops(device, torch.bfloat16),
    }
    tmp = tempfile.TemporaryDirectory()
    bundle = None
    rows = []
    for name in args.rows:
        t0 = time.perf_counter()
        if name in MODEL_ROWS:
            fn: Callable[[], object] | None = model_row(model, name, device, inputs)
        else:
            if bundle is None:
                precisions = ["fp32", "bf16"] if device.startswith("cuda") else ["fp32"]
                bundle = export_random_bundle(
                    build_model(preset_name, "cpu"), Path(tmp.name), precisions
                )
            fn = engine_row(bundle, name, device, obs)
        if fn is None:
            print(f"  {name}: skipped (not available here)", file=sys.stderr)
            continue
        times = time_fn(fn, args.runs, args.warmup, device)
        setup_s = time.perf_counter() - t0 - sum(times) / 1e3
        p50, p99 = float(np.percentile(times, 50)), float(np.percentile(times, 99))
        rows.append({"row": name, "p50_ms": p50, "p99_ms": p99, "setup_s": setup_s})
        print(f"  {name}: p50 {p50:.1f} ms, p99 {p99:.1f} ms", file=sys.stderr)
    tmp.cleanup()
    base = next((r["p50_ms"] for r in rows if r["row"] == BASELINE), rows[0]["p50_ms"])
    for r in rows:
        r["speedup_vs_baseline"] = base / r["p50_ms"]
    return {
        "benchmark": "policy_latency",
        "preset": preset_name,
        "device": device,
        "device_name": torch.cuda.get_device_name()
        if device.startswith("cuda")
        else platform.processor(),
        "threads": torch.get_num_threads(),
        "runs": args.runs,
        "torch": torch.__version__,
        "chunk_gflop": flops / 1e9,
        "peak_matmul_gflops": peaks,
        "flop_floor_ms": {k: flops / (v * 1e6) for k, v in peaks.items()},
        "baseline": BASELINE,
        "rows": rows,
    }


def print_table(r: dict) -> None:  # type: ignore[type-arg]
    floor = ", ".join(f"{k} {v:.2f} ms" for k, v in r["flop_floor_ms"].items())
    print(
        f"\npolicy chunk: preset={r['preset']} device={r['device']} ({r['device_name']}) "
        f"threads={r['threads']} runs={r['runs']} chunk={r['chunk_gflop']:.2f} GFLOP; "
        f"FLOP floor at measured peak matmul: {floor}"
    )
    head = f"{'row':<30}{'p50 ms':>9}{'p99 ms':>9}{'vs baseline':>13}{'setup s':>9}"
    print(head + "\n" + "-" * len(head))
    for row in r["rows"]:
        print(
            f"{row['row']:<30}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}"
            f"{row['speedup_vs_baseline']:>12.2f}x{row['setup_s']:>9.1f}"
        )


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(
        description=doc.split("\n\n")[0],
        epilog=doc.split("\n\n")[-1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--preset",
        choices=("small", "paper"),
        help="default: small on CPU, and paper on CUDA when a GPU is present",
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: see --preset)")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=3)
    all_rows = list(MODEL_ROWS) + list(ENGINE_ROWS)
    parser.add_argument(
        "--rows",
        type=lambda s: s.split(","),
        default=all_rows,
        help="comma-separated subset of: " + ", ".join(all_rows),
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/policy_latency.json"))
    args = parser.parse_args(argv)
    unknown = [v for v in args.rows if v not in all_rows]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {all_rows}")
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
