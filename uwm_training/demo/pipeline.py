"""``uwm demo``: the whole product on one machine, no robot and no ROS install.

record (sim expert + action-free video) -> convert + preview -> train (the autoencoder on every
frame, then UWM on the robot data; closed-loop success every few minutes: the learning curve)
-> export + check -> closed-loop success on unseen layouts (``uwm eval``'s code, expert and
random on the same seeds) -> the policy node drives the sim over DDS -> predicted futures +
action plot. Each stage prints what it did; a failing stage stops the demo with its own error.
Outputs go to ``OUT`` (``demo_out/``); a rerun starts over.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
VIDEO_SEED = 10_000  # the action-free recordings
STAGES = 7


@dataclass(frozen=True)
class Budget:
    """How much of everything: the full demo or ``--quick``."""

    expert_episodes: int
    video_episodes: int
    minutes: float  # training wall time: autoencoder + UWM
    eval_episodes: int  # closed loop in process, unseen layouts
    dds_episodes: int  # closed loop through the policy node over DDS (and the media)
    curve_every: float  # training minutes between the learning curve's points
    batch_size: int = 64
    autoencoder_share: float = 0.2

    @property
    def autoencoder_minutes(self) -> float:
        return self.minutes * self.autoencoder_share


FULL = Budget(expert_episodes=400, video_episodes=60, minutes=22.0, eval_episodes=50,
              dds_episodes=5, curve_every=4.0)  # fmt: skip
QUICK = Budget(expert_episodes=6, video_episodes=3, minutes=0.6, eval_episodes=4,
               dds_episodes=1, curve_every=0.2, batch_size=4)  # fmt: skip
# The recipe of the learning study (README, bench/learning.py) on top of the small preset.
RECIPE: dict[str, Any] = {
    "data": {"relative_to": "joint_pos", "pad_end": None},
    "shift_augment": 4,
    "optim": {"lr": 3e-4, "warmup_steps": 100, "min_lr_ratio": 1.0},
}
# The autoencoder stage: sharp blocks within its few minutes need many small steps (measured on
# the sim's frames, one core: block pixels kept in colour 56 % after 3 min at 16 windows a step,
# 29 % after 6 min at 64; on a slower AVX2-only host 34 % with 4 frames per window, 82 % with
# one) and a higher learning rate than the DiT's.
AUTOENCODER_LR, AUTOENCODER_BATCH = 1e-3, 16


class DemoError(RuntimeError):
    """A stage failed; the message names the stage and carries its error."""


class Demo:
    """Runs the stages in order, timing each; ``summary`` collects what the user gets told."""

    def __init__(self, out: Path, budget: Budget) -> None:
        self.out, self.budget = out, budget
        self.summary: dict[str, Any] = {"budget": asdict(budget), "stages_s": {}}
        self.stage_count = 0

    def stage(self, name: str, run: Callable[[], T]) -> T:
        self.stage_count += 1
        print(f"\n=== [{self.stage_count}/{STAGES}] {name} ===", flush=True)
        started = time.perf_counter()
        try:
            result = run()
        except Exception as e:
            raise DemoError(f"stage '{name}' failed: {type(e).__name__}: {e}") from e
        seconds = time.perf_counter() - started
        self.summary["stages_s"][name] = round(seconds, 1)
        print(f"--- {name}: done in {seconds:.0f} s", flush=True)
        return result

    # ----- stages --------------------------------------------------------------------------------
    def record(self) -> None:
        from uwm_ros.sim.record import record_expert

        b = self.budget
        rec = record_expert(self.out / "recordings" / "expert", b.expert_episodes, seed=0)
        video = record_expert(self.out / "recordings" / "video", b.video_episodes, VIDEO_SEED,
                              action_free=True)  # fmt: skip
        print(f"expert: {rec.episodes} successful episodes, {rec.frames} frames (failed "
              f"demonstrations skipped: {len(rec.skipped_seeds)}); action-free: "
              f"{video.episodes} episodes, {video.frames} frames")  # fmt: skip

    def convert(self) -> None:
        from ..data.config import load_config
        from ..data.convert import bag_jobs, build_dataset
        from ..data.preview import write_preview
        from ..data.report import format_report

        for name, config in (("expert", "sim_convert.yaml"), ("video", "sim_convert_video.yaml")):
            cfg = load_config(CONFIG_DIR / config)
            jobs = bag_jobs([self.out / "recordings" / name], cfg)
            reports = build_dataset(jobs, self.out / "data" / name, workers=1)
            print("\n".join(format_report(r) for r in reports))
        frames = write_preview(self.out / "data" / "expert", self.out / "dataset_preview.mp4")
        print(f"wrote {self.out / 'dataset_preview.mp4'} ({frames} frames of episode 0)")

    def train(self) -> Path:
        from uwm_ros.sim.evaluate import SimSuccess

        from ..train.checkpoint import find_checkpoint
        from ..train.config import from_dict
        from ..train.loop import train
        from .reconstruction import object_errors

        b, runs = self.budget, self.out / "runs"
        # UWM on the robot data alone: co-training on the action-free video lost 8 and 20 points
        # at equal CPU time in the learning study; the autoencoder still learns from its frames.
        robot = {"path": str(self.out / "data" / "expert"), "weight": 3.0}
        video = {"path": str(self.out / "data" / "video"), "weight": 1.0}
        data = {**RECIPE["data"], "sources": [robot], "val_fraction": 0.05, "num_workers": 0}
        common: dict[str, Any] = {
            **RECIPE,
            "preset": "small",
            "data": data,
            "eval": {"every": 1_000_000, "batches": 1, "gif_samples": 4},  # once, at the end
            "batch_size": b.batch_size,
            "ckpt_every": 1_000_000,
            "keep_last": 1,
            "log_every": 10,
        }
        ae = train(from_dict({**common, "stage": "autoencoder", "out_dir": str(runs / "ae"),
                              "data": {**data, "sources": [robot, video]},
                              "optim": {**RECIPE["optim"], "lr": AUTOENCODER_LR},
                              "batch_size": min(AUTOENCODER_BATCH, b.batch_size),
                              "max_minutes": b.autoencoder_minutes}))  # fmt: skip
        assert ae.ema is not None
        drawn = object_errors(ae.ema, self.out / "data" / "expert")
        self.summary["autoencoder_objects"] = drawn
        print(f"autoencoder: block pixels kept in colour {drawn['block_kept']:.0%} (RMS "
              f"{drawn['block_rms']:.0f}/255), goal {drawn['goal_kept']:.0%} (RMS "
              f"{drawn['goal_rms']:.0f}/255)")  # fmt: skip
        curve = SimSuccess(b.curve_every, episodes=b.eval_episodes)
        uwm = train(from_dict({**common, "stage": "pretrain", "out_dir": str(runs / "uwm"),
                               "autoencoder_from": str(ae.checkpoint),
                               "max_minutes": b.minutes - b.autoencoder_minutes}),
                    closed_loop=curve)  # fmt: skip
        self.summary["train_steps"] = {"autoencoder": ae.step, "uwm": uwm.step}
        rows = [json.loads(line) for line in (runs / "uwm" / "metrics.jsonl").open()]
        self.summary["learning_curve"] = [r for r in rows if r["split"] == "closed_loop"]
        held_out = [r for r in rows if r["split"] == "eval"][-1]
        keys = ("policy_mse", "hold_mse", "linear_mse")
        self.summary["held_out_mse"] = {k: held_out[k] for k in keys if k in held_out}
        print(f"TensorBoard: tensorboard --logdir {runs}")
        return find_checkpoint(runs / "uwm")

    def export(self, checkpoint: Path) -> tuple[Path, dict[str, str]]:
        from uwm_ros.engines import load_engine

        from ..export.check import check_bundle
        from ..export.exporter import export_bundle
        from ..train.optim import cpu_has_native_bf16

        bundle = self.out / "bundle"
        export_bundle(checkpoint, bundle)  # policy + forward_dynamics (predicted frames)
        check_bundle(bundle)
        print(f"{bundle}: checked (files, hashes, ONNX Runtime against PyTorch)")
        candidates = [("onnxruntime", "fp32"), ("torch", "fp32")]
        if cpu_has_native_bf16():
            candidates.append(("torch", "bf16"))
        timings = {}
        for backend, precision in candidates:  # whichever is faster here drives the robot
            engine = load_engine(bundle, backend, "cpu", precision)
            engine.warmup(2)
            started = time.perf_counter()
            engine.warmup(5)
            timings[(backend, precision)] = (time.perf_counter() - started) / 5 * 1e3
            print(f"  {backend:<12} {precision}: {timings[(backend, precision)]:6.1f} ms per chunk")
        backend, precision = min(timings, key=timings.__getitem__)
        self.summary["backend_ms"] = {f"{k[0]}-{k[1]}": round(v, 1) for k, v in timings.items()}
        return bundle, {"backend": backend, "precision": precision}

    def evaluate(self, bundle: Path) -> None:
        from uwm_ros.engines.torch_engine import TorchEngine
        from uwm_ros.sim.evaluate import EVAL_SEED, closed_loop_success, report, seeds_from

        seeds = seeds_from(EVAL_SEED, self.budget.eval_episodes)
        # torch batches the episodes into one call; the same weights as every backend
        summaries = closed_loop_success(TorchEngine(bundle), seeds)
        self.summary["success"] = report(summaries)
        for name, summary in summaries.items():
            print(f"  {name:<8} {summary.line()}")

    def closed_loop(self, bundle: Path, engine: dict[str, str]) -> None:
        from uwm_ros.bundle.manifest import read_manifest
        from uwm_ros.sim.closed_loop import run_closed_loop
        from uwm_ros.sim.evaluate import EVAL_SEED, Summary
        from uwm_ros.sim.world import JOINT_NAMES

        from .media import write_action_plot, write_futures_video, write_learning_curve

        n = self.budget.dds_episodes
        params = {**engine, "frames_every": 1}
        loop = run_closed_loop(bundle, n, EVAL_SEED, self.out / "logs" / "policy.log", params)
        dds = Summary.of(loop.results)
        self.summary["success_dds"] = vars(dds)
        print(f"  policy node over DDS, the first {n} of the same layouts: {dds.line()}")
        self.summary["policy_inference_ms"] = round(loop.inference_ms, 1)
        fps = read_manifest(bundle).spec.fps
        frames = write_futures_video(loop.first, self.out / "predicted_futures.mp4", fps)
        write_action_plot(loop.first, list(JOINT_NAMES), self.out / "action_chunks.png")
        rates = {k: v["rate"] for k, v in self.summary["success"].items() if k != "policy"}
        write_learning_curve(self.summary["learning_curve"], self.out / "learning_curve.png",
                             rates)  # fmt: skip
        print(f"wrote {self.out / 'predicted_futures.mp4'} ({frames} frames), "
              f"{self.out / 'action_chunks.png'}, {self.out / 'learning_curve.png'}")  # fmt: skip

    def report(self) -> None:
        b, success = self.budget, self.summary["success"]
        (self.out / "summary.json").write_text(json.dumps(self.summary, indent=2) + "\n")
        print(f"\n=== uwm demo: summary ({self.out}) ===")
        for name, seconds in self.summary["stages_s"].items():
            print(f"  {name:<28} {seconds:7.0f} s")
        steps = self.summary["train_steps"]
        print(f"  trained {b.minutes:g} min: autoencoder {steps['autoencoder']} steps, "
              f"UWM {steps['uwm']} steps (batch {b.batch_size})")  # fmt: skip
        print(f"  success over {b.eval_episodes} unseen episodes (95 % CI):")
        for name, row in success.items():
            print(f"    {name:<8} {row['rate']:.0%} ({row['successes']}/{row['episodes']}, "
                  f"{row['low']:.0%}-{row['high']:.0%})")  # fmt: skip
        mse = self.summary.get("held_out_mse", {})
        if mse:
            parts = [f"{k.removesuffix('_mse')} {v:.4f}" for k, v in mse.items()]
            print("  held-out action MSE (rad^2): " + " | ".join(parts))
        print(f"  policy inference {self.summary['policy_inference_ms']} ms per chunk")
        for name in ("learning_curve.png", "predicted_futures.mp4", "action_chunks.png",
                     "dataset_preview.mp4", "summary.json"):  # fmt: skip
            print(f"  {self.out / name}")


def run_demo(out: Path, budget: Budget) -> dict[str, Any]:
    """All stages into a fresh ``out``; returns the summary (also in ``out/summary.json``)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    demo = Demo(out, budget)
    demo.stage("record demonstrations", demo.record)
    demo.stage("convert to a dataset", demo.convert)
    checkpoint = demo.stage("train", demo.train)
    bundle, engine = demo.stage("export and check the bundle", lambda: demo.export(checkpoint))
    demo.stage("closed-loop success", lambda: demo.evaluate(bundle))
    demo.stage("policy node over DDS", lambda: demo.closed_loop(bundle, engine))
    demo.stage("report", demo.report)
    return demo.summary


def _cmd_demo(args: argparse.Namespace) -> int:
    import sys

    budget = QUICK if args.quick else FULL
    if args.minutes is not None:
        budget = Budget(**{**asdict(budget), "minutes": args.minutes})
    try:
        run_demo(args.out, budget)
    except DemoError as e:
        print(f"\nuwm demo stopped: {e}", file=sys.stderr)
        return 1
    return 0


def register(sub: Any) -> None:
    doc = "record, convert, train, export and run the policy against the simulated robot"
    p = sub.add_parser("demo", help=doc, description=doc + " (about 25 minutes on 2 cores).",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=(
        "examples:\n  uwm demo                       # what make demo runs\n"
        "  uwm demo --minutes 60          # train longer\n"
        "  uwm demo --quick --out /tmp/d  # every stage on tiny budgets (~2 min)"
    ))  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output directory")
    p.add_argument("--quick", action="store_true", help="tiny budgets: checks the pipeline")
    p.add_argument("--minutes", type=float, help="training wall time (default 22; quick 0.6)")
    p.set_defaults(func=_cmd_demo)
