"""The UWM denoiser: one diffusion transformer over action tokens and future-latent tokens.

Tokens are ``[h_a action tokens | V*P video tokens | R registers]`` with a learned absolute
position embedding and full bidirectional attention. Every block is modulated (adaLN-Zero) by
``cond = obs_features ⊕ timestep_embedding(t_action, t_video)``.

Because SiLU is elementwise, each adaLN Linear splits exactly into an observation part and a
timestep part: ``W·SiLU([obs ⊕ temb]) + b = W_obs·SiLU(obs) + b + W_t·SiLU(temb)``. Both are
constant over a denoising loop's step i (the timesteps are fixed per mode), so a sampler calls
``condition(obs)`` once per chunk and ``timestep_condition`` once for all steps, and each step
is only the transformer (``denoise``). ``forward`` is the plain one-shot call.
The network knows nothing of the noise schedule (see ``diffusion.py``).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from uwm_ros.bundle.config import UWMConfig


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


#################################################################################
#                      Embedding layers for timesteps and inputs                #
#################################################################################


def sinusoidal_embedding(t: Tensor, dim: int) -> Tensor:
    """(B,) timesteps -> (B, dim) [sin | cos] features at geometric frequencies."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device) * (-math.log(10000) / (half - 1)))
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.sin(), args.cos()], dim=-1)


class TimestepEmbedder(nn.Module):
    """sinusoidal(t_a) ⊕ sinusoidal(t_o') -> Linear -> Mish -> Linear (one timestep for DP)."""

    def __init__(self, dim: int, num_timesteps: int, mlp_ratio: float):
        super().__init__()
        self.dim = dim
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(dim * num_timesteps, hidden), nn.Mish(), nn.Linear(hidden, dim)
        )

    def forward(self, *timesteps: Tensor) -> Tensor:
        emb = torch.cat([sinusoidal_embedding(t, self.dim) for t in timesteps], -1)
        dtype = next(self.mlp.parameters()).dtype  # fp32 features into bf16/fp16 weights
        return self.mlp(emb.to(dtype))


class VideoPatchifier(nn.Module):
    """Latents (B, V, C, T', h, w) <-> tokens (B, V*T'/2*h/p*w/p, D); shared across views."""

    def __init__(self, cfg: UWMConfig):
        super().__init__()
        V, C, T, h, w = cfg.latent_shape
        p = cfg.patch_size
        self.grid = (V, C, T // 2, h // p, w // p, 2, p)
        self.encoder = nn.Conv3d(C, cfg.embed_dim, kernel_size=(2, p, p), stride=(2, p, p))
        self.decoder = nn.Linear(cfg.embed_dim, 2 * p * p * C)

    def patchify(self, latents: Tensor) -> Tensor:
        x = self.encoder(latents.flatten(0, 1))  # (B*V, D, t, gh, gw)
        B = latents.shape[0]
        return x.reshape(B, self.grid[0], x.shape[1], -1).transpose(2, 3).reshape(B, -1, x.shape[1])

    def unpatchify(self, tokens: Tensor) -> Tensor:
        V, C, t, gh, gw, pt, p = self.grid
        B = tokens.shape[0]
        x = self.decoder(tokens).reshape(B, V, t, gh, gw, C, pt, p, p)
        x = x.permute(0, 1, 5, 2, 6, 3, 7, 4, 8)  # (B, V, C, t, pt, gh, p, gw, p)
        return x.reshape(B, V, C, t * pt, gh * p, gw * p)


def action_mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.Mish(), nn.Linear(hidden, d_out))


#################################################################################
#                                 Core DiT blocks                               #
#################################################################################


class Attention(nn.Module):
    """Multi-head self-attention through SDPA (flash/memory-efficient kernels where available)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, D // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, N, D/H)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, D))


class DiTBlock(nn.Module):
    """Pre-norm transformer block modulated adaLN-Zero style by ``mod`` (shift/scale/gate x2)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim)
        )

    def forward(self, x: Tensor, mod: Tensor) -> Tensor:
        """x (B, N, D); mod (B, 6D), this block's slice of the adaLN modulation."""
        shift1, scale1, gate1, shift2, scale2, gate2 = mod.chunk(6, dim=1)
        x = x + gate1.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift1, scale1))
        x = x + gate2.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift2, scale2))
        return x


class FinalLayer(nn.Module):
    """LayerNorm + adaLN shift/scale + zero-initialised Linear(D -> D) before the decoders."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, dim)

    def forward(self, x: Tensor, mod: Tensor) -> Tensor:
        shift, scale = mod.chunk(2, dim=1)
        return self.linear(modulate(self.norm(x), shift, scale))


#################################################################################
#                                  The denoiser                                 #
#################################################################################


class UWMDenoiser(nn.Module):
    """Predicts the noise of actions and future latents, each at its own diffusion timestep.

    The adaLN Linear(cond -> 6D) of every block and the final layer's Linear(cond -> 2D) are
    stored together, split by input columns: ``adaLN_obs`` (obs features, with the bias) and
    ``adaLN_t`` (timestep embedding). Same function and parameter count as per-block
    Linear(SiLU([obs ⊕ temb])), but each part is one contiguous matmul for the whole network.
    """

    def __init__(self, cfg: UWMConfig):
        super().__init__()
        self.cfg = cfg
        D = cfg.embed_dim
        hidden = int(max(cfg.action_dim, D) * cfg.mlp_ratio)
        self.action_encoder = action_mlp(cfg.action_dim, hidden, D)
        self.action_decoder = action_mlp(D, hidden, cfg.action_dim)
        self.t_embedder = TimestepEmbedder(cfg.timestep_embed_dim, cfg.num_timesteps, 4.0)
        self.patchifier = VideoPatchifier(cfg) if cfg.future_obs else None
        num_registers = cfg.num_registers if cfg.future_obs else 0
        self.registers = nn.Parameter(torch.zeros(1, num_registers, D))
        num_tokens = cfg.horizon + cfg.num_video_tokens + num_registers
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, D))
        self.blocks = nn.ModuleList(
            DiTBlock(D, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth)
        )
        self.final_layer = FinalLayer(D)
        self.mod_sizes = [6 * D] * cfg.depth + [2 * D]
        self.adaLN_obs = nn.Linear(cfg.obs_feature_dim, sum(self.mod_sizes))
        self.adaLN_t = nn.Linear(cfg.timestep_embed_dim, sum(self.mod_sizes), bias=False)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        def _basic_init(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

        self.apply(_basic_init)
        nn.init.normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.registers, std=0.02)
        if self.patchifier is not None:  # initialise the patch conv like a Linear
            conv = self.patchifier.encoder
            nn.init.normal_(conv.weight.view(conv.weight.shape[0], -1), std=0.02)
            nn.init.zeros_(conv.get_parameter("bias"))
        # adaLN-Zero: every block starts as the identity, the output layer at zero.
        nn.init.zeros_(self.adaLN_obs.weight)
        nn.init.zeros_(self.adaLN_obs.bias)
        nn.init.zeros_(self.adaLN_t.weight)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def condition(self, obs: Tensor) -> Tensor:
        """Observation part of all adaLN modulations (with bias): (B, obs_dim) -> (B, M)."""
        return self.adaLN_obs(F.silu(obs))

    def timestep_condition(self, t_action: Tensor, t_video: Tensor | None = None) -> Tensor:
        """Timestep part of all adaLN modulations: (S,) timesteps -> (S, M)."""
        timesteps = (t_action,) if self.patchifier is None else (t_action, t_video)
        return self.adaLN_t(F.silu(self.t_embedder(*timesteps)))

    def denoise(
        self, cond: Tensor, action: Tensor, future: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """One pass given cond = condition(obs) + timestep_condition(...); -> (ε_a, ε_o')."""
        B = action.shape[0]
        mods = cond.expand(B, -1).split(self.mod_sizes, dim=1)
        tokens = [self.action_encoder(action)]  # (B, h_a, D)
        if self.patchifier is not None:
            assert future is not None, "UWM needs future latents (noise in policy mode)"
            tokens.append(self.patchifier.patchify(future))  # (B, V*P, D)
        tokens.append(self.registers.expand(B, -1, -1))  # (B, R, D)
        x = torch.cat(tokens, dim=1) + self.pos_embed  # (B, N, D)
        for block, mod in zip(self.blocks, mods):
            x = block(x, mod)  # (B, N, D)
        x = self.final_layer(x, mods[-1])  # (B, N, D)

        h_a = self.cfg.horizon
        eps_action = self.action_decoder(x[:, :h_a])  # (B, h_a, d_a)
        if self.patchifier is None:
            return eps_action, None
        eps_future = self.patchifier.unpatchify(x[:, h_a : h_a + self.cfg.num_video_tokens])
        return eps_action, eps_future  # (B, h_a, d_a), (B, V, C, T', h, w)

    def forward(
        self,
        obs: Tensor,
        action: Tensor,
        t_action: Tensor,
        future: Tensor | None = None,
        t_video: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """One-shot pass: obs features (B, obs_dim), timesteps (B,) or scalars."""
        B = action.shape[0]
        t_video = None if t_video is None else t_video.expand(B)
        cond = self.condition(obs) + self.timestep_condition(t_action.expand(B), t_video)
        return self.denoise(cond, action, future)
