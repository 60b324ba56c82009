"""Training throughput: samples/s and step time of the real training loop, split into data
loading (time blocked on the DataLoader) and compute (the rest of the step), with model FLOPs
utilisation.

Each row runs ``uwm_training.train.train`` for ``--steps`` optimizer steps on a generated dataset
whose frames are textured so they compress (and decode) like camera images; the first
``--warmup`` steps are dropped and the medians reported. Rows (the first is the baseline every
ratio refers to):

* ``small`` on CPU: fp32 with data loading in the training process (num_workers 0), fp32 with
  two loader workers, bf16 autocast with two workers.
* ``paper`` on CUDA, when a GPU is present: fp32 vs bf16, four workers, batch 36 (the paper's).

MFU = training FLOPs per sample (counted by ``FlopCounterMode`` on one real step, with our KL
autoencoder rather than the SDXL VAE) x samples/s / the peak matmul throughput measured in the
same run at the row's precision. Prints a table, writes JSON to
bench/results/train_throughput.json.

Examples:
    python bench/train_throughput.py                       # small on CPU (+ paper on CUDA)
    python bench/train_throughput.py --steps 30 --batch-size 16 --presets small
    python bench/train_throughput.py --presets paper --device cuda
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from uwm_training.train import train
from uwm_training.train.config import from_dict
from uwm_training.train.data import build_data, dataset_spec, open_sources
from uwm_training.train.loop import Objective
from uwm_training.train.models import new_model, set_trainable
from uwm_training.train.synthetic import make_dataset

# preset -> device, batch size, dataset (cameras, image size), rows: name -> (precision, workers)
SETUPS: dict[str, dict[str, Any]] = {
    "small": {
        "device": "cpu",
        "batch_size": 8,
        "cameras": ("front",),
        "size": 64,
        "rows": {"fp32-w0": ("fp32", 0), "fp32-w2": ("fp32", 2), "bf16-w2": ("bf16", 2)},
    },
    "paper": {
        "device": "cuda",
        "batch_size": 36,
        "cameras": ("agentview", "wrist", "side"),
        "size": 224,
        "rows": {"fp32-w4": ("fp32", 4), "bf16-w4": ("bf16", 4)},
    },
}


def config(preset: str, out: Path, sources: list[Path], **fields: Any) -> Any:
    setup = SETUPS[preset]
    base = {
        "preset": preset,
        "out_dir": str(out),
        "data": {"sources": [{"path": str(s)} for s in sources], "val_fraction": 0.0},
        "optim": {"warmup_steps": 10},
        "eval": {"every": 0},
        "batch_size": setup["batch_size"],
        "log_every": 1,
        "device": setup["device"],
    }
    return from_dict({**base, **fields})


def matmul_peak(device: torch.device, dtype: torch.dtype) -> float:
    """FLOP/s of a large square matmul, the best of a few runs."""
    n = 4096 if device.type == "cuda" else 1024
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    best = float("inf")
    for _ in range(5):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(10):
            a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t) / 10)
    return 2 * n**3 / best


def train_flops_per_sample(cfg: Any) -> float:
    """FLOPs of one training step (forward + backward, autoencoder encoding included) / sample."""
    sources = open_sources(cfg)
    model = new_model(cfg, sources)
    set_trainable(model, cfg.stage)
    data = build_data(sources, model.cfg, cfg, dataset_spec(sources, model.cfg, ["joint_pos"]))
    device = torch.device(cfg.device)
    model.to(device)
    item = data.train[0]
    batch = {k: v[None].to(device) for k, v in item.items()}
    with FlopCounterMode(display=False) as counter:
        loss, _ = Objective(model, cfg.stage)(batch)
        loss.backward()
    return float(counter.get_total_flops())


def run_row(cfg: Any, warmup: int) -> dict[str, float]:
    train(cfg)
    lines = (Path(cfg.out_dir) / "metrics.jsonl").read_text().splitlines()
    rows = [r for r in map(json.loads, lines) if r["split"] == "train"][warmup:]
    step = statistics.median(r["step_s"] for r in rows)
    data = statistics.median(r["data_s"] for r in rows)
    return {"step_ms": step * 1e3, "data_ms": data * 1e3, "compute_ms": (step - data) * 1e3,
            "samples_per_s": cfg.batch_size / step, "steps_measured": len(rows)}  # fmt: skip


def bench_preset(preset: str, args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    setup = SETUPS[preset]
    if args.batch_size:
        setup["batch_size"] = args.batch_size
    device = torch.device(setup["device"])
    ds = make_dataset(tmp / f"{preset}-data", episodes=6, length=40, size=setup["size"],
                      cameras=setup["cameras"], joints=7, textured=True)  # fmt: skip
    train(config(preset, tmp / f"{preset}-ae", [ds], stage="autoencoder", steps=1))
    ae = str(tmp / f"{preset}-ae" / "last")
    flops = train_flops_per_sample(config(preset, tmp / "flops", [ds], autoencoder_from=ae))
    peaks = {p: matmul_peak(device, d) for p, d in (("fp32", torch.float32),
                                                    ("bf16", torch.bfloat16))}  # fmt: skip
    results = []
    for name, (precision, workers) in setup["rows"].items():
        cfg = config(preset, tmp / f"{preset}-{name}", [ds], autoencoder_from=ae,
                     steps=args.steps + args.warmup, precision=precision,
                     data={"sources": [{"path": str(ds)}], "num_workers": workers,
                           "val_fraction": 0.0})  # fmt: skip
        row = run_row(cfg, args.warmup)
        row |= {"preset": preset, "row": name, "device": str(device), "precision": precision,
                "workers": workers, "batch_size": cfg.batch_size,
                "mfu": flops * row["samples_per_s"] / peaks[precision]}  # fmt: skip
        results.append(row)
    base = results[0]["samples_per_s"]
    for row in results:
        row["vs_baseline"] = row["samples_per_s"] / base
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__[__doc__.index("Examples:") :],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--steps", type=int, default=12, help="measured steps per row")
    parser.add_argument("--warmup", type=int, default=3, help="steps dropped per row")
    parser.add_argument("--batch-size", type=int, default=None, help="override the preset's")
    parser.add_argument("--presets", default="small,paper", help="comma-separated")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=Path("bench/results/train_throughput.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    presets = [p for p in args.presets.split(",")
               if SETUPS[p]["device"] == "cpu" or torch.cuda.is_available()]  # fmt: skip
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in presets:
            results += bench_preset(preset, args, Path(tmp))
    header = (f"{'preset':<7}{'row':<9}{'device':<8}{'batch':>6}{'samples/s':>11}{'step ms':>9}"
              f"{'data ms':>9}{'compute ms':>11}{'MFU':>8}{'vs base':>9}")  # fmt: skip
    print(header)
    for r in results:
        print(f"{r['preset']:<7}{r['row']:<9}{r['device']:<8}{r['batch_size']:>6}"
              f"{r['samples_per_s']:>11.2f}{r['step_ms']:>9.1f}{r['data_ms']:>9.1f}"
              f"{r['compute_ms']:>11.1f}{r['mfu']:>8.1%}{r['vs_baseline']:>8.2f}x")  # fmt: skip
    env = {"torch": torch.__version__, "threads": torch.get_num_threads(),
           "cpu": platform.processor() or platform.machine(),
           "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"env": env, "rows": results}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
