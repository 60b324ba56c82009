"""Trivial baselines beside every policy metric: a loss that falls proves nothing, an error
below what copying the joints achieves does.

On the same held-out windows as the policy, in robot units (the dataset's action units, e.g.
rad², so recipes with absolute and relative actions compare):

* ``hold``: every action of the chunk = the current joint positions (the robot stands still);
* ``linear``: least squares from the h_o proprio frames (+ 1) to the chunk, fitted on the
  training windows: what proprioception alone explains.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

RIDGE = 1e-6  # relative to the mean diagonal of X^T X: keeps constant joints solvable


class Windows(NamedTuple):
    """Raw arrays of windows with actions: actions (N, h_a, d_a), joints (N, h_o, P)."""

    actions: np.ndarray
    joints: np.ndarray

    @classmethod
    def concat(cls, parts: Sequence[Windows]) -> Windows:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls._fields))


def hold_mse(windows: Windows, action_index: Sequence[int]) -> float:
    """MSE of holding the current joints (``action_index``: each action's joint column)."""
    current = windows.joints[:, -1, list(action_index)]  # (N, d_a)
    return float(np.mean((windows.actions - current[:, None]) ** 2))


def fit_linear(windows: Windows) -> np.ndarray:
    """Ridge-regularised least squares [proprio frames, 1] -> chunk; (h_o*P + 1, h_a*d_a)."""
    x, y = _features(windows), windows.actions.reshape(len(windows.actions), -1)
    gram = x.T @ x
    ridge = RIDGE * np.trace(gram) / len(gram) * np.eye(len(gram))
    return np.linalg.solve(gram + ridge, x.T @ y)


def linear_mse(weights: np.ndarray, windows: Windows) -> float:
    """MSE of the fitted linear map's chunks on ``windows``."""
    predicted = (_features(windows) @ weights).reshape(windows.actions.shape)
    return float(np.mean((windows.actions - predicted) ** 2))


def _features(windows: Windows) -> np.ndarray:
    flat = windows.joints.reshape(len(windows.joints), -1)
    return np.concatenate([flat, np.ones((len(flat), 1))], axis=1)


def measure(
    train: Sequence[Windows], val: Sequence[Windows], action_index: Sequence[int]
) -> dict[str, float]:
    """Both baselines on the held-out windows (the linear map fitted on the training ones)."""
    held = Windows.concat(val)
    return {
        "hold_mse": hold_mse(held, action_index),
        "linear_mse": linear_mse(fit_linear(Windows.concat(train)), held),
    }
