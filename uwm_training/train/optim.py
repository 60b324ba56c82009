"""AdamW, the learning-rate schedule, mixed precision and the EMA of the weights.

The schedule is a pure function of the step (as in nanoGPT), so resuming needs only the step.
"""

from __future__ import annotations

import copy
import math
import re
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Generic, TypeVar

import torch
from torch import Tensor, nn

from .config import OptimConfig, TrainError


def build_optimizer(model: nn.Module, cfg: OptimConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; fused on CUDA (one kernel per step)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(
        params,
        lr=cfg.lr,
        betas=cfg.betas,
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        fused=device.type == "cuda",
    )


def lr_at(step: int, cfg: OptimConfig, total_steps: int, budget_used: float = 0.0) -> float:
    """Linear warmup to ``lr`` over ``warmup_steps``, then cosine down to lr * min_lr_ratio at
    the last step or at the end of the time budget (``budget_used`` in [0, 1]), whichever
    comes first: a run cut by its budget still ends annealed."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    floor = cfg.lr * cfg.min_lr_ratio
    progress = max((step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps), budget_used)
    return floor + 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))) * (cfg.lr - floor)


def resolve_precision(precision: str, device: torch.device) -> tuple[str, ...]:
    """What ``precision`` can mean here: one choice, or on a CPU with bf16 instructions
    (AVX512-BF16, AMX) and ``auto`` both fp32 and bf16, for the loop to time (``fastest``).

    ``auto`` on GPUs: bf16 where supported, else fp16. On CPUs which is faster depends on the
    model and the batch: the small preset at batch 64 on a Sapphire Rapids (AMX), 2 threads,
    took 190 ms a step in fp32 and 235 ms with bf16 autocast (its casts cost more than its
    matmuls save), while batch 8 on one Zen 4 thread took 0.90 s in fp32 and 0.71 s in bf16.
    Without those instructions bf16 is emulated (~4x slower): fp32.
    """
    if device.type == "cuda":
        if precision == "auto":
            return ("bf16",) if torch.cuda.is_bf16_supported() else ("fp16",)
        return (precision,)
    if precision == "fp16":
        raise TrainError("precision fp16 needs a CUDA GPU (loss scaling); use bf16 or fp32")
    if precision == "auto":
        return ("fp32", "bf16") if cpu_has_native_bf16() else ("fp32",)
    return (precision,)


def fastest(
    candidates: Sequence[str], step: Callable[[str], None], repeats: int = 3
) -> tuple[str, dict[str, float]]:
    """The candidate whose ``step`` runs fastest (one warm-up each, then the median of
    ``repeats``), and the seconds each took; a single candidate is returned untimed."""
    if len(candidates) == 1:
        return candidates[0], {}
    seconds = {}
    for candidate in candidates:
        step(candidate)
        runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            step(candidate)
            runs.append(time.perf_counter() - started)
        seconds[candidate] = statistics.median(runs)
    return min(seconds, key=seconds.__getitem__), seconds


def cpu_has_native_bf16() -> bool:
    """Whether the CPU flags (Linux /proc/cpuinfo) include avx512_bf16 or amx_bf16."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no way to tell, take the safe choice
        return False
    match = re.search(r"^flags\s*:(.*)$", text, re.MULTILINE)
    return bool(match and {"avx512_bf16", "amx_bf16"} & set(match.group(1).split()))


def autocast(precision: str, device: torch.device) -> AbstractContextManager[object]:
    """The autocast context for a resolved precision (a no-op for fp32)."""
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


M = TypeVar("M", bound=nn.Module)


class EMA(Generic[M]):
    """Exponential moving average of the trainable weights; its ``model`` is evaluated and
    exported.

    After optimizer step n: ema = d * ema + (1 - d) * weights, d = min(decay, (1+n)/(10+n)):
    the ramp keeps the random initialisation from dominating the average early on.
    """

    def __init__(self, model: M, decay: float) -> None:
        self.decay = decay
        self.model: M = copy.deepcopy(model).eval().requires_grad_(False)
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        ema_params = dict(self.model.named_parameters())
        self._targets: list[Tensor] = [ema_params[n] for n in self.names]

    def rate(self, step: int) -> float:
        """Decay applied after optimizer step ``step`` (0-based)."""
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model: M, step: int) -> None:
        params = dict(model.named_parameters())
        sources = [params[n].detach() for n in self.names]
        torch._foreach_lerp_(self._targets, sources, 1.0 - self.rate(step))
