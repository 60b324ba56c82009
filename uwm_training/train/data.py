"""The datasets of a run: sources checked against the model, a train/val split by episode, and
one normalisation for all of them.

Every source is a dataset store normalised with its own statistics by ``UWMDataset``; a run
needs one normalisation (it travels with the weights as the ``PolicySpec``), so samples of a
source whose statistics differ are re-mapped exactly (normalised = affine in raw units). The
run's statistics are the union of its robot sources' (or, finetuning in the same action space,
the checkpoint's). Action-free sources (videos) have no proprio: it is zero-filled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import ConcatDataset, Dataset

from uwm_ros.bundle.contract import Normalizer, image_array

from ..data.dataset import UWMDataset, relative_action_stats
from ..data.stats import merge_stats
from ..data.store import Store
from ..model import PolicySpec, UnifiedWorldModel, UWMConfig
from .baselines import Windows, measure
from .config import DataConfig, TrainConfig, TrainError

ROBOT_STAGES = ("pretrain", "finetune")  # stages that train on action-labelled episodes only
LATENT_BATCH = 256  # frames per autoencoder call while caching latents


@dataclass
class Source:
    """One opened dataset of the mixture."""

    path: Path
    weight: float
    store: Store

    @property
    def spec(self) -> dict[str, Any]:
        return self.store.spec

    def action_stats(self, relative_to: str | None, horizon: int) -> dict[str, list[float]]:
        """min/max of the actions as the model learns them: absolute, or relative."""
        if relative_to is None:
            return _min_max(self.store.attrs["stats"], ["action"])
        return relative_action_stats(self.store, relative_to, horizon)

    @property
    def has_actions(self) -> bool:
        return "action" in self.spec["lowdim"] and bool(self.store.has_action.any())

    def episodes(self, stage: str) -> np.ndarray:
        """Episodes the stage trains on: action-labelled ones only, except for co-training."""
        every = np.arange(self.store.num_episodes)
        return every[self.store.has_action] if stage in ROBOT_STAGES else every


def open_sources(cfg: TrainConfig) -> list[Source]:
    """Open every source; the stage decides whether action-free data is allowed."""
    sources = [Source(Path(s.path), s.weight, Store(s.path)) for s in cfg.data.sources]
    fps = {float(s.spec["fps"]) for s in sources}
    if len(fps) > 1:
        raise TrainError(f"data.sources: all sources need one fps, got {sorted(fps)}")
    robots = [s for s in sources if s.has_actions]
    if cfg.stage in ROBOT_STAGES:
        bare = [str(s.path) for s in sources if not s.has_actions]
        if bare:
            raise TrainError(f"stage {cfg.stage}: sources {bare} have no actions; use cotrain")
    elif cfg.stage == "cotrain" and not robots:
        raise TrainError("stage cotrain: needs at least one source with actions")
    return sources


def data_defaults(sources: Sequence[Source], proprio_keys: Sequence[str]) -> dict[str, Any]:
    """Model fields a new model takes from the data: cameras, image size, action/proprio sizes."""
    first = sources[0].spec
    out: dict[str, Any] = {"cameras": tuple(first["cameras"]), "image_size": first["image_size"]}
    robot = next((s for s in sources if s.has_actions), None)
    if robot is not None:
        lowdim = robot.spec["lowdim"]
        out["action_dim"] = len(lowdim["action"])
        absent = [k for k in proprio_keys if k not in lowdim]
        if absent:
            raise TrainError(
                f"{robot.path}: no proprio keys {absent} (has {list(lowdim)}); set "
                "data.proprio_keys, or model.proprio_dim: 0 to train without proprio"
            )
        out["proprio_dim"] = sum(len(lowdim[k]) for k in proprio_keys)
    return out


def check_sources(sources: Sequence[Source], cfg: UWMConfig, proprio_keys: Sequence[str]) -> None:
    """Raise one error listing every way the datasets do not fit the model config."""
    problems = []
    for s in sources:
        spec, name = s.spec, str(s.path)
        if spec["image_size"] != cfg.image_size:
            problems.append(f"{name}: image_size {spec['image_size']} != model {cfg.image_size}")
        missing = [c for c in cfg.cameras if c not in spec["cameras"]]
        if missing:
            problems.append(f"{name}: no cameras {missing} (has {spec['cameras']})")
        if not s.has_actions:
            continue
        dim = len(spec["lowdim"]["action"])
        if dim != cfg.action_dim:
            problems.append(f"{name}: action has {dim} dims, model action_dim {cfg.action_dim}")
        if cfg.proprio_dim:
            absent = [k for k in proprio_keys if k not in spec["lowdim"]]
            size = sum(len(spec["lowdim"][k]) for k in proprio_keys if k in spec["lowdim"])
            if absent:
                problems.append(f"{name}: no proprio keys {absent} (has {list(spec['lowdim'])})")
            elif size != cfg.proprio_dim:
                problems.append(f"{name}: proprio {list(proprio_keys)} has {size} dims, "
                                f"model proprio_dim {cfg.proprio_dim}")  # fmt: skip
    robots = [s for s in sources if s.has_actions]
    if len({tuple(s.spec["lowdim"]["action"]) for s in robots}) > 1:
        problems.append("robot sources name their actions differently: one action space per run")
    if len({s.spec.get("action_kind", "unknown") for s in robots}) > 1:
        problems.append("robot sources' actions are of different kinds (positions, deltas...)")
    if problems:
        raise TrainError("datasets do not match the model config:\n  " + "\n  ".join(problems))


def dataset_spec(
    sources: Sequence[Source],
    cfg: UWMConfig,
    proprio_keys: Sequence[str],
    relative_to: str | None = None,
) -> PolicySpec | None:
    """Names, fps and the union of the robot sources' statistics; None without robot sources."""
    robots = [s for s in sources if s.has_actions]
    if not robots:
        return None
    keys = list(proprio_keys) if cfg.proprio_dim else []
    lowdim = robots[0].spec["lowdim"]
    dims = {k: len(lowdim[k]) for k in keys}
    stats: dict[str, Any] = {}
    for s in robots:
        stats = merge_stats(stats, s.store.attrs["stats"], dims)
    own = [s.action_stats(relative_to, cfg.horizon) for s in robots]
    union = {"min": np.min([a["min"] for a in own], 0), "max": np.max([a["max"] for a in own], 0)}
    normalization = {"actions": {k: v.tolist() for k, v in union.items()}}
    if keys:
        normalization["proprio"] = _min_max(stats, keys)
    joints = keys or ([relative_to] if relative_to else [])
    return PolicySpec(
        fps=float(robots[0].spec["fps"]),
        action_names=tuple(lowdim["action"]),
        proprio_names=tuple(n for k in joints for n in lowdim[k]),
        normalization=normalization,
        relative_actions=relative_to is not None,
        action_kind=robots[0].spec.get("action_kind", "unknown"),  # datasets before it: unknown
    )


def _min_max(stats: dict[str, Any], keys: Sequence[str]) -> dict[str, list[float]]:
    return {s: [float(v) for k in keys for v in stats[k][s]] for s in ("min", "max")}


class Remap:
    """Re-normalise values normalised with ``source`` statistics to ``target`` statistics."""

    def __init__(self, source: Normalizer, target: Normalizer) -> None:
        self.source, self.target = source, target

    def __call__(self, x: Tensor) -> Tensor:
        return self.target.normalize(self.source.unnormalize(x)).float()


class SourceWindows(Dataset[dict[str, Tensor]]):
    """One source's windows in the run's units (shared normalisation, proprio always present)."""

    def __init__(
        self, windows: UWMDataset, actions: Remap | None, proprio: Remap | None, proprio_dim: int
    ) -> None:
        self.windows, self.actions, self.proprio, self.proprio_dim = (
            windows, actions, proprio, proprio_dim)  # fmt: skip
        self.latents: Tensor | None = None  # every frame's future latents, once cached

    @property
    def has_actions(self) -> bool:
        return self.windows.has_actions

    def cache_latents(self, latents: Tensor) -> None:
        """Serve ``future_latents`` from (frames, V, C, h, w) instead of reading future frames."""
        self.latents = latents
        self.windows.read_future = False

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        item = self.windows[i]
        if self.latents is not None:  # (F, V, C, h, w) -> (V, C, h_o', h, w)
            item["future_latents"] = self.latents[item["future_index"]].permute(1, 2, 0, 3, 4)
        if self.actions is not None and item["has_action"]:
            item["actions"] = self.actions(item["actions"])
        if item["proprio"].shape[-1] != self.proprio_dim:  # a source without proprio (video)
            item["proprio"] = torch.zeros(item["proprio"].shape[0], self.proprio_dim)
        elif self.proprio is not None:
            item["proprio"] = self.proprio(item["proprio"])
        return item


@dataclass
class RunData:
    """Training windows per source (ConcatDataset order), held-out windows, the spec."""

    train: ConcatDataset[dict[str, Tensor]]
    sizes: list[int]
    weights: list[float]
    val: ConcatDataset[dict[str, Tensor]] | None
    spec: PolicySpec | None


def build_data(
    sources: Sequence[Source], model: UWMConfig, cfg: TrainConfig, spec: PolicySpec | None
) -> RunData:
    """Split each source by episode and wrap its windows in the run's normalisation ``spec``."""
    keys = list(cfg.data.proprio_keys) if model.proprio_dim else []
    check_sources(sources, model, keys)
    train, val = [], []
    for s in sources:
        episodes = s.episodes(cfg.stage)
        held = _held_out(len(episodes), cfg.data.val_fraction)
        train.append(_windows(s, model, keys, np.delete(episodes, held), cfg.data, spec))
        if not len(train[-1]):
            raise TrainError(
                f"{s.path}: no training windows; episodes need at least horizon + "
                f"n_future_steps = {model.horizon + model.n_future_steps} frames"
            )
        if len(held):
            val.append(_windows(s, model, keys, episodes[held], cfg.data, spec))
    val = [v for v in val if len(v)]
    return RunData(
        train=ConcatDataset(train),
        sizes=[len(t) for t in train],
        weights=[s.weight for s in sources],
        val=ConcatDataset(val) if val else None,
        spec=spec,
    )


def _held_out(n: int, fraction: float) -> np.ndarray:
    """Evenly spaced episode positions, centred, at least one when there are two or more."""
    if fraction <= 0 or n < 2:
        return np.zeros(0, np.int64)
    k = min(n - 1, max(1, round(fraction * n)))
    return ((np.arange(k) + 0.5) * n / k).astype(np.int64)


def _windows(
    s: Source,
    model: UWMConfig,
    keys: list[str],
    episodes: np.ndarray,
    data: DataConfig,
    spec: PolicySpec | None,
) -> SourceWindows:
    own_keys = keys if s.has_actions else []
    n_future = model.n_future_steps if model.future_obs else 0
    relative_to = data.relative_to if s.has_actions else None
    windows = UWMDataset(
        s.path,
        n_obs_steps=model.n_obs_steps,
        horizon=model.horizon,
        n_future_steps=n_future,
        cameras=model.cameras,
        proprio_keys=own_keys,
        pad_start=data.pad_start,
        episodes=episodes.tolist(),
        action_dim=model.action_dim,
        pad_end=model.horizon + n_future - 1 if data.pad_end is None else data.pad_end,
        relative_to=relative_to,
    )
    actions = proprio = None
    if spec is not None and s.has_actions:
        stats = s.store.attrs["stats"]
        own = s.action_stats(relative_to, model.horizon)
        actions = _remap(own, spec.normalization["actions"])
        if own_keys:
            proprio = _remap(_min_max(stats, own_keys), spec.normalization["proprio"])
    return SourceWindows(windows, actions, proprio, model.proprio_dim)


def _remap(source: dict[str, list[float]], target: dict[str, list[float]]) -> Remap | None:
    """None when the source is already normalised with the target statistics."""
    src, dst = Normalizer.from_stats(source), Normalizer.from_stats(target)
    return None if src == dst else Remap(src, dst)


@torch.no_grad()
def cache_latents(model: UnifiedWorldModel, data: RunData, device: torch.device) -> None:
    """Encode every frame of every source once with the frozen autoencoder; the training
    windows then serve ``future_latents`` (what the loss would encode) and skip future frames.
    Held-out windows keep their frames: evaluation shows them next to the predictions."""
    cache: dict[Path, Tensor] = {}
    for windows in data.train.datasets:
        assert isinstance(windows, SourceWindows)
        root = windows.windows.root
        if root not in cache:
            cache[root] = _encode_frames(model, windows.windows, device)
        windows.cache_latents(cache[root])


def _encode_frames(model: UnifiedWorldModel, windows: UWMDataset, device: torch.device) -> Tensor:
    """(frames, V, C, h, w) latents of every frame of the store behind ``windows``."""
    views = []
    for files in windows.frames:
        parts = []
        for first in range(0, windows.num_frames, LATENT_BATCH):
            count = min(LATENT_BATCH, windows.num_frames - first)
            frames = np.stack([files.read(first + i) for i in range(count)])
            pixels = torch.from_numpy(image_array(frames))
            parts.append(model.encode_future(pixels[None, None].to(device))[0, 0].float().cpu())
        views.append(torch.cat(parts, dim=1))  # (C, frames, h, w)
    return torch.stack(views).permute(2, 0, 1, 3, 4).contiguous()  # (frames, V, C, h, w)


def baseline_metrics(data: RunData, joints: Sequence[str]) -> dict[str, float]:
    """hold / linear baselines (``baselines.py``) on the run's held-out windows, in robot
    units; empty when there is nothing to compare (no held-out robot windows, or no joint key
    among ``joints`` that names every action dimension)."""
    if data.val is None or data.spec is None:
        return {}
    robots = [w for w in data.train.datasets if isinstance(w, SourceWindows) and w.has_actions]
    held = [w for w in data.val.datasets if isinstance(w, SourceWindows) and w.has_actions]
    lowdim = robots[0].windows.lowdim if robots else {}
    key = next((k for k in joints if set(data.spec.action_names) <= set(lowdim.get(k, ()))), None)
    if key is None or not held:
        return {}
    index = [list(lowdim[key]).index(n) for n in data.spec.action_names]
    parts = [Windows(*w.windows.raw_windows(key)) for w in [*robots, *held]]
    return measure(parts[: len(robots)], parts[len(robots) :], index)
