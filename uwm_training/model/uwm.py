"""Unified World Model: observation encoder + frozen latent autoencoder + DiT denoiser + DDIM.

Fixing the two diffusion timesteps turns the same weights into five samplers:

| mode             | denoises | the other modality                              |
|------------------|----------|-------------------------------------------------|
| policy           | a        | o' = noise held at ``marginal_t``               |
| video            | o'       | a = noise held at ``marginal_t``                |
| forward_dynamics | o'       | given a, t_a = 0                                |
| inverse_dynamics | a        | given o' latents, t_o' = 0                      |
| joint            | a and o' | both at the same t                              |

Shapes: obs images (B, V, h_o, 3, H, W) in [0, 1]; proprio (B, h_o, P) and actions
(B, h_a, d_a) normalised; future latents (B, V, C, h_o', h, w).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from uwm_ros.bundle.config import UWMConfig

from .autoencoder import build_autoencoder
from .diffusion import DDIMScheduler
from .dit import UWMDenoiser
from .vision import ObservationEncoder

MODES = ("policy", "video", "forward_dynamics", "inverse_dynamics", "joint")
# mode -> (denoise actions, denoise future latents)
_DENOISED = {
    "policy": (True, False),
    "video": (False, True),
    "forward_dynamics": (False, True),
    "inverse_dynamics": (True, False),
    "joint": (True, True),
}


class Sample(NamedTuple):
    """What a sampler produced; the modality a mode does not denoise is None."""

    actions: Tensor | None
    future_latents: Tensor | None


class UnifiedWorldModel(nn.Module):
    """The whole model; ``imagenet_weights`` (a local torchvision resnet18 state dict) only
    initialises a new model's ResNet, so it is not part of the config; ``pretrained_weights``
    False skips reading a pretrained VAE's weights when a checkpoint will overwrite them."""

    def __init__(
        self,
        cfg: UWMConfig,
        imagenet_weights: str | Path | None = None,
        pretrained_weights: bool = True,
    ):
        super().__init__()
        self.cfg = cfg
        self.obs_encoder = ObservationEncoder(cfg, imagenet_weights)
        self.autoencoder = (
            build_autoencoder(cfg.autoencoder, pretrained_weights) if cfg.future_obs else None
        )
        if self.autoencoder is not None:
            self.autoencoder.requires_grad_(False)  # frozen: trained at stage 0 or pretrained
        self.denoiser = UWMDenoiser(cfg)
        self.scheduler = DDIMScheduler(cfg.num_train_steps, cfg.num_inference_steps,
                                       cfg.prediction)  # fmt: skip

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the network computes in: its weights' (fp32, or bf16/fp16 for engines)."""
        return self.denoiser.adaLN_obs.weight.dtype

    def encode_obs(self, images: Tensor, proprio: Tensor | None = None) -> Tensor:
        """Observation features (B, obs_dim) in the compute dtype; inputs may be fp32."""
        dtype = self.dtype
        return self.obs_encoder(images.to(dtype), None if proprio is None else proprio.to(dtype))

    # ----- future frames <-> latents -----------------------------------------------------------
    def encode_future(self, images: Tensor) -> Tensor:
        """(B, V, T', 3, H, W) in [0, 1] -> normalised latents (B, V, C, T', h, w)."""
        assert self.autoencoder is not None, "the DP baseline (future_obs: false) has no latents"
        B, V, T = images.shape[:3]
        z = self.autoencoder.encode(images.flatten(0, 2))  # (B*V*T', C, h, w)
        return z.reshape(B, V, T, *z.shape[1:]).transpose(2, 3)

    def decode_future(self, latents: Tensor) -> Tensor:
        """Normalised latents (B, V, C, T', h, w) -> images (B, V, T', 3, H, W) in [0, 1]."""
        assert self.autoencoder is not None, "the DP baseline (future_obs: false) has no latents"
        B, V = latents.shape[:2]
        dtype = next(self.autoencoder.parameters()).dtype  # fp32, or bf16/fp16 for engines
        z = latents.transpose(2, 3).flatten(0, 2).to(dtype)  # (B*V*T', C, h, w)
        x = self.autoencoder.decode(z).float()  # (B*V*T', 3, H, W)
        return x.reshape(B, V, -1, *x.shape[1:])

    # ----- training ----------------------------------------------------------------------------
    def loss(
        self, batch: dict[str, Tensor], generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """MSE(ε_a) + MSE(ε_o') with independent uniform t_a, t_o'.

        ``batch``: obs_images, actions, optional proprio, has_action (B,) bool (action-free
        samples get t_a = T-1 and pure-noise actions; their action loss is masked unless
        ``mask_action_free_loss`` is off), and future_latents or future_images (UWM only).
        """
        cfg, sched = self.cfg, self.scheduler
        actions = batch["actions"]
        B, dev = actions.shape[0], actions.device
        has_action = batch.get("has_action", torch.ones(B, dtype=torch.bool, device=dev))
        obs = self.encode_obs(batch["obs_images"], batch.get("proprio"))

        T = cfg.num_train_steps
        t_a = torch.randint(0, T, (B,), device=dev, generator=generator)
        t_a = torch.where(has_action, t_a, T - 1)
        noise_a = torch.randn(actions.shape, device=dev, generator=generator)
        noisy_a = torch.where(
            _bcast(has_action, 3), sched.add_noise(actions, noise_a, t_a), noise_a
        )

        future = t_o = noise_o = latents = None
        if cfg.future_obs:
            latents = batch.get("future_latents")
            if latents is None:
                with torch.no_grad():
                    latents = self.encode_future(batch["future_images"])
            t_o = torch.randint(0, T, (B,), device=dev, generator=generator)
            noise_o = torch.randn(latents.shape, device=dev, generator=generator)
            future = sched.add_noise(latents, noise_o, t_o)
            if cfg.policy_fraction:  # the policy sampler's own input: o' = noise at marginal_t
                draw = torch.rand(B, device=dev, generator=generator)
                policy = has_action & (draw < cfg.policy_fraction)
                t_o = torch.where(policy, torch.full_like(t_o, int(cfg.marginal_t or 0)), t_o)
                future = torch.where(_bcast(policy, future.ndim), noise_o, future)

        eps_a, eps_o = self.denoiser(obs, noisy_a, t_a, future, t_o)
        target_a = sched.target(actions, noise_a)
        per_sample = F.mse_loss(eps_a, target_a, reduction="none").mean(dim=(1, 2))  # (B,)
        if cfg.mask_action_free_loss:
            weight = has_action.float()
            action_loss = (per_sample * weight).sum() / weight.sum().clamp(min=1)
        else:
            action_loss = per_sample.mean()
        loss = action_loss
        info = {"action_loss": action_loss.item()}
        if eps_o is not None and noise_o is not None and latents is not None:
            video_loss = F.mse_loss(eps_o, sched.target(latents, noise_o))
            loss = loss + video_loss
            info["video_loss"] = video_loss.item()
        info["loss"] = loss.item()
        return loss, info

    # ----- sampling ----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        mode: str,
        obs_images: Tensor,
        proprio: Tensor | None = None,
        *,
        actions: Tensor | None = None,
        future_latents: Tensor | None = None,
        noise_actions: Tensor | None = None,
        noise_future: Tensor | None = None,
        generator: torch.Generator | None = None,
        cache_obs_conditioning: bool = True,
    ) -> Sample:
        """Run ``num_inference_steps`` DDIM steps in ``mode`` (see the module table).

        ``actions`` are required by (and only by) forward_dynamics, ``future_latents`` by
        inverse_dynamics. The start noise is drawn from ``generator`` unless given, which makes
        a sample reproducible and exportable. ``cache_obs_conditioning=False`` recomputes the
        whole adaLN conditioning at every step, as the official code does.
        """
        self._check_mode_inputs(mode, actions, future_latents)
        cfg, den = self.cfg, self.denoiser
        B, dev = obs_images.shape[0], obs_images.device
        a = _noise(noise_actions, (B, cfg.horizon, cfg.action_dim), dev, generator)
        o = None
        if cfg.future_obs:
            o = _noise(noise_future, (B, *cfg.latent_shape), dev, generator)
        if actions is not None:  # forward_dynamics
            a = actions
        if future_latents is not None:  # inverse_dynamics
            o = future_latents

        denoise_a, denoise_o = _DENOISED[mode]
        marginal_t = cfg.marginal_t
        assert marginal_t is not None  # resolved to T-1 by the config
        held_a = 0 if mode == "forward_dynamics" else marginal_t
        held_o = 0 if mode == "inverse_dynamics" else marginal_t
        steps = torch.tensor(self.scheduler.timesteps, device=dev)
        t_a = steps if denoise_a else torch.full_like(steps, held_a)  # (S,) one per step
        t_o = steps if denoise_o else torch.full_like(steps, held_o)

        # The network computes in self.dtype (fp32, or bf16/fp16 for engines); the DDIM update
        # always runs in fp32.
        dtype = self.dtype

        def net(x: Tensor | None) -> Tensor | None:
            return None if x is None else x.to(dtype)

        obs = self.encode_obs(obs_images, proprio)  # (B, obs_dim)
        if cache_obs_conditioning:  # both adaLN parts once per chunk; steps are pure DiT
            obs_cond = den.condition(obs)  # (B, M)
            t_cond = den.timestep_condition(t_a, t_o if cfg.future_obs else None)  # (S, M)
        for i, t in enumerate(self.scheduler.timesteps):
            if cache_obs_conditioning:
                eps_a, eps_o = den.denoise(obs_cond + t_cond[i], a.to(dtype), net(o))
            else:
                eps_a, eps_o = den(
                    obs, a.to(dtype), t_a[i], net(o), t_o[i] if cfg.future_obs else None
                )
            if denoise_a:
                a = self.scheduler.step(eps_a.float(), t, a)
            if denoise_o:
                assert eps_o is not None and o is not None
                o = self.scheduler.step(eps_o.float(), t, o)
        return Sample(a if denoise_a else None, o if denoise_o else None)

    def _check_mode_inputs(
        self, mode: str, actions: Tensor | None, future_latents: Tensor | None
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown sampling mode {mode!r}; choose from {MODES}")
        if not self.cfg.future_obs and mode != "policy":
            raise ValueError(f"mode {mode!r} needs future_obs: true (this is the DP baseline)")
        if (actions is not None) != (mode == "forward_dynamics"):
            raise ValueError(f"mode {mode!r}: actions are given only to forward_dynamics")
        if (future_latents is not None) != (mode == "inverse_dynamics"):
            raise ValueError(f"mode {mode!r}: future_latents are given only to inverse_dynamics")


def _bcast(mask: Tensor, ndim: int) -> Tensor:
    return mask.reshape(-1, *([1] * (ndim - 1)))


def _noise(
    given: Tensor | None, shape: tuple[int, ...], device: torch.device, g: torch.Generator | None
) -> Tensor:
    if given is None:
        return torch.randn(shape, device=device, generator=g)
    if tuple(given.shape) != shape:
        raise ValueError(f"noise has shape {tuple(given.shape)}, expected {shape}")
    return given
