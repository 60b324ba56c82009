"""Held-out evaluation of the EMA weights: per-mode sampling error and a GIF of the futures.

Per mode (DESIGN §4) the sampled modality is compared with the held-out truth in the model's
units: actions normalised to [-1, 1], future latents ~unit variance. Action metrics use only
samples that have actions. The policy's own error (``policy_mse``) is measured over every
held-out window, in robot units, beside the baselines of ``baselines.py``. The GIF shows, per
held-out window and camera, the last observed frame, the real future frames, and the futures
the video and forward-dynamics modes predict, decoded by the autoencoder; the autoencoder
stage shows frames next to their reconstructions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from uwm_ros.bundle.contract import Normalizer

from ..data.video import VideoWriter
from ..model import UnifiedWorldModel
from .optim import autocast

TILE = 96  # pixels per GIF tile: small frames are upscaled so a person can see them
LABEL_HEIGHT = 16
GIF_FPS = 2.0


def eval_loader(
    data: Dataset[dict[str, Tensor]], batches: int, batch_size: int, num_workers: int
) -> DataLoader[dict[str, Tensor]]:
    """The same held-out windows every time: evenly spaced over the held-out set."""
    n = len(data)  # type: ignore[arg-type]
    picks = np.unique(np.linspace(0, n - 1, min(n, batches * batch_size)).round().astype(int))
    return DataLoader(Subset(data, picks.tolist()), batch_size=batch_size, num_workers=num_workers)


@torch.no_grad()
def evaluate(
    model: UnifiedWorldModel,
    loader: Iterable[dict[str, Tensor]],
    device: torch.device,
    precision: str,
    stage: str,
    seed: int,
) -> tuple[dict[str, float], list[tuple[str, Tensor]]]:
    """Mean metrics over ``loader`` and the GIF columns (label, (N, T, 3, H, W)) of its first
    batch. A fixed generator makes two evaluations of the same weights identical."""
    g = torch.Generator(device).manual_seed(seed)
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, float] = defaultdict(float)
    columns: list[tuple[str, Tensor]] = []
    model.eval()
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast(precision, device):
            if stage == "autoencoder":
                metrics, shown = _autoencoder(model, batch)
            else:
                metrics, shown = _modes(model, batch, g)
        for name, (total, count) in metrics.items():
            sums[name] += total
            counts[name] += count
        columns = columns or shown
    return {k: sums[k] / counts[k] for k in sums if counts[k]}, columns


Metrics = dict[str, tuple[float, float]]  # name -> (sum, count): means over uneven batches


def _autoencoder(model: UnifiedWorldModel, batch: dict[str, Tensor]) -> tuple[Metrics, list]:
    ae = model.autoencoder
    assert ae is not None
    frames = torch.cat([batch["obs_images"], batch["future_images"]], dim=2)  # (B, V, T, 3, H, W)
    recon = ae.decode(ae.encode(frames.flatten(0, 2))).float().reshape(frames.shape)
    err = (recon - frames).pow(2)
    shown = [("real", frames[:, 0]), ("reconstructed", recon[:, 0])]
    return {"recon_mse": (err.sum().item(), err.numel())}, shown


def _modes(
    model: UnifiedWorldModel, batch: dict[str, Tensor], g: torch.Generator
) -> tuple[Metrics, list]:
    obs, proprio, actions = batch["obs_images"], batch.get("proprio"), batch["actions"]
    has = batch["has_action"]
    _, info = model.loss(batch, generator=g)
    n = float(len(has))
    out: Metrics = {f"val_{k}": (v * n, n) for k, v in info.items()}
    if not model.cfg.future_obs:
        return out, []
    latents = model.encode_future(batch["future_images"])
    inverse = model.sample(
        "inverse_dynamics", obs, proprio, future_latents=latents, generator=g
    ).actions
    forward = model.sample("forward_dynamics", obs, proprio, actions=actions, generator=g)
    video = model.sample("video", obs, proprio, generator=g)
    assert forward.future_latents is not None and video.future_latents is not None
    out["inverse_dynamics_action_mse"] = _mse(inverse, actions, has)
    out["forward_dynamics_latent_mse"] = _mse(forward.future_latents, latents, has)
    out["video_latent_mse"] = _mse(video.future_latents, latents, torch.ones_like(has))
    view = 0  # the GIF shows the first camera; every camera enters the metrics
    shown = [
        ("observed", obs[:, view, -1:]),
        ("real", batch["future_images"][:, view]),
        ("video", model.decode_future(video.future_latents)[:, view]),
        ("forward dyn.", model.decode_future(forward.future_latents)[:, view]),
    ]
    return out, shown


@torch.no_grad()
def policy_mse(
    model: UnifiedWorldModel,
    windows: Dataset[dict[str, Tensor]],
    actions: Normalizer,
    device: torch.device,
    precision: str,
    samples: int,
    seed: int,
    batch_size: int,
) -> float:
    """Policy-mode MSE in robot units over every held-out window with actions, ``samples``
    draws each: the number to set beside the baselines (``baselines.py``)."""
    g = torch.Generator(device).manual_seed(seed)
    model.eval()
    total, count = 0.0, 0
    for batch in DataLoader(windows, batch_size=batch_size):
        has = batch["has_action"]
        if not has.any():
            continue
        obs = batch["obs_images"][has].to(device).repeat(samples, 1, 1, 1, 1, 1)
        proprio = batch["proprio"][has].to(device).repeat(samples, 1, 1)
        truth = batch["actions"][has].to(device).repeat(samples, 1, 1)
        with autocast(precision, device):
            sample = model.sample("policy", obs, proprio if model.cfg.proprio_dim else None,
                                  generator=g).actions  # fmt: skip
        assert sample is not None
        err = actions.unnormalize(sample.float()) - actions.unnormalize(truth.float())
        total, count = total + err.pow(2).sum().item(), count + err.numel()
    return total / max(count, 1)


def _mse(pred: Tensor | None, target: Tensor, mask: Tensor) -> tuple[float, float]:
    """(sum of squared errors, element count) over the samples selected by ``mask``."""
    assert pred is not None
    sel = mask.bool()
    err = (pred[sel].float() - target[sel].float()).pow(2)
    return err.sum().item(), float(err.numel())


def grid_frames(columns: list[tuple[str, Tensor]], rows: int) -> list[np.ndarray]:
    """A labelled grid per time step: one row per window, one column per entry."""
    rows = min(rows, len(columns[0][1]))
    steps = max(c.shape[1] for _, c in columns)
    header = np.zeros((LABEL_HEIGHT, TILE * len(columns), 3), np.uint8)
    for i, (label, _) in enumerate(columns):
        cv2.putText(header, label, (i * TILE + 3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.38,
                    (255, 255, 255), 1, cv2.LINE_AA)  # fmt: skip
    frames = []
    for t in range(steps):
        grid = [
            np.hstack([_tile(c[r, min(t, c.shape[1] - 1)]) for _, c in columns])
            for r in range(rows)
        ]
        frames.append(np.vstack([header, *grid]))
    return frames


def write_gif(path: Path, frames: list[np.ndarray]) -> Path:
    """Frames (H, W, 3) uint8 -> an animated GIF (PyAV)."""
    with VideoWriter(path, GIF_FPS, frames[0].shape[1], frames[0].shape[0]) as writer:
        for frame in frames:
            writer.write(frame)
    return path


def _tile(image: Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (TILE, TILE, 3) uint8, nearest-neighbour so pixels stay sharp."""
    rgb = (image.float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    return cv2.resize(rgb, (TILE, TILE), interpolation=cv2.INTER_NEAREST)
