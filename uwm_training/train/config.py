"""Training configuration: dataclasses <-> YAML, with ``key=value`` dotted overrides.

Every field has a default except the dataset sources, so a config file states only what differs::

    stage: pretrain
    out_dir: runs/small
    data: {sources: [{path: data/pick}]}

and the command line changes anything: ``optim.lr=3e-4 model.depth=4 data.sources.0.weight=2``.
Values are parsed as YAML (``3e-4`` -> float, ``null`` -> None). Unknown keys and wrongly typed
values are errors that name the dotted key and list the valid ones.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

STAGES = ("autoencoder", "pretrain", "cotrain", "finetune")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
CLOCKS = ("wall", "cpu")


class TrainError(ValueError):
    """An expected training failure (config, checkpoint, dataset mismatch): one readable line."""


@dataclass
class SourceConfig:
    """One dataset of the training mixture.

    Args:
        path: a dataset store written by ``uwm convert`` / ``uwm convert-video``.
        weight: relative sampling probability; normalised over all sources, so ``3`` and ``1``
            draw 75 % and 25 % of every batch on average whatever the datasets' sizes.
    """

    path: str = ""
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.path:
            raise TrainError("data.sources: every source needs a path")
        if self.weight <= 0:
            raise TrainError(f"data.sources: weight of {self.path} must be > 0, got {self.weight}")


@dataclass
class DataConfig:
    """Where samples come from.

    Args:
        sources: the datasets; action-free ones (videos) only in the ``cotrain`` stage.
        proprio_keys: low-dim keys concatenated into the proprio input (ignored when the model's
            ``proprio_dim`` is 0).
        val_fraction: share of each source's episodes held out for evaluation (evenly spaced,
            at least one when a source has two or more episodes; 0 disables evaluation).
        pad_start: history frames padded at an episode start (None: h_o - 1, as the runtime).
        pad_end: frames past an episode's end a window may repeat the last one (None: every
            frame starts a window, h_a + h_o' - 1; 0: windows end inside the episode).
        relative_to: low-dim key of joint positions (e.g. joint_pos): actions are learnt as
            offsets from these joints at the observation (None: absolute actions).
        num_workers: DataLoader processes per rank (frames are zstd-decoded in them).
    """

    sources: list[SourceConfig] = field(default_factory=list)
    proprio_keys: list[str] = field(default_factory=lambda: ["joint_pos"])
    val_fraction: float = 0.1
    pad_start: int | None = None
    pad_end: int | None = None
    relative_to: str | None = None
    num_workers: int = 2

    def __post_init__(self) -> None:
        if not 0 <= self.val_fraction < 1:
            raise TrainError(f"data.val_fraction must be in [0, 1), got {self.val_fraction}")


@dataclass
class OptimConfig:
    """AdamW with linear warmup then cosine decay (the paper: lr 1e-4, wd 1e-6).

    Args:
        lr: peak learning rate.
        weight_decay: decoupled weight decay on every trainable parameter.
        betas: Adam moments (the official UWM code uses 0.9, 0.999).
        eps: Adam epsilon.
        warmup_steps: linear ramp from lr/warmup to lr.
        min_lr_ratio: the cosine ends at lr * min_lr_ratio at the last step.
        grad_clip: max global gradient norm; 0 disables clipping.
    """

    lr: float = 1e-4
    weight_decay: float = 1e-6
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_steps: int = 1000
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0


@dataclass
class EvalConfig:
    """Held-out evaluation with the EMA weights.

    Args:
        every: run every this many optimizer steps (and after the last); 0 disables it.
        batches: held-out batches per evaluation (windows evenly spaced over the held-out set).
        batch_size: windows per evaluation batch (None: the training batch size).
        gif_samples: windows drawn in the GIF of predicted vs real future frames (0: no GIF).
        policy_samples: policy samples per held-out window for ``policy_mse``, which runs
            over every held-out window (the hold / linear baselines use the same windows).
    """

    every: int = 1000
    batches: int = 4
    batch_size: int | None = None
    gif_samples: int = 4
    policy_samples: int = 2


@dataclass
class TrainConfig:
    """One training run; saved as ``train.yaml`` next to its checkpoints.

    Args:
        stage: autoencoder | pretrain | cotrain | finetune (DESIGN §7).
        out_dir: run directory: checkpoints/, tb/, samples/, metrics.jsonl, train.yaml.
        preset: model preset the ``model`` overrides apply to (new models only).
        model: UWMConfig overrides. cameras, image_size, action_dim and proprio_dim default to
            the dataset's; given explicitly they are checked against it.
        autoencoder_from: checkpoint (dir or .safetensors) whose trained autoencoder and latent
            shift/scale the pretrain/cotrain model uses (the autoencoder stage's output).
        init_from: finetune: checkpoint to start from (its EMA weights); the action encoder and
            decoder (and proprio input) are re-initialised when the dataset's sizes differ.
        keep_normalization: finetune: keep the checkpoint's action/proprio statistics when the
            dataset names the same actions and joints (as the official code does); False
            normalises with the finetuning data's own statistics.
        imagenet_weights: local torchvision resnet18 state dict for a new model's ResNet.
        steps: optimizer steps in total (a resumed run continues to this number).
        max_minutes: time budget of this invocation: training stops after the first step past
            it, evaluating and checkpointing as after the last step. The cosine LR schedule
            ends at the budget or at ``steps``, whichever comes first (``optim.min_lr_ratio:
            1`` keeps the LR constant after warmup, as DiT trains). None: no budget.
        budget_clock: what ``max_minutes`` (and the closed-loop curve's minutes) count: "wall"
            time, or this process's "cpu" time, which a shared machine does not change (for
            equal-budget comparisons; with one intra-op thread it is the compute spent).
        batch_size: windows per rank per micro-step; the global batch is
            batch_size * grad_accum * world_size.
        grad_accum: micro-steps per optimizer step.
        shift_augment: random shift of the observation images by up to this many pixels
            (DrQ; the official recipe random-crops); 0 disables it.
        cache_latents: encode every frame once with the frozen autoencoder before training,
            so steps read latents instead of encoding future frames (same values, no cost).
        precision: auto | fp32 | bf16 | fp16 (CUDA, with loss scaling). auto: bf16 on GPUs that
            have it, else fp16; on a CPU with bf16 instructions the faster of fp32 and bf16,
            timed on one step of each at the start (a resumed run keeps its own), else fp32
            (``optim.resolve_precision`` has the measurements).
        ema_decay: EMA decay, ramped up as min(decay, (1 + n) / (10 + n)) over the first steps.
        ckpt_every: checkpoint every this many steps (and after the last).
        keep_last: checkpoints kept; older ones are deleted after a new one is written.
        log_every: TensorBoard/metrics.jsonl scalars every this many steps.
        seed: all randomness (init, data order, noise) derives from it; ranks draw distinct
            noise from it, never distinct data.
        device: auto | cpu | cuda (DDP ranks use cuda:LOCAL_RANK).
    """

    stage: str = "pretrain"
    out_dir: str = "runs/uwm"
    preset: str = "small"
    model: dict[str, Any] = field(default_factory=dict)
    autoencoder_from: str | None = None
    init_from: str | None = None
    keep_normalization: bool = True
    imagenet_weights: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    steps: int = 100_000
    max_minutes: float | None = None
    budget_clock: str = "wall"
    batch_size: int = 36
    grad_accum: int = 1
    shift_augment: int = 0
    cache_latents: bool = True
    precision: str = "auto"
    ema_decay: float = 0.999
    ckpt_every: int = 1000
    keep_last: int = 3
    log_every: int = 10
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise TrainError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.precision not in PRECISIONS:
            raise TrainError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not self.data.sources:
            raise TrainError("data.sources: give at least one dataset")
        if self.stage == "finetune" and not self.init_from:
            raise TrainError("stage finetune needs init_from: a checkpoint to start from")
        for name in ("steps", "batch_size", "grad_accum", "ckpt_every", "keep_last", "log_every"):
            if getattr(self, name) < 1:
                raise TrainError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.budget_clock not in CLOCKS:
            raise TrainError(f"budget_clock must be one of {CLOCKS}, got {self.budget_clock!r}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise TrainError(f"max_minutes must be > 0, got {self.max_minutes}")
        if not 0 <= self.ema_decay < 1:
            raise TrainError(f"ema_decay must be in [0, 1), got {self.ema_decay}")

    @property
    def eval_batch_size(self) -> int:
        return self.eval.batch_size or self.batch_size

    def to_dict(self) -> dict[str, Any]:
        """Plain data (tuples as lists), as YAML and JSON want it."""
        plain: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(self)))
        return plain

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ----- loading ------------------------------------------------------------------------------------
def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML config and apply ``key=value`` overrides (dotted keys, YAML values)."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise TrainError(f"{path}: cannot read training config: {e}") from None
    if not isinstance(data, dict):
        raise TrainError(f"{path}: a training config is a mapping, got {type(data).__name__}")
    for item in overrides:
        apply_override(data, item)
    try:
        return from_dict(data)
    except TrainError as e:
        raise TrainError(f"{path}: {e}") from None


def from_dict(data: dict[str, Any]) -> TrainConfig:
    """Build and validate a TrainConfig from plain data."""
    config: TrainConfig = _convert(data, TrainConfig, "")
    return config


def apply_override(data: dict[str, Any], item: str) -> None:
    """Set ``a.b.0.c=value`` inside nested dicts/lists, creating missing dicts on the way."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise TrainError(f"override {item!r}: expected key=value, e.g. optim.lr=3e-4")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise TrainError(f"override {item!r}: bad value: {e}") from None
    parts = key.split(".")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise TrainError(f"override {key}: {where} is not an index of a {len(node)}-list")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise TrainError(f"override {key}: {'.'.join(parts[:i])} is a value, not a section")


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check/convert plain YAML data to ``tp`` (dataclasses, lists, tuples, optionals, scalars)."""
    name = where or "config"
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise TrainError(f"{name}: expected a mapping, got {value!r}")
        hints = typing.get_type_hints(tp)
        names = [f.name for f in dataclasses.fields(tp)]
        unknown = sorted(set(value) - set(names))
        if unknown:
            keys = [f"{where}.{k}" if where else k for k in unknown]
            raise TrainError(f"unknown config keys {keys}; valid keys here: {names}")
        prefix = f"{where}." if where else ""
        kwargs = {k: _convert(v, hints[k], prefix + k) for k, v in value.items()}
        cls: Any = tp
        return cls(**kwargs)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise TrainError(f"{name}: expected a list, got {value!r}")
        if origin is tuple and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise TrainError(f"{name}: expected {len(args)} values, got {value!r}")
            pairs = enumerate(zip(value, args))
            return tuple(_convert(v, a, f"{where}.{i}") for i, (v, a) in pairs)
        out = [_convert(v, args[0], f"{where}.{i}") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise TrainError(f"{name}: expected a mapping, got {value!r}")
        return dict(value)
    return _scalar(value, tp, name)


def _scalar(value: Any, tp: Any, name: str) -> Any:
    if tp is float and isinstance(value, str):
        try:  # PyYAML (YAML 1.1) reads 1e-4 as a string: it needs a dot, 1.0e-4
            return float(value)
        except ValueError:
            pass
    # bool is an int subclass: keep true/false out of numbers and numbers out of flags.
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(tp)
    if ok is None:
        raise TrainError(f"{name}: unsupported field type {tp}")
    if not ok:
        raise TrainError(f"{name}: expected {tp.__name__}, got {value!r}")
    return float(value) if tp is float else value
