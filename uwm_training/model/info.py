"""Parameter counts per component and FLOPs of a denoiser pass and of a policy chunk.

Everything runs on the ``meta`` device: shapes only, no memory, so the paper preset is free.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from uwm_ros.bundle.config import UWMConfig

from .uwm import UnifiedWorldModel


class ModelInfo(NamedTuple):
    params: dict[str, int]  # component -> parameter count
    flops: dict[str, int]  # computation -> FLOPs (multiply-add = 2)


def count(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def parameter_counts(model: UnifiedWorldModel) -> dict[str, int]:
    den = model.denoiser
    adaln = count(den.adaLN_obs) + count(den.adaLN_t)
    return {
        "obs_encoder": count(model.obs_encoder),
        "autoencoder (frozen)": count(model.autoencoder),
        "denoiser (DiT)": count(den),
        "  adaLN modulation": adaln,
        "  transformer blocks": sum(count(b) for b in den.blocks),
        "  final layer": count(den.final_layer),
        "  timestep embedder": count(den.t_embedder),
        "  action encoder+decoder": count(den.action_encoder) + count(den.action_decoder),
        "  video patchifier": count(den.patchifier),
        "  registers + pos_embed": den.registers.numel() + den.pos_embed.numel(),
        "total": count(model),
    }


def _flops(fn) -> int:  # type: ignore[no-untyped-def]
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def model_info(cfg: UWMConfig, batch_size: int = 1) -> ModelInfo:
    """Count parameters and FLOPs of ``cfg`` without allocating memory."""
    with torch.device("meta"):
        model = UnifiedWorldModel(cfg).eval()
        B = batch_size
        images = torch.rand(B, cfg.num_views, cfg.n_obs_steps, 3, cfg.image_size, cfg.image_size)
        proprio = torch.rand(B, cfg.n_obs_steps, cfg.proprio_dim) if cfg.proprio_dim else None
        obs = torch.rand(B, cfg.obs_feature_dim)
        action = torch.rand(B, cfg.horizon, cfg.action_dim)
        future = torch.rand(B, *cfg.latent_shape) if cfg.future_obs else None
        t = torch.zeros((), dtype=torch.long)
        with torch.no_grad():
            flops = {
                "obs encoding": _flops(lambda: model.obs_encoder(images, proprio)),
                "denoiser pass": _flops(lambda: model.denoiser(obs, action, t, future, t)),
                "policy chunk (obs cached)": _flops(
                    lambda: model.sample("policy", images, proprio)
                ),
                "policy chunk (uncached, official)": _flops(
                    lambda: model.sample("policy", images, proprio, cache_obs_conditioning=False)
                ),
            }
    return ModelInfo(parameter_counts(model), flops)
