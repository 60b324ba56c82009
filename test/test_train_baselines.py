"""The trivial baselines that sit beside every policy metric, against their closed forms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from uwm_ros.bundle.contract import Normalizer
from uwm_training.data.dataset import UWMDataset
from uwm_training.data.store import Store
from uwm_training.train.baselines import Windows, fit_linear, hold_mse, linear_mse, measure
from uwm_training.train.synthetic import make_dataset

RNG = np.random.default_rng(0)


def _windows(n: int, offset: np.ndarray, h_a: int = 4, h_o: int = 2) -> Windows:
    """Robots that stand still at random joints; every action = joints + ``offset``."""
    q = RNG.uniform(-1, 1, (n, 1, len(offset))).repeat(h_o, axis=1)  # (N, h_o, P)
    return Windows(q[:, -1:, :].repeat(h_a, axis=1) + offset, q)


def test_hold_is_the_mean_squared_offset_and_linear_recovers_it() -> None:
    offset = np.array([0.3, -0.1, 0.2])
    train, val = _windows(200, offset), _windows(50, offset)
    assert hold_mse(val, [0, 1, 2]) == pytest.approx(np.mean(offset**2))
    assert linear_mse(fit_linear(train), val) == pytest.approx(0.0, abs=1e-8)  # a = q + c
    both = measure([train], [val], [0, 1, 2])
    assert both == {"hold_mse": pytest.approx(np.mean(offset**2)),
                    "linear_mse": pytest.approx(0.0, abs=1e-8)}  # fmt: skip


def test_linear_baseline_explains_only_what_proprio_determines() -> None:
    """Noise the joints cannot predict stays: held-out MSE ~ its variance."""
    train, val = _windows(4000, np.zeros(2)), _windows(4000, np.zeros(2))
    noisy = [Windows(w.actions + RNG.normal(0, 0.1, w.actions.shape), w.joints)
             for w in (train, val)]  # fmt: skip
    assert linear_mse(fit_linear(noisy[0]), noisy[1]) == pytest.approx(0.01, rel=0.05)


def test_raw_windows_slice_like_the_samples(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", episodes=3, length=9, joints=3)
    data = UWMDataset(root, n_obs_steps=2, horizon=4, n_future_steps=2, pad_end=5)
    actions, joints = data.raw_windows("joint_pos")
    assert len(actions) == len(data) == 3 * 9  # every frame starts a window (pad_end)
    store = Store(root)
    norm = Normalizer.from_stats(store.attrs["stats"]["action"])
    for i in (0, 8, 13):
        item = data[i]
        np.testing.assert_allclose(norm.normalize(actions[i]), item["actions"].numpy(), atol=1e-6)
        q = Normalizer.from_stats(store.attrs["stats"]["joint_pos"]).normalize(joints[i])
        np.testing.assert_allclose(q, item["proprio"].numpy(), atol=1e-6)
