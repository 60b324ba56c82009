"""``uwm eval``'s closed loop: episodes in lock step, chunks through the node's scheduler."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from helpers import randomize, tiny_config

from uwm_ros.engines.base import Observation
from uwm_ros.sim.evaluate import (
    EVAL_SEED,
    Execution,
    Summary,
    baselines,
    run_policy,
    seeds_from,
    wilson_interval,
)
from uwm_ros.sim.expert import expert
from uwm_ros.sim.node import CAMERA
from uwm_ros.sim.render import COLORS
from uwm_ros.sim.world import JOINT_NAMES, LOWER, TABLE, UPPER, World
from uwm_training.export.exporter import export_bundle
from uwm_training.model import PolicySpec, UnifiedWorldModel, save_model

SEEDS = seeds_from(EVAL_SEED, 20)


def _centroid(image: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
    """World position of the pixels closest to ``color`` (the inverse of the camera)."""
    dist = np.abs(image.astype(np.int32) - np.array(color)).sum(-1)
    rows, cols = np.nonzero(dist < 40)
    size = image.shape[0]
    u, v = (cols.mean() + 0.5) / size, 1.0 - (rows.mean() + 0.5) / size
    return TABLE[0] + np.array([u, v]) * (TABLE[1] - TABLE[0])


def _visual_expert(horizon: int) -> object:
    """The expert acting on what the camera shows: block and goal from the newest frame only.
    It succeeds only if ``run_policy`` hands over the current frame and joints, in order."""

    def act(observations: Sequence[Observation]) -> list[np.ndarray]:
        chunks = []
        for obs in observations:
            frame = obs.images[CAMERA][-1]
            world = World(q=obs.joint_positions[-1].astype(np.float64),
                          block=_centroid(frame, COLORS["block"]),
                          goal=_centroid(frame, COLORS["goal"]))  # fmt: skip
            chunks.append(np.repeat(expert(world)[None], horizon, axis=0))
        return chunks

    return act


def test_a_policy_that_sees_what_the_expert_knows_reaches_its_rate() -> None:
    results = run_policy(_visual_expert(4), SEEDS, 2, Execution(1, "switch"), parallel=7)
    assert [r.seed for r in results] == SEEDS
    assert Summary.of(results).rate >= 0.9  # the privileged expert: 100 % on these seeds


def test_stale_observations_break_the_visual_expert() -> None:
    """Replanning every 8 steps from one frame: the same policy fails (the loop is closed)."""
    results = run_policy(_visual_expert(8), SEEDS, 2, Execution(8, "switch"))
    assert Summary.of(results).rate < 0.5


def test_expert_and_random_baselines_on_their_known_rates() -> None:
    summaries = baselines(SEEDS)
    assert summaries["expert"].rate >= 0.95 and summaries["random"].rate <= 0.1


def test_wilson_interval_matches_the_closed_form() -> None:
    low, high = wilson_interval(25, 50)
    assert abs(low - 0.3664) < 1e-3 and abs(high - 0.6336) < 1e-3  # the textbook 0.5, n = 50
    assert wilson_interval(0, 50) == (0.0, pytest.approx(0.0713, abs=1e-3))  # 3.6 / (n + 3.8)
    assert wilson_interval(50, 50) == (pytest.approx(0.9287, abs=1e-3), pytest.approx(1.0))


def test_eval_cli_in_process_and_through_the_node_over_dds(tmp_path: Path) -> None:
    """A random-weight bundle for the sim's camera and joints: ``uwm eval --dds`` runs the same
    seeds in process and through the real node over loopback DDS, and both fail alike."""
    model = randomize(UnifiedWorldModel(tiny_config(cameras=(CAMERA,), action_dim=3,
                                                    proprio_dim=3)).eval())  # fmt: skip
    spec = PolicySpec(10.0, JOINT_NAMES, JOINT_NAMES, {
        "actions": {"min": list(LOWER), "max": list(UPPER)},
        "proprio": {"min": list(LOWER), "max": list(UPPER)}})  # fmt: skip
    save_model(model, tmp_path / "ckpt.safetensors", spec)  # type: ignore[arg-type]
    export_bundle(tmp_path / "ckpt.safetensors", tmp_path / "bundle")
    out = tmp_path / "eval.json"
    done = subprocess.run(
        [sys.executable, "-m", "uwm_training.cli", "eval", str(tmp_path / "bundle"), "--dds",
         "--episodes", "2", "--seed", str(EVAL_SEED), "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    success = json.loads(out.read_text())["success"]
    assert set(success) == {"policy", "policy_dds", "expert", "random"}
    assert success["policy_dds"]["episodes"] == success["policy"]["episodes"] == 2
    assert success["expert"]["rate"] == 1.0
    in_process, dds = success["policy"], success["policy_dds"]
    assert dds["low"] <= in_process["rate"] <= dds["high"]  # they agree within the interval
