"""The model a stage starts from, and which of its parameters it trains.

| stage       | starts from                                   | trains                      |
|-------------|-----------------------------------------------|-----------------------------|
| autoencoder | a new model (preset + overrides + data sizes) | the autoencoder only        |
| pretrain    | a new model + ``autoencoder_from``'s encoder  | all but the autoencoder     |
| cotrain     | same as pretrain                              | all but the autoencoder     |
| finetune    | ``init_from`` (EMA weights), new action head  | all but the autoencoder     |
|             | when the action/proprio sizes change          |                             |
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor
from torch.utils.data import Dataset

from uwm_ros.bundle.config import PRESETS

from ..model import AutoencoderConfig, ConfigError, PolicySpec, UnifiedWorldModel, UWMConfig
from .checkpoint import CheckpointError, checkpoint_config, checkpoint_spec, weights_file
from .config import TrainConfig, TrainError
from .data import Source, data_defaults

# Parameters a finetune may re-initialise when the dataset's action or proprio size differs.
REINIT_PREFIXES = ("denoiser.action_encoder.", "denoiser.action_decoder.", "obs_encoder.proprio.")


def new_model(cfg: TrainConfig, sources: Sequence[Source]) -> UnifiedWorldModel:
    """A new model for the autoencoder, pretrain and cotrain stages."""
    if cfg.preset not in PRESETS:
        raise TrainError(f"unknown preset {cfg.preset!r}; choose from {sorted(PRESETS)}")
    ae_path = None
    base: dict[str, Any] = {**PRESETS[cfg.preset], **data_defaults(sources, _keys(cfg))}
    overrides = dict(cfg.model)
    future_obs = {**PRESETS[cfg.preset], **cfg.model}.get("future_obs", True)
    if cfg.stage != "autoencoder" and cfg.autoencoder_from and future_obs:  # DP: no latents
        ae_path = weights_file(Path(cfg.autoencoder_from))
        trained = checkpoint_config(ae_path).autoencoder
        # The same config file serves both stages: its autoencoder section may stay as long as
        # it describes the trained one (shift/scale are measured, so they never conflict).
        given = overrides.pop("autoencoder", None) or {}
        clash = [k for k, v in given.items()
                 if k not in ("shift", "scale") and getattr(trained, k, None) != v]  # fmt: skip
        if clash:
            raise TrainError(f"model.autoencoder {clash} differ from {ae_path}'s autoencoder")
        base["autoencoder"] = trained
    elif isinstance(overrides.get("autoencoder"), dict):
        preset_ae = dataclasses.asdict(base.get("autoencoder", AutoencoderConfig()))
        overrides["autoencoder"] = {**preset_ae, **overrides["autoencoder"]}
    model_cfg = _model_config({**base, **overrides})
    needs_ae = model_cfg.future_obs and not model_cfg.autoencoder.pretrained_path
    if cfg.stage == "autoencoder" and not needs_ae:
        raise TrainError("stage autoencoder: this model has no autoencoder of ours to train")
    if cfg.stage != "autoencoder" and needs_ae and ae_path is None:
        raise TrainError(
            f"stage {cfg.stage}: set autoencoder_from to the autoencoder stage's checkpoint "
            "(or model.autoencoder.pretrained_path to a diffusers VAE)"
        )
    model = UnifiedWorldModel(model_cfg, cfg.imagenet_weights)
    if ae_path is not None:
        assert model.autoencoder is not None
        ae_state = {
            k.removeprefix("autoencoder."): v
            for k, v in _load_tensors(ae_path).items()
            if k.startswith("autoencoder.")
        }
        try:
            model.autoencoder.load_state_dict(ae_state)
        except RuntimeError as e:
            raise CheckpointError(f"{ae_path}: autoencoder weights do not fit: {e}") from None
    return model


def finetune_model(
    cfg: TrainConfig, sources: Sequence[Source], say: Callable[[str], None] = print
) -> tuple[UnifiedWorldModel, PolicySpec | None]:
    """``init_from``'s EMA weights in the dataset's action/proprio sizes; the checkpoint's spec
    when it is kept (same names, ``keep_normalization``), else None (the data's)."""
    assert cfg.init_from is not None  # TrainConfig requires it for finetune
    path = weights_file(Path(cfg.init_from))
    old = checkpoint_config(path)
    sizes = {k: v for k, v in data_defaults(sources, _keys(cfg)).items() if k.endswith("_dim")}
    model_cfg = _model_config({**old.to_dict(), **sizes, **cfg.model})
    model = UnifiedWorldModel(model_cfg)
    state, own = _load_tensors(path), model.state_dict()
    changed = sorted(k for k in state if k in own and state[k].shape != own[k].shape)
    bad = [k for k in changed if not k.startswith(REINIT_PREFIXES)]
    bad += sorted(set(own) ^ set(state))
    # A module whose input or output size changed starts over whole (biases included).
    fresh = tuple(p for p in REINIT_PREFIXES if any(k.startswith(p) for k in changed))
    reinit = [k for k in own if k.startswith(fresh)] if fresh else []
    if bad:
        raise TrainError(
            f"{path}: cannot finetune from it with this config: {bad[:6]} differ (only the "
            "action encoder/decoder and the proprio input can be re-initialised)"
        )
    model.load_state_dict({k: v for k, v in state.items() if k not in reinit}, strict=False)
    if reinit:
        say(f"finetune: re-initialised {len(reinit)} tensors for the new action/proprio sizes")
    spec = checkpoint_spec(path)
    same = spec is not None and _names_match(spec, sources, cfg)
    return model, spec if same and cfg.keep_normalization and not reinit else None


def set_trainable(model: UnifiedWorldModel, stage: str) -> None:
    """The autoencoder stage trains the autoencoder alone; the others everything but it."""
    model.requires_grad_(stage != "autoencoder")
    if model.autoencoder is not None:
        model.autoencoder.requires_grad_(stage == "autoencoder")


@torch.no_grad()
def measure_latent_scale(
    model: UnifiedWorldModel, data: Dataset[dict[str, Tensor]], windows: int, device: torch.device
) -> tuple[float, float]:
    """Set (and return) the autoencoder's shift/scale so the dataset's latents are ~N(0, 1).

    Latents of the frames of ``windows`` evenly spaced windows, measured in the autoencoder's
    raw units (the current shift/scale undone), one mean and std over every element.
    """
    ae = model.autoencoder
    assert ae is not None
    n = len(data)  # type: ignore[arg-type]
    picks = torch.linspace(0, n - 1, min(windows, n)).round().long().unique().tolist()
    raw = []
    for chunk in range(0, len(picks), 16):  # 16 windows per encoder call
        items = [data[i] for i in picks[chunk : chunk + 16]]
        frames = torch.cat([torch.cat([x["obs_images"], x["future_images"]], 1) for x in items])
        z = ae.encode(frames.flatten(0, 1).to(device))  # (frames, C, h, w)
        raw.append(z * ae.cfg.scale + ae.cfg.shift)
    flat = torch.cat(raw).double()
    ae.cfg.shift, ae.cfg.scale = float(flat.mean()), max(float(flat.std()), 1e-6)
    return ae.cfg.shift, ae.cfg.scale


def _keys(cfg: TrainConfig) -> list[str]:
    """Proprio keys, unless the config turns proprio off explicitly (model.proprio_dim: 0)."""
    return [] if cfg.model.get("proprio_dim") == 0 else list(cfg.data.proprio_keys)


def _names_match(spec: PolicySpec, sources: Sequence[Source], cfg: TrainConfig) -> bool:
    robot = next(s.spec["lowdim"] for s in sources if s.has_actions)
    proprio = tuple(n for k in _keys(cfg) if k in robot for n in robot[k])
    wanted = spec.proprio_names
    return tuple(robot["action"]) == spec.action_names and (not wanted or proprio == wanted)


def _model_config(fields: dict[str, Any]) -> UWMConfig:
    try:
        return UWMConfig.from_dict(fields)
    except (ConfigError, TypeError) as e:
        raise TrainError(f"model: {e}") from None


def _load_tensors(path: Path) -> dict[str, Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: cannot read tensors ({e})") from None
