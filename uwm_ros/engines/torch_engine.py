"""PyTorch backend: eager fp32 reference, bf16/fp16, torch.compile, CUDA graphs on CUDA.

The one runtime module that uses the training stack: it rebuilds the network from the bundle's
weights, so it needs ``uwm_training.model`` (imported when an engine is built) and torch.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from uwm_ros.bundle.config import PolicySpec
from uwm_ros.bundle.manifest import LOOP_MODES, WEIGHTS, Manifest
from uwm_ros.bundle.verify import bundle_file

from .base import Engine, EngineError

if TYPE_CHECKING:
    from uwm_training.model import UnifiedWorldModel

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def compile_loop(fn: Any, device: str, fullgraph: bool = False) -> Any:
    """torch.compile a sampling loop: weights frozen as constants on CPU (their bf16 casts fold
    away), the whole loop captured in a CUDA graph (``reduce-overhead``) on CUDA.

    Freezing is an option of this one compilation, never the process-wide inductor setting:
    frozen weights would silently ignore later updates in every other compiled module."""
    if device.startswith("cuda"):
        return torch.compile(fn, mode="reduce-overhead", fullgraph=fullgraph)
    return torch.compile(fn, fullgraph=fullgraph, options={"freezing": True})


class TorchEngine(Engine):
    """Runs ``UnifiedWorldModel.sample`` (obs + timestep conditioning computed once per chunk).

    ``compile=True`` wraps each mode's loop in ``torch.compile``: with weight freezing on CPU,
    and ``mode="reduce-overhead"`` on CUDA, which captures the loop in a CUDA graph.
    """

    backend = "torch"
    batched = True

    def __init__(
        self,
        bundle: str | Path,
        device: str = "cpu",
        precision: str = "fp32",
        compile: bool = False,
        manifest: Manifest | None = None,
        model: UnifiedWorldModel | None = None,
    ):
        """``manifest`` and ``model`` stand in for the bundle's own (see the constructors)."""
        super().__init__(bundle, device, precision, manifest)
        if precision not in DTYPES:
            raise EngineError(f"torch precision must be one of {list(DTYPES)}, got {precision!r}")
        if model is None:
            from uwm_training.model import load_model

            vae = self.cfg.autoencoder.pretrained_path  # bundle-relative (the exporter wrote it)
            vae_dir = bundle_file(self.root, vae) if vae else None
            model = load_model(self.root / WEIGHTS, device, autoencoder_dir=vae_dir)
        self.model = model.to(DTYPES[precision]).eval()
        self.compile = compile
        self._loops: dict[str, Any] = {}

    @classmethod
    def from_checkpoint(
        cls, checkpoint: str | Path, device: str = "cpu", precision: str = "fp32"
    ) -> TorchEngine:
        """An engine on a training checkpoint's weights (EMA), every mode, no export needed."""
        from uwm_training.model import load_model
        from uwm_training.model.weights import read_spec, weights_path

        path = weights_path(checkpoint)
        spec = read_spec(path)
        if spec is None:
            raise EngineError(f"{path}: no policy spec (an autoencoder-stage checkpoint?)")
        return cls.from_model(load_model(path, device), spec, device, precision)

    @classmethod
    def from_model(
        cls,
        model: UnifiedWorldModel,
        spec: PolicySpec,
        device: str = "cpu",
        precision: str = "fp32",
    ) -> TorchEngine:
        """An engine on a model in memory (e.g. a training run's EMA weights), every mode."""
        manifest = Manifest(model.cfg, spec, 0, list(LOOP_MODES), [], {})
        return cls(".", device, precision, manifest=manifest, model=model)

    def _loop_fn(self, mode: str) -> Any:
        if mode not in self._loops:
            fn: Any = partial(self._sample, mode)
            self._loops[mode] = compile_loop(fn, self.device) if self.compile else fn
        return self._loops[mode]

    def _sample(self, mode: str, t: dict[str, torch.Tensor]) -> tuple[torch.Tensor | None, ...]:
        return tuple(
            self.model.sample(
                mode,
                t["images"],
                t.get("proprio"),
                actions=t.get("actions"),
                future_latents=t.get("future_latents"),
                noise_actions=t["noise_actions"],
                noise_future=t.get("noise_future"),
            )
        )

    def run_loop(self, mode: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        t = {k: torch.from_numpy(v).to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            actions, latents = self._loop_fn(mode)(t)
        out = {}
        if actions is not None:  # copy out now: a CUDA graph reuses its output buffers
            out["actions"] = actions.float().cpu().numpy()
        if latents is not None:
            out["future_latents"] = latents.float().cpu().numpy()
        return out

    def decode(self, latents: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            frames = self.model.decode_future(torch.from_numpy(latents).to(self.device))
        return frames.float().cpu().numpy()
