"""The learning study: which recipe makes the small UWM act well, at equal CPU budget and seed.

One dataset (the sim's expert demonstrations + action-free video, as ``make demo`` records) and
one autoencoder serve every row. Each row trains for the same **CPU time** of one intra-op
thread (``budget_clock: cpu``: what the row computes, whatever else the machine runs), then:

* closed-loop success on ``--episodes`` unseen layouts with its Wilson 95 % interval (``uwm
  eval``'s code), the scripted expert and a random policy on the same seeds;
* held-out policy MSE beside the hold-the-joints and proprio-linear baselines (robot units);
* steps and training samples per CPU-second.

Rows run ``--jobs`` at a time, each in its own process pinned to its own core. Prints a table,
writes bench/results/learning.json (and every row's run under ``--work``).

Examples:
    python bench/learning.py                              # every row, 12 CPU-minutes each
    python bench/learning.py --rows recipe,dp,cotrain --minutes 20 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RECIPE: dict[str, Any] = {  # the winner: the small preset + what the demo trains with
    "preset": "small",
    "stage": "pretrain",
    "data": {"relative_to": "joint_pos", "pad_end": None},
    "shift_augment": 4,
}
TODAY: dict[str, Any] = {  # the small preset and training before the study
    "preset": "small",
    "stage": "pretrain",
    "model": {
        "obs_encoder": "resnet18",
        "embed_dim": 256,
        "depth": 6,
        "prediction": "epsilon",
        "timestep_embed_dim": 512,
    },  # fmt: skip
    "data": {"relative_to": None, "pad_end": 0},
    "shift_augment": 0,
}
ROWS: dict[str, dict[str, Any]] = {
    "today": TODAY,
    "recipe": RECIPE,
    "epsilon": {**RECIPE, "model": {"prediction": "epsilon"}},
    "resnet18": {**RECIPE, "model": {"obs_encoder": "resnet18"}},
    "absolute actions": {**RECIPE, "data": {"relative_to": None, "pad_end": None}},
    "no shift aug": {**RECIPE, "shift_augment": 0},
    "no proprio": {**RECIPE, "model": {"proprio_dim": 0}},
    "D256x6 DiT": {**RECIPE, "model": {"embed_dim": 256, "depth": 6}},
    "dp": {**RECIPE, "model": {"future_obs": False}},
    "cotrain": {**RECIPE, "stage": "cotrain"},
    "anneal": {**RECIPE, "optim": {"min_lr_ratio": 0.0}},
    "policy fraction 0": {**RECIPE, "model": {"policy_fraction": 0.0}},
    "policy fraction 0.75": {**RECIPE, "model": {"policy_fraction": 0.75}},
    "400 demos": {**RECIPE, "demos": 400},  # twice the expert episodes (seeds 0-399)
    "video patch 8": {**RECIPE, "model": {"patch_size": 8}},  # 4 video tokens instead of 16
    "batch 32": {**RECIPE, "batch_size": 32},
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def prepare(work: Path, episodes: int, ae_minutes: float, rows: Sequence[str] = ()) -> Path:
    """Record + convert the demonstrations (and a row's own count of them: ``demos``) and train
    the autoencoder once; returns its checkpoint."""
    from uwm_ros.sim.record import record_expert
    from uwm_training.data.config import load_config
    from uwm_training.data.convert import bag_jobs, build_dataset
    from uwm_training.train import train
    from uwm_training.train.checkpoint import find_checkpoint
    from uwm_training.train.config import from_dict

    config = Path(__file__).resolve().parents[1] / "config"
    datasets = [("expert", episodes, 0, "sim_convert.yaml"),
                ("video", episodes * 3 // 10, 10_000, "sim_convert_video.yaml")]  # fmt: skip
    counts = sorted({ROWS[r]["demos"] for r in rows if "demos" in ROWS[r]})
    datasets += [(_expert(n), n, 0, "sim_convert.yaml") for n in counts]
    for name, count, seed, yaml in datasets:
        if not (work / "data" / name).exists():
            record_expert(work / "rec" / name, count, seed, action_free=name == "video")
            jobs = bag_jobs([work / "rec" / name], load_config(config / yaml))
            build_dataset(jobs, work / "data" / name, progress=False)
    ae = work / "ae"
    if not (ae / "last").exists():
        row = {"preset": "small", "stage": "autoencoder", "optim": {"lr": 1e-3}}
        train(from_dict(_config(work, row, ae, ae_minutes, "cpu")))
    return find_checkpoint(ae)


def _expert(demos: int | None) -> str:
    return f"expert-{demos}" if demos else "expert"


def _config(work: Path, row: dict[str, Any], out: Path, minutes: float, clock: str) -> dict:
    sources = [{"path": str(work / "data" / _expert(row.get("demos"))), "weight": 3.0}]
    row = {k: v for k, v in row.items() if k != "demos"}
    if row.get("stage") in ("cotrain", "autoencoder"):
        sources.append({"path": str(work / "data" / "video"), "weight": 1.0})
    base = {"out_dir": str(out), "max_minutes": minutes, "budget_clock": clock,
            "data": {"sources": sources, "val_fraction": 0.05, "num_workers": 0},
            "optim": {"lr": 3e-4, "warmup_steps": 100, "min_lr_ratio": 1.0},
            "eval": {"every": 1_000_000, "batches": 1, "gif_samples": 0},
            "batch_size": 64, "ckpt_every": 1_000_000, "keep_last": 1, "seed": 0}  # fmt: skip
    return _merge(base, row)


def run_row(name: str, work: Path, minutes: float, episodes: int) -> dict[str, Any]:
    """Train one row on one thread for ``minutes`` of CPU time, then evaluate it."""
    import torch

    from uwm_ros.engines.torch_engine import TorchEngine
    from uwm_ros.sim.evaluate import (
        EVAL_SEED,
        Execution,
        Summary,
        engine_policy,
        run_policy,
        seeds_from,
    )
    from uwm_training.train import train
    from uwm_training.train.config import from_dict

    torch.set_num_threads(1)
    out = work / "runs" / name.replace(" ", "_")
    cfg = _config(work, ROWS[name], out, minutes, "cpu")
    cfg["autoencoder_from"] = str(work / "ae" / "last")
    result = train(from_dict(cfg))
    assert result.checkpoint is not None
    rows = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    steps = [r for r in rows if r["split"] == "train"]
    held = [r for r in rows if r["split"] == "eval"][-1]
    engine = TorchEngine.from_checkpoint(result.checkpoint)
    seeds = seeds_from(EVAL_SEED, episodes)
    cfgm = engine.cfg
    summary = Summary.of(run_policy(engine_policy(engine), seeds, cfgm.n_obs_steps,
                                    Execution(), cfgm.image_size))  # fmt: skip
    per_s = sorted(r["samples_per_s"] for r in steps)[len(steps) // 2]
    return {"success": vars(summary), "steps": result.step, "samples_per_cpu_s": per_s,
            **{k: held.get(k) for k in ("policy_mse", "hold_mse", "linear_mse")}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="rows: " + ", ".join(ROWS))  # fmt: skip
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated row names")
    parser.add_argument("--minutes", type=float, default=12.0, help="CPU minutes per row")
    parser.add_argument("--episodes", type=int, default=50, help="unseen layouts per row")
    parser.add_argument("--demos", type=int, default=200, help="expert episodes recorded")
    parser.add_argument("--ae-minutes", type=float, default=6.0, help="autoencoder CPU minutes")
    parser.add_argument("--jobs", type=int, default=1, help="rows at a time (one core each)")
    parser.add_argument("--work", type=Path, default=Path("bench/results/learning"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/learning.json"))
    parser.add_argument("--row", help=argparse.SUPPRESS)  # a worker process: one row
    args = parser.parse_args()
    if args.row:
        result = run_row(args.row, args.work, args.minutes, args.episodes)
        (args.work / "rows" / f"{args.row}.json").write_text(json.dumps(result, indent=2))
        return
    names = args.rows.split(",")
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {list(ROWS)}")
    prepare(args.work, args.demos, args.ae_minutes, names)
    (args.work / "rows").mkdir(parents=True, exist_ok=True)
    done = [n for n in names if (args.work / "rows" / f"{n}.json").exists()]
    if done:
        print(f"kept from an earlier run (delete rows/NAME.json to rerun): {', '.join(done)}")
    pending = [n for n in names if n not in done]
    running: dict[str, tuple[subprocess.Popen[bytes], int]] = {}  # row -> (process, its core)
    cores = list(range(os.cpu_count() or 1))
    while pending or running:
        while pending and len(running) < min(args.jobs, len(cores)):
            busy = {core for _, core in running.values()}
            name, core = pending.pop(0), next(c for c in cores if c not in busy)
            command = ["taskset", "-c", str(core), sys.executable, __file__, "--row", name,
                       "--work", str(args.work), "--minutes", str(args.minutes),
                       "--episodes", str(args.episodes)]  # fmt: skip
            log = (args.work / "rows" / f"{name}.log").open("w")
            running[name] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), core)
        time.sleep(5)
        for name, (proc, _) in list(running.items()):
            if proc.poll() is not None:
                del running[name]
                if proc.returncode:
                    print(f"row {name!r} failed: see {args.work / 'rows' / (name + '.log')}")
    _report(args, names)


def _report(args: argparse.Namespace, names: list[str]) -> None:
    from uwm_ros.sim.evaluate import EVAL_SEED, baselines, seeds_from

    results = {n: json.loads((args.work / "rows" / f"{n}.json").read_text())
               for n in names if (args.work / "rows" / f"{n}.json").exists()}  # fmt: skip
    refs = {k: v.line() for k, v in baselines(seeds_from(EVAL_SEED, args.episodes)).items()}
    print(
        f"\nlearning study: {args.minutes:g} CPU-minutes per row (one thread), "
        f"{args.episodes} unseen layouts, execute 4 of 16"
    )
    w = max(len(n) for n in [*results, *refs]) + 2
    print(f"{'row':<{w}}{'success (95 % CI)':>24}{'policy MSE':>12}{'hold':>9}{'linear':>9}"
          f"{'steps':>7}{'samples/cpu-s':>15}")  # fmt: skip
    for name, r in results.items():
        s = r["success"]
        ci = f"{s['rate']:.0%} ({s['low']:.0%}-{s['high']:.0%})"
        print(f"{name:<{w}}{ci:>24}{r['policy_mse']:>12.4f}{r['hold_mse']:>9.4f}"
              f"{r['linear_mse']:>9.4f}{r['steps']:>7}{r['samples_per_cpu_s']:>15.0f}")  # fmt: skip
    for name, line in refs.items():
        print(f"{name:<{w}}{line}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"cpu_minutes": args.minutes, "episodes": args.episodes, "rows": results,
              "reference": refs}  # fmt: skip
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
