"""``uwm demo --quick``: every stage of the demo on tiny budgets, as a user runs it (its own
process, its own loopback DDS domain), so the pipeline never rots."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import cv2


def test_quick_demo_runs_every_stage(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "uwm_training.cli", "demo", "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["stages_s"]) == {
        "record demonstrations", "convert to a dataset", "train",
        "export and check the bundle", "closed-loop success", "policy node over DDS",
    }  # fmt: skip
    rates = {name: row["rate"] for name, row in summary["success"].items()}
    assert set(rates) == {"policy", "expert", "random"}
    assert all(0.0 <= r <= 1.0 for r in rates.values()) and rates["expert"] >= 0.5
    assert summary["success"]["policy"]["episodes"] == 4
    assert summary["success_dds"]["episodes"] == 1
    assert min(summary["train_steps"].values()) >= 1
    assert {"policy_mse", "hold_mse", "linear_mse"} <= set(summary["held_out_mse"])
    assert summary["learning_curve"] and "success" in summary["learning_curve"][-1]
    assert "success over 4 unseen episodes (95 % CI):" in done.stdout
    assert cv2.imread(str(out / "learning_curve.png")) is not None
    assert (out / "bundle" / "bundle.yaml").exists() and list(
        (out / "runs" / "uwm" / "tb").iterdir()
    )
    with av.open(str(out / "predicted_futures.mp4")) as video:
        frames = [f.to_ndarray(format="rgb24") for f in video.decode(video=0)]
    assert len(frames) >= 5 and frames[0].shape[1] == 3 * frames[0].shape[0]
    assert cv2.imread(str(out / "action_chunks.png")) is not None
    assert (out / "dataset_preview.mp4").stat().st_size > 0


def test_failing_stage_stops_the_demo_with_its_error(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "uwm_training.cli", "demo", "--quick", "--out", str(out),
         "--minutes", "-1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1
    assert "uwm demo stopped: stage 'train' failed: TrainError" in done.stderr
    assert "max_minutes" in done.stderr and not (out / "bundle").exists()
