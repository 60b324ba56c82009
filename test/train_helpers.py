"""Training test helpers: a tiny training config that runs a step in well under a second on a
CPU, one intra-op thread, and the synthetic datasets of ``uwm_training.train.synthetic``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from uwm_training.train.config import TrainConfig, from_dict
from uwm_training.train.synthetic import make_dataset

__all__ = ["TINY_MODEL", "make_dataset", "one_thread", "tiny_config", "train_autoencoder"]

TINY_MODEL: dict[str, Any] = {
    "embed_dim": 64,
    "depth": 2,
    "num_heads": 2,
    "num_registers": 2,
    "horizon": 4,
    "timestep_embed_dim": 64,
    "autoencoder": {"downsample": 4, "base_channels": 8},
}


@contextmanager
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a shared 2-core machine two OpenMP threads that spin-wait for
    each other run many times slower than one as soon as anything else is busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_autoencoder(
    out_dir: Path, sources: Sequence[Path], steps: int = 1, **fields: Any
) -> Path:
    """A briefly trained autoencoder for the other stages; returns its checkpoint."""
    from uwm_training.train import train

    train(tiny_config(out_dir, sources, stage="autoencoder", steps=steps, **fields))
    return out_dir / "last"


def tiny_config(
    out_dir: Path, sources: Sequence[Path | tuple[Path, float]], **fields: Any
) -> TrainConfig:
    """A config for the tiny model on CPU: no workers, no evaluation unless asked."""
    entries = [
        {"path": str(s[0]), "weight": s[1]} if isinstance(s, tuple) else {"path": str(s)}
        for s in sources
    ]
    base: dict[str, Any] = {
        "stage": "pretrain",
        "out_dir": str(out_dir),
        "model": dict(TINY_MODEL),
        "data": {"sources": entries, "num_workers": 0, "val_fraction": 0.25},
        "optim": {"lr": 1e-3, "warmup_steps": 2},
        "eval": {"every": 0, "batches": 1, "gif_samples": 2},
        "steps": 4,
        "batch_size": 2,
        "ckpt_every": 1000,
        "log_every": 1,
        "device": "cpu",
        "precision": "fp32",
    }
    for key, value in fields.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return from_dict(base)
