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
official sampler, which starts windows at the first full history). Near the end, ``pad_end``
frames past the last one may repeat it (its action and frame: the robot holds still), as
diffusion_policy's sampler pads; 0 (default) keeps every window real, h_a + h_o' - 1 starts a
window at every frame, so the end of a task is learnt without recording idle frames after it.

``relative_to`` names a low-dim key (joint positions) whose value at t is subtracted from the
whole chunk: actions become offsets from the current joints, normalised with their own
statistics (``relative_action_stats``); the engine adds the joints back.

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

from uwm_ros.bundle.contract import Normalizer, image_array, normalizers

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
        pad_end: frames past an episode's end that may repeat its last one (default 0).
        episodes: episode indices to draw windows from (e.g. a train/validation split).
        action_dim: size of the zero actions of a dataset without an ``action`` key.
        relative_to: low-dim key of the joints the actions are made relative to (None: absolute).
        read_future: False leaves ``future_images`` out (the trainer has their latents cached).

    Items: ``obs_images`` (V, h_o, 3, H, W) float in [0, 1], ``proprio`` (h_o, P) normalised,
    ``actions`` (h_a, d_a) normalised to [-1, 1] (zeros when action-free), ``future_images``
    (V, h_o', 3, H, W), ``future_index`` (h_o',) their frame indices, ``has_action`` bool.
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
        pad_end: int = 0,
        relative_to: str | None = None,
        read_future: bool = True,
    ) -> None:
        store = Store(root)
        self.root, self.num_frames = Path(root), store.num_frames
        self.h_o, self.h_a, self.h_f = n_obs_steps, horizon, n_future_steps
        self.read_future = read_future
        pad = n_obs_steps - 1 if pad_start is None else pad_start
        if min(n_obs_steps, horizon) < 1 or n_future_steps < 0 or not 0 <= pad < n_obs_steps:
            raise DatasetError(
                f"need n_obs_steps, horizon >= 1, n_future_steps >= 0, 0 <= pad_start < "
                f"n_obs_steps; got {n_obs_steps}, {horizon}, {n_future_steps}, {pad}"
            )
        if not 0 <= pad_end < horizon + n_future_steps:
            raise DatasetError(
                f"pad_end must be in [0, horizon + n_future_steps = {horizon + n_future_steps}),"
                f" got {pad_end}"
            )
        self.cameras = list(cameras or store.cameras)
        missing = [c for c in self.cameras if c not in store.cameras]
        if missing:
            raise DatasetError(f"{root}: no cameras {missing}; it has {store.cameras}")
        self.frames = [store.frames(cam) for cam in self.cameras]
        lowdim, stats = store.spec["lowdim"], store.attrs["stats"]
        self.lowdim: dict[str, list[str]] = lowdim  # key -> names
        self.has_actions = "action" in lowdim and bool(store.has_action.any())
        self.proprio = self._normalized(store, list(proprio_keys), stats, root)
        self.reference: np.ndarray | None = None
        if relative_to is not None and "action" in lowdim:
            self.reference = _reference(store, relative_to, root)
            norm = Normalizer.from_stats(relative_action_stats(store, relative_to, horizon))
            self.relative_norm = norm
            self.actions = store.lowdim("action").astype(np.float64)  # raw: offsets per window
        elif "action" in lowdim and stats.get("action", {}).get("count"):
            self.actions = self._normalized(store, ["action"], stats, root)
        else:
            dim = len(lowdim["action"]) if "action" in lowdim else action_dim
            if dim is None:
                raise DatasetError(f"{root}: has no actions; pass action_dim for zero actions")
            self.actions = np.zeros((store.num_frames, dim), np.float32)
        # (current frame t, first and last frame of its episode, has_action, has_state)
        rows = []
        for e in range(store.num_episodes) if episodes is None else episodes:
            start, end = store.episode_range(e)
            first_t = start + n_obs_steps - 1 - pad
            last_t = end - horizon - n_future_steps + pad_end
            flags = (int(store.has_action[e]), int(store.has_state[e]))
            rows += [(t, start, end - 1, *flags) for t in range(first_t, last_t + 1)]
        self.index = np.array(rows, np.int64).reshape(-1, 5)

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

    def raw_windows(self, joints: str) -> tuple[np.ndarray, np.ndarray]:
        """Robot-unit actions (N, h_a, d_a) and joints ``joints`` (N, h_o, P) of the windows
        that have actions, sliced exactly as ``__getitem__`` does (for the baselines)."""
        store = Store(self.root)
        rows = self.index[self.index[:, 3] == 1]
        t, start, last = rows[:, 0:1], rows[:, 1:2], rows[:, 2:3]
        chunk = np.minimum(t + np.arange(self.h_a), last)  # (N, h_a)
        obs = np.maximum(t + np.arange(-self.h_o + 1, 1), start)  # (N, h_o)
        return store.lowdim("action")[chunk], store.lowdim(joints)[obs]

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        t, start, last, has_action, has_state = (int(v) for v in self.index[i])
        obs = np.maximum(np.arange(t - self.h_o + 1, t + 1), start)  # repeat the first frame
        chunk = np.minimum(np.arange(t, t + self.h_a), last)  # repeat the last frame
        future = np.minimum(np.arange(t + self.h_a, t + self.h_a + self.h_f), last)
        frames = np.concatenate([obs, future]) if self.read_future else obs
        wanted = np.unique(frames)
        images = np.stack(
            [np.stack([files.read(int(f)) for f in wanted])[np.searchsorted(wanted, frames)]
             for files in self.frames]
        )  # fmt: skip  # (V, h_o + h_o', H, W, 3) uint8
        pixels = torch.from_numpy(image_array(images))  # (V, h_o + h_o', 3, H, W)
        proprio = self.proprio[obs] if has_state else np.zeros_like(self.proprio[obs])
        actions = self.actions[chunk]
        item = {
            "obs_images": pixels[:, : self.h_o],
            "proprio": torch.from_numpy(np.ascontiguousarray(proprio)),
            "future_index": torch.from_numpy(future),
            "has_action": torch.tensor(bool(has_action)),
        }
        if self.read_future:
            item["future_images"] = pixels[:, self.h_o :]
        if self.reference is not None:
            actions = self.relative_norm.normalize(actions - self.reference[t]).astype(np.float32)
        actions = actions if has_action else np.zeros_like(actions)
        item["actions"] = torch.from_numpy(np.ascontiguousarray(actions, np.float32))
        return item


def _reference(store: Store, key: str, root: object) -> np.ndarray:
    """The joints of ``key`` in the order of the action names, raw (N, d_a) float64."""
    lowdim = store.spec["lowdim"]
    if key not in lowdim:
        raise DatasetError(f"{root}: relative actions need joints {key!r}; has {list(lowdim)}")
    names, wanted = list(lowdim[key]), list(lowdim["action"])
    missing = [n for n in wanted if n not in names]
    if missing:
        raise DatasetError(
            f"{root}: actions {missing} have no joint in {key!r} {names}: they cannot be made "
            "relative to the current joints"
        )
    return store.lowdim(key).astype(np.float64)[:, [names.index(n) for n in wanted]]


def relative_action_stats(store: Store, key: str, horizon: int) -> dict[str, list[float]]:
    """min/max of a[t+i] - q[t] (clamped at the episode end) over every frame t of the
    episodes with actions, per chunk step i and dimension, flattened (horizon * d_a): the next
    action moves a fraction of what the last one does, and one range for all steps would
    squeeze the near ones (the ones executed) into a sliver of [-1, 1]."""
    actions, reference = store.lowdim("action").astype(np.float64), _reference(store, key, store)
    lo = np.full((horizon, actions.shape[1]), np.inf)
    hi = np.full((horizon, actions.shape[1]), -np.inf)
    for e in np.flatnonzero(store.has_action):
        start, end = store.episode_range(int(e))
        t = np.arange(start, end)
        for i in range(horizon):
            offsets = actions[np.minimum(t + i, end - 1)] - reference[t]
            lo[i], hi[i] = np.minimum(lo[i], offsets.min(0)), np.maximum(hi[i], offsets.max(0))
    if not np.isfinite(lo).all():
        raise DatasetError(f"{store.root}: no episode with actions for relative statistics")
    return {"min": lo.ravel().tolist(), "max": hi.ravel().tolist()}
