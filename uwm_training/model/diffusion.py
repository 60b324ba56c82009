"""DDIM noise schedule and update step as plain tensor code.

Plain tensors (no Python control flow on values) so a whole denoising loop traces into one ONNX
graph / engine. Matches ``diffusers.DDIMScheduler(beta_schedule="squaredcos_cap_v2",
clip_sample=True, set_alpha_to_one=True, timestep_spacing="leading")`` with eta = 0, step by
step, for both ``prediction_type`` "epsilon" (the paper's) and "sample" (the network predicts
the clean x_0 directly), see test_diffusion.py.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def squaredcos_cap_v2_betas(num_train_steps: int, max_beta: float = 0.999) -> Tensor:
    """Cosine schedule (Nichol & Dhariwal 2021): betas from alpha_bar(t) = cos²((t+s)/(1+s)·π/2)."""

    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [
        min(1 - alpha_bar((i + 1) / num_train_steps) / alpha_bar(i / num_train_steps), max_beta)
        for i in range(num_train_steps)
    ]
    return torch.tensor(betas, dtype=torch.float32)


PREDICTIONS = ("epsilon", "sample")


class DDIMScheduler:
    """Forward noising for training and the deterministic DDIM update for sampling.

    Fully defined by the config, so it holds no parameters or buffers: its fp32 table stays
    fp32 when a model is cast to bf16/fp16 (DDIM coefficients in bf16 would lose 3 digits)
    and never lands in a checkpoint. The table follows the input's device.
    """

    def __init__(
        self, num_train_steps: int = 100, num_inference_steps: int = 10, prediction: str = "epsilon"
    ):
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        self.num_train_steps = num_train_steps
        self.num_inference_steps = num_inference_steps
        self.prediction = prediction
        # float32 cumprod, as diffusers does, so both agree to the last bit.
        alphas_cumprod = torch.cumprod(1 - squaredcos_cap_v2_betas(num_train_steps), dim=0)
        # Index -1 holds alpha_prod of the step "before t=0": 1.0 (set_alpha_to_one).
        self.alphas_cumprod = torch.cat([alphas_cumprod, torch.ones(1)])

    @property
    def timesteps(self) -> list[int]:
        """Leading spacing: T=100, 10 steps -> [90, 80, ..., 0]."""
        ratio = self.num_train_steps // self.num_inference_steps
        return [i * ratio for i in reversed(range(self.num_inference_steps))]

    def _alpha(self, t: Tensor, ndim: int) -> Tensor:
        """alpha_bar[t] per sample (fp32), shaped to broadcast over a tensor of rank ``ndim``."""
        table = self.alphas_cumprod.to(t.device)
        return table[t].reshape(-1, *([1] * (ndim - 1)))

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """q(x_t | x_0) = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε; ``t`` is (B,) long."""
        a = self._alpha(t, x0.ndim)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def target(self, x0: Tensor, noise: Tensor) -> Tensor:
        """What the network learns to output for x_t made from ``x0`` and ``noise``."""
        return noise if self.prediction == "epsilon" else x0

    def step(self, out: Tensor, t: int | Tensor, x: Tensor) -> Tensor:
        """One DDIM update x_t -> x_{t-Δ} (eta = 0) from the network output ``out`` (ε or x_0),
        predicted x_0 clipped to [-1, 1]."""
        t = torch.as_tensor(t, device=x.device).reshape(-1)
        prev = t - self.num_train_steps // self.num_inference_steps
        a_t, a_prev = self._alpha(t, x.ndim), self._alpha(prev.clamp(min=-1), x.ndim)
        if self.prediction == "epsilon":
            eps, x0 = out, (x - (1 - a_t).sqrt() * out) / a_t.sqrt()
        else:
            eps, x0 = (x - a_t.sqrt() * out) / (1 - a_t).sqrt(), out
        return a_prev.sqrt() * x0.clamp(-1, 1) + (1 - a_prev).sqrt() * eps
