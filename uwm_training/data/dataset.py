"""Training windows from a dataset store: the torch ``Dataset`` the UWM loss consumes.

One sample around the current frame t (here h_o = ``n_obs_steps`` = 2, h_a = ``horizon`` = 4,
h_o' = ``n_future_steps`` = 2)::

    frame          t-1    t     t+1   t+2   t+3   t+4   t+5
    obs_images    [ o     o ]                                  h_o frames ending at t
    proprio       [ p     p ]
    actions              [ a     a     a     a ]               h_a actions, the first at t
    future_images                                 [ o'    o']  h_o' frames after the chunk

This is the official UWM slicing of one sequence of h_o - 1 + h_a + h_o' frames
(obs = seq[:h_o], actions = seq[h_o-1 : h_o-1+h_a], future = seq[h_o-1+h_a:]). Windows stay
inside one episode. Near an episode start the missing history repeats the episode's first frame
(``pad_start`` frames at most; default h_o - 1, as the runtime pads its history; 0 gives the
official sampler, which starts windows at the first full history). The end is never padded:
future frames must be real.

Low-dim arrays are loaded and normalised once (small); a sample reads exactly its window's
image frames, one chunk file each, and nothing around them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from uwm_ros.bundle.contract import image_array, normalizers

from .errors import DatasetError
from .store import Store


class UWMDataset(Dataset[dict[str, Tensor]]):
    """Windows of a dataset store as model batches.

    Args:
        root: the dataset store.
        n_obs_steps: h_o, current frames per sample.
        horizon: h_a, actions per sample.
        n_future_steps: h_o', future frames per sample.
        cameras: views in model order (default: the dataset's order).
        proprio_keys: low-dim keys concatenated into ``proprio``; ``()`` leaves it out.
        pad_start: history frames that may be padded at an episode start (default h_o - 1).
        episodes: episode indices to draw windows from (e.g. a train/validation split).
        action_dim: size of the zero actions of a dataset without an ``action`` key.

    Items: ``obs_images`` (V, h_o, 3, H, W) float in [0, 1], ``proprio`` (h_o, P) normalised,
    ``actions`` (h_a, d_a) normalised to [-1, 1] (zeros when action-free), ``future_images``
    (V, h_o', 3, H, W), ``has_action`` bool.
    """

    def __init__(
        self,
        root: str | Path,
        n_obs_steps: int = 2,
        horizon: int = 16,
        n_future_steps: int = 2,
        cameras: Sequence[str] | None = None,
        proprio_keys: Sequence[str] = ("joint_pos",),
        pad_start: int | None = None,
        episodes: Sequence[int] | None = None,
        action_dim: int | None = None,
    ) -> None:
        store = Store(root)
        self.h_o, self.h_a, self.h_f = n_obs_steps, horizon, n_future_steps
        pad = n_obs_steps - 1 if pad_start is None else pad_start
        if min(n_obs_steps, horizon) < 1 or n_future_steps < 0 or not 0 <= pad < n_obs_steps:
            raise DatasetError(
                f"need n_obs_steps, horizon >= 1, n_future_steps >= 0, 0 <= pad_start < "
                f"n_obs_steps; got {n_obs_steps}, {horizon}, {n_future_steps}, {pad}"
            )
        self.cameras = list(cameras or store.cameras)
        missing = [c for c in self.cameras if c not in store.cameras]
        if missing:
            raise DatasetError(f"{root}: no cameras {missing}; it has {store.cameras}")
        self.frames = [store.frames(cam) for cam in self.cameras]
        lowdim, stats = store.spec["lowdim"], store.attrs["stats"]
        self.proprio = self._normalized(store, list(proprio_keys), stats, root)
        if "action" in lowdim and stats.get("action", {}).get("count"):
            self.actions = self._normalized(store, ["action"], stats, root)
        else:
            dim = len(lowdim["action"]) if "action" in lowdim else action_dim
            if dim is None:
                raise DatasetError(f"{root}: has no actions; pass action_dim for zero actions")
            self.actions = np.zeros((store.num_frames, dim), np.float32)
        # (current frame t, first frame of its episode, has_action, has_state) per sample
        rows = []
        for e in range(store.num_episodes) if episodes is None else episodes:
            start, end = store.episode_range(e)
            first_t = start + n_obs_steps - 1 - pad
            last_t = end - horizon - n_future_steps
            flags = (int(store.has_action[e]), int(store.has_state[e]))
            rows += [(t, start, *flags) for t in range(first_t, last_t + 1)]
        self.index = np.array(rows, np.int64).reshape(-1, 4)

    @staticmethod
    def _normalized(
        store: Store, keys: list[str], stats: dict[str, dict[str, list[float]]], root: object
    ) -> np.ndarray:
        """(N, sum of dims) float32, each key normalised with its stored min/max."""
        if not keys:
            return np.zeros((store.num_frames, 0), np.float32)
        empty = [k for k in keys if k in stats and not stats[k].get("count")]
        if empty:
            raise DatasetError(f"{root}: no statistics for {empty} (no episode has them)")
        norms = normalizers(stats, keys)
        parts = [norms[k].normalize(store.lowdim(k).astype(np.float32)) for k in keys]
        return np.concatenate(parts, axis=1).astype(np.float32)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        t, start, has_action, has_state = (int(v) for v in self.index[i])
        obs = np.maximum(np.arange(t - self.h_o + 1, t + 1), start)  # repeat the first frame
        future = np.arange(t + self.h_a, t + self.h_a + self.h_f)
        frames = np.concatenate([obs, future])
        wanted = np.unique(frames)
        images = np.stack(
            [np.stack([files.read(int(f)) for f in wanted])[np.searchsorted(wanted, frames)]
             for files in self.frames]
        )  # fmt: skip  # (V, h_o + h_o', H, W, 3) uint8
        pixels = torch.from_numpy(image_array(images))  # (V, h_o + h_o', 3, H, W)
        proprio = self.proprio[obs] if has_state else np.zeros_like(self.proprio[obs])
        actions = self.actions[t : t + self.h_a]
        return {
            "obs_images": pixels[:, : self.h_o],
            "proprio": torch.from_numpy(np.ascontiguousarray(proprio)),
            "actions": torch.from_numpy(actions if has_action else np.zeros_like(actions)),
            "future_images": pixels[:, self.h_o :],
            "has_action": torch.tensor(bool(has_action)),
        }
