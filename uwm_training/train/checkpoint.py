"""Training checkpoints: one directory per step, written atomically, the last K kept::

    OUT_DIR/checkpoints/step-00001000/
        model.safetensors   training weights, config and PolicySpec (``model.weights`` format)
        ema.safetensors     EMA weights, same format: what evaluation and ``uwm export`` use
        state.pt            step, optimizer and loss-scaler state (tensors and plain data only,
                            loaded with ``weights_only=True``: no pickled code)
        train.yaml          the run's config
    OUT_DIR/last -> checkpoints/step-00001000

A checkpoint is written to a hidden temp directory and renamed into place, so a run killed at any
moment leaves either the complete new checkpoint or none; leftovers are removed by the next save.
Nothing else needs saving for an exact resume: data order, noise and learning rate are pure
functions of (seed, step) (see ``sampler`` and ``loop``).
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import torch

from ..atomic import replace_dir
from ..model import (
    PolicySpec,
    UnifiedWorldModel,
    UWMConfig,
    WeightsError,
    load_model,
    read_config,
    read_spec,
    save_model,
)
from ..model.weights import CHECKPOINT_FILES, weights_path
from .config import TrainError

STATE_FORMAT = "uwm-train-state/1"
_STEP_DIR = re.compile(r"^step-(\d{8})$")


class CheckpointError(TrainError):
    """A checkpoint that is missing, incomplete or unreadable."""


def save_checkpoint(
    out_dir: Path,
    step: int,
    model: UnifiedWorldModel,
    ema: UnifiedWorldModel,
    spec: PolicySpec | None,
    state: dict[str, Any],
    config_yaml: str,
    keep_last: int,
) -> Path:
    """Write checkpoint ``step`` atomically, point ``last`` at it, prune to ``keep_last``."""
    root = out_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        save_model(model, tmp / "model.safetensors", spec)
        save_model(ema, tmp / "ema.safetensors", spec)
        torch.save({"format": STATE_FORMAT, "step": step, **state}, tmp / "state.pt")
        (tmp / "train.yaml").write_text(config_yaml)
        replace_dir(tmp, final)  # re-saving a step (a resumed run's first save) swaps it
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _link(out_dir / "last", final)
    _prune(root, keep_last)
    return final


def _link(link: Path, target: Path) -> None:
    """Repoint a symlink atomically (create a temp link, rename it over the old one)."""
    tmp = link.with_name(f".{link.name}.tmp-{uuid.uuid4().hex[:8]}")
    os.symlink(os.path.relpath(target, link.parent), tmp)
    os.replace(tmp, link)


def _prune(root: Path, keep_last: int) -> None:
    for path in step_dirs(root)[:-keep_last]:
        shutil.rmtree(path)
    for path in root.glob(".step-*"):  # temp dirs of a run killed mid-save
        shutil.rmtree(path, ignore_errors=True)


def step_dirs(root: Path) -> list[Path]:
    """Complete checkpoint directories under ``root``, oldest first."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if _STEP_DIR.match(p.name) and p.is_dir())


def find_checkpoint(path: Path) -> Path:
    """A checkpoint directory, or the newest one of a run directory (``OUT_DIR``)."""
    if (path / "state.pt").exists() or _STEP_DIR.match(path.name):
        return path
    found = step_dirs(path / "checkpoints") or step_dirs(path)
    if not found:
        raise CheckpointError(f"{path}: no checkpoint found (expected checkpoints/step-*/)")
    return found[-1]


class Resumed(NamedTuple):
    """Everything a run continues from."""

    path: Path
    state: dict[str, Any]
    model: UnifiedWorldModel
    ema: UnifiedWorldModel
    spec: PolicySpec | None


def load_checkpoint(ckpt: Path) -> Resumed:
    """Load a checkpoint directory whole, or fail naming what is missing or corrupt."""
    state = load_state(ckpt)
    ema = ckpt / "ema.safetensors"
    return Resumed(ckpt, state, load_weights(ckpt / "model.safetensors"), load_weights(ema),
                   checkpoint_spec(ema))  # fmt: skip


def load_state(ckpt: Path) -> dict[str, Any]:
    """The training state of a checkpoint directory, checked for completeness."""
    missing = [n for n in (*CHECKPOINT_FILES, "state.pt") if not (ckpt / n).is_file()]
    if missing:
        raise CheckpointError(f"{ckpt}: incomplete checkpoint, missing {missing}")
    try:
        state = torch.load(ckpt / "state.pt", map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, bad pickle, foreign file: all one answer
        raise CheckpointError(f"{ckpt / 'state.pt'}: corrupt training state ({e})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{ckpt / 'state.pt'}: not a {STATE_FORMAT} training state")
    return state


def weights_file(path: Path) -> Path:
    """A .safetensors file, or the preferred weights file of a checkpoint directory."""
    try:
        return weights_path(path)
    except WeightsError as e:
        raise CheckpointError(str(e)) from None


def load_weights(path: Path) -> UnifiedWorldModel:
    """A model from a weights file, with corrupt files reported as checkpoint errors."""
    try:
        return load_model(path)
    except WeightsError as e:
        raise CheckpointError(f"corrupt or incompatible checkpoint: {e}") from None


def checkpoint_config(path: Path) -> UWMConfig:
    """The model config stored in a weights file."""
    try:
        return read_config(path)
    except WeightsError as e:
        raise CheckpointError(f"corrupt or incompatible checkpoint: {e}") from None


def checkpoint_spec(path: Path) -> PolicySpec | None:
    """The PolicySpec stored in a weights file, if any."""
    try:
        return read_spec(path)
    except WeightsError as e:
        raise CheckpointError(f"corrupt or incompatible checkpoint: {e}") from None
