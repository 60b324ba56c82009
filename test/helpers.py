"""Test helpers: a tiny model config that runs in milliseconds on a CPU, random weights."""

from __future__ import annotations

import torch

from uwm_training.model import AutoencoderConfig, PolicySpec, UWMConfig


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


def tiny_spec(cfg: UWMConfig) -> PolicySpec:
    """Names and non-trivial statistics, so unnormalisation visibly changes the numbers."""
    return PolicySpec(
        fps=10.0,
        action_names=tuple(f"a{i}" for i in range(cfg.action_dim)),
        proprio_names=tuple(f"joint{i}" for i in range(cfg.proprio_dim)),
        normalization={
            "actions": {
                "min": [-2.0 - i for i in range(cfg.action_dim)],
                "max": [3.0] * cfg.action_dim,
            },
            "proprio": {
                "min": [-1.0] * cfg.proprio_dim,
                "max": [0.5 + i for i in range(cfg.proprio_dim)],
            },
        },
    )
