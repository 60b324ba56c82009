"""Test helpers: a tiny model config that runs in milliseconds on a CPU, random weights."""

from __future__ import annotations

import torch

from uwm_training.model import AutoencoderConfig, UWMConfig


def tiny_config(**overrides: object) -> UWMConfig:
    """Two cameras so multi-view paths run; every size small but none degenerate."""
    base: dict[str, object] = dict(
        cameras=("left", "right"),
        image_size=32,
        horizon=4,
        action_dim=3,
        proprio_dim=2,
        embed_dim=64,
        depth=2,
        num_heads=2,
        num_registers=2,
        patch_size=2,
        autoencoder=AutoencoderConfig(downsample=4, base_channels=16),
    )
    return UWMConfig(**{**base, **overrides})  # type: ignore[arg-type]


def randomize(model: torch.nn.Module, seed: int = 0, std: float = 0.05) -> torch.nn.Module:
    """Overwrite every parameter with noise: zero-initialised adaLN would hide wiring bugs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


def make_batch(cfg: UWMConfig, batch_size: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    B, V, S = batch_size, cfg.num_views, cfg.image_size
    batch = {
        "obs_images": torch.rand(B, V, cfg.n_obs_steps, 3, S, S, generator=g),
        "actions": torch.rand(B, cfg.horizon, cfg.action_dim, generator=g) * 2 - 1,
        "future_images": torch.rand(B, V, cfg.n_future_steps, 3, S, S, generator=g),
    }
    if cfg.proprio_dim:
        batch["proprio"] = torch.rand(B, cfg.n_obs_steps, cfg.proprio_dim, generator=g)
    return batch
