"""Save and load a model as one safetensors file whose metadata carries the config.

As in nanoGPT, the checkpoint stores the model arguments, so loading needs no outside config.
Writes are atomic (temp file + rename): a crash never leaves a half-written file behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from uwm_ros.bundle.config import ConfigError, PolicySpec, UWMConfig

from .uwm import UnifiedWorldModel

FORMAT = "uwm-model/1"
CHECKPOINT_FILES = ("ema.safetensors", "model.safetensors")  # preference order in a directory


class WeightsError(ValueError):
    """A weights file is missing, corrupt, or does not match its config."""


def save_model(model: UnifiedWorldModel, path: str | Path, spec: PolicySpec | None = None) -> None:
    """Write weights + config (+ the dataset's names/normalisation) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "config": json.dumps(model.cfg.to_dict())}
    if spec is not None:
        spec.check(model.cfg)
        meta["spec"] = json.dumps(spec.to_dict())
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata=meta)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def weights_path(path: str | Path) -> Path:
    """A .safetensors file, or the preferred weights file of a checkpoint directory (EMA first)."""
    path = Path(path)
    if path.is_dir():
        for name in CHECKPOINT_FILES:
            if (path / name).is_file():
                return path / name
        raise WeightsError(f"{path}: checkpoint directory has none of {list(CHECKPOINT_FILES)}")
    if not path.is_file():
        raise WeightsError(f"{path}: checkpoint not found")
    return path


def _metadata(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise WeightsError(f"{path}: not a readable safetensors file ({e})") from e
    if meta.get("format") != FORMAT or "config" not in meta:
        raise WeightsError(f"{path}: no UWM config in its metadata (format {meta.get('format')!r})")
    return meta


def read_config(path: str | Path) -> UWMConfig:
    """The config stored in a weights file, without loading any tensor."""
    meta = _metadata(Path(path))
    try:
        return UWMConfig.from_dict(json.loads(meta["config"]))
    except (json.JSONDecodeError, ConfigError, TypeError) as e:
        raise WeightsError(f"{path}: stored config is invalid: {e}") from e


def read_spec(path: str | Path) -> PolicySpec | None:
    """The dataset spec (names, fps, normalisation) stored with the weights, if any."""
    meta = _metadata(Path(path))
    if "spec" not in meta:
        return None
    try:
        return PolicySpec.from_dict(json.loads(meta["spec"]))
    except (json.JSONDecodeError, ConfigError, TypeError) as e:
        raise WeightsError(f"{path}: stored spec is invalid: {e}") from e


def load_model(
    path: str | Path, device: str | torch.device = "cpu", autoencoder_dir: Path | None = None
) -> UnifiedWorldModel:
    """Rebuild the model from the stored config and load its weights (strictly).

    The file holds every weight, a pretrained VAE's too, so only that VAE's config.json is
    read; ``autoencoder_dir`` says where it is when not at the stored path (a bundle's copy).
    """
    cfg = read_config(path)
    if autoencoder_dir is not None:
        cfg.autoencoder.pretrained_path = str(autoencoder_dir)
    model = UnifiedWorldModel(cfg, pretrained_weights=False)
    try:
        state = load_file(str(path), device=str(device))
    except (SafetensorError, OSError) as e:
        raise WeightsError(f"{path}: cannot read tensors ({e})") from e
    expected = model.state_dict()
    problems = sorted(set(expected) ^ set(state))
    problems += [
        f"{k}: {tuple(v.shape)} != {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if problems:
        raise WeightsError(f"{path}: weights do not match the stored config: {problems[:5]}")
    model.load_state_dict(state)
    return model.to(device)
