"""The exported graphs: thin nn.Module wrappers with plain tensor inputs/outputs, and ONNX export.

Every graph has static shapes (batch fixed at export). Images enter as float [0, 1] (the shared
contract does uint8 -> float on the host), low-dim tensors normalised; graphs never unnormalise.

- ``obs_encoder``: images, proprio -> obs_cond, the observation part of every adaLN modulation.
- ``denoiser_step``: obs_cond, noisy actions/latents, t_action, t_video -> noise predictions.
- ``<mode>_loop``: the whole DDIM loop of one mode; start noise is an input, so it is
  deterministic and testable against PyTorch.
- ``decoder``: normalised latents -> frames in [0, 1].
Low-precision graphs keep fp32 inputs/outputs and cast at the edges (DESIGN §8).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn as nn
from torch import Tensor

from uwm_ros.bundle.manifest import graph_signature
from uwm_training.model import UnifiedWorldModel


class ObsEncoderGraph(nn.Module):
    def __init__(self, model: UnifiedWorldModel):
        super().__init__()
        self.model = model

    def forward(self, images: Tensor, proprio: Tensor | None = None) -> Tensor:
        return self.model.denoiser.condition(self.model.encode_obs(images, proprio)).float()


class DenoiserStepGraph(nn.Module):
    def __init__(self, model: UnifiedWorldModel):
        super().__init__()
        self.model = model

    def forward(
        self, obs_cond: Tensor, actions: Tensor, t_action: Tensor, *video: Tensor
    ) -> tuple[Tensor, ...]:
        """video = (future, t_video) for UWM, empty for the DP baseline."""
        den, dtype = self.model.denoiser, self.model.dtype
        future, t_video = video if video else (None, None)
        cond = obs_cond.to(dtype) + den.timestep_condition(t_action, t_video)
        eps_a, eps_o = den.denoise(
            cond, actions.to(dtype), None if future is None else future.to(dtype)
        )
        return (eps_a.float(),) if eps_o is None else (eps_a.float(), eps_o.float())


class LoopGraph(nn.Module):
    """All DDIM steps of one sampling mode; given = actions (forward) or latents (inverse)."""

    def __init__(self, model: UnifiedWorldModel, mode: str):
        super().__init__()
        self.model, self.mode = model, mode

    def forward(self, images: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:
        cfg = self.model.cfg
        names = list(graph_signature(cfg, f"{self.mode}_loop", images.shape[0])[0])[1:]
        kw = dict(zip(names, rest))
        out = self.model.sample(
            self.mode,
            images,
            kw.get("proprio"),
            actions=kw.get("actions"),
            future_latents=kw.get("future_latents"),
            noise_actions=kw["noise_actions"],
            noise_future=kw.get("noise_future") if cfg.future_obs else None,
        )
        return tuple(x for x in out if x is not None)


class DecoderGraph(nn.Module):
    def __init__(self, model: UnifiedWorldModel):
        super().__init__()
        self.model = model

    def forward(self, latents: Tensor) -> Tensor:
        return self.model.decode_future(latents)


def export_onnx(
    module: nn.Module,
    args: tuple[Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
    opset: int,
) -> None:
    """torch.export-based ONNX export with static shapes, weights embedded in the file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module.eval(),
            args,
            dynamo=True,
            opset_version=opset,
            input_names=input_names,
            output_names=output_names,
            external_data=False,
            verbose=False,
        )
    assert program is not None
    program.save(str(path), external_data=False)
