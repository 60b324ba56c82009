"""Model configuration: dataclasses with a why-comment per field, two presets, YAML round trip.

Paper symbols map to field names as in diffusion_policy: h_o -> ``n_obs_steps``, h_o' ->
``n_future_steps``, h_a -> ``horizon``, d_a -> ``action_dim``, D -> ``embed_dim``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

OBS_ENCODERS = ("resnet18", "keypoints")
PREDICTIONS = ("epsilon", "sample")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or inconsistent."""


@dataclass
class AutoencoderConfig:
    """Frozen autoencoder that maps future frames to the latents the DiT denoises.

    Args:
        pretrained_path: local ``diffusers`` AutoencoderKL directory; ``None`` builds our small
            KL autoencoder (trained at stage 0 on the dataset's frames).
        latent_channels: C of the latent image (4 for SD/SDXL VAEs).
        downsample: image size / latent size; a power of two (8 for SD/SDXL VAEs).
        base_channels: width of the small autoencoder's first stage (doubles per downsample).
        shift: latents are stored as (z * vae_scaling - shift) / scale so they are ~unit variance.
        scale: see ``shift``; the paper divides SDXL latents by 3.
        kl_weight: weight of the KL term when training the small autoencoder.
    """

    pretrained_path: str | None = None
    latent_channels: int = 4
    downsample: int = 8
    base_channels: int = 32
    shift: float = 0.0
    scale: float = 3.0
    kl_weight: float = 1e-6

    def __post_init__(self) -> None:
        if self.downsample < 1 or self.downsample & (self.downsample - 1):
            raise ConfigError(
                f"autoencoder.downsample must be a power of two, got {self.downsample}"
            )
        if self.scale <= 0:
            raise ConfigError(f"autoencoder.scale must be > 0, got {self.scale}")


@dataclass
class UWMConfig:
    """Everything needed to build the network; stored with every checkpoint.

    Args:
        cameras: view names, in the order their features/tokens are concatenated.
        image_size: square side (pixels) the observation encoder and autoencoder see.
        n_obs_steps: h_o, current-observation frames the policy conditions on.
        n_future_steps: h_o', future frames per camera that are diffused (even: Conv3d depth 2).
        horizon: h_a, actions per chunk (one token each).
        action_dim: d_a, size of one action vector.
        proprio_dim: joint-position size fed through Linear -> D per frame; 0 disables it.
        obs_encoder: "resnet18" (the paper: ResNet-18-GN, average-pooled) or "keypoints" (a
            small conv net with spatial-softmax keypoints: keeps where objects are, CPU-sized).
        keypoints: K, spatial-softmax keypoints per view and frame ("keypoints" encoder).
        encoder_width: channels of the "keypoints" encoder at 1/2 resolution (2x at 1/4).
        embed_dim: D, transformer width; also the per-frame image feature size.
        depth: number of DiT blocks.
        num_heads: attention heads (embed_dim must divide evenly).
        mlp_ratio: hidden size of block MLPs and action MLPs relative to D.
        num_registers: learned tokens that give attention scratch space; dropped at the output.
        timestep_embed_dim: sinusoidal size per timestep and size of the timestep embedding.
        patch_size: spatial patch side on the latent image (temporal patch is 2 frames).
        future_obs: False turns UWM into the paper's Diffusion Policy baseline (no video tokens,
            no video timestep, no registers) so UWM vs DP is one flag.
        prediction: what the denoiser outputs: "epsilon" (the noise: the paper's) or "sample"
            (the clean actions/latents x_0 directly; DDIM turns either into the same update).
        num_train_steps: T, diffusion steps at training time.
        num_inference_steps: DDIM steps per sample (leading spacing).
        marginal_t: timestep the marginalised modality is held at (official code: 90; it was
            trained on pure noise at T-1, which is our default).
        mask_action_free_loss: True masks the action loss of action-free samples (the paper
            leaves it on, which trains the action head to predict noise from noise).
        policy_fraction: share of action-labelled training samples whose future latents are
            pure noise at ``marginal_t``, exactly as the policy sampler sees them (0: t_o'
            uniform as in the paper, so few samples train the policy's own configuration and
            many let the action head read nearly clean futures: inverse dynamics).
        autoencoder: the frozen latent autoencoder.
    """

    cameras: tuple[str, ...] = ("front",)
    image_size: int = 64
    n_obs_steps: int = 2
    n_future_steps: int = 2
    horizon: int = 16
    action_dim: int = 10
    proprio_dim: int = 0
    obs_encoder: str = "resnet18"
    keypoints: int = 32
    encoder_width: int = 32
    embed_dim: int = 256
    depth: int = 6
    num_heads: int = 4
    mlp_ratio: float = 4.0
    num_registers: int = 4
    timestep_embed_dim: int = 512
    patch_size: int = 2
    future_obs: bool = True
    prediction: str = "epsilon"
    num_train_steps: int = 100
    num_inference_steps: int = 10
    marginal_t: int | None = None
    mask_action_free_loss: bool = True
    policy_fraction: float = 0.0
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)

    def __post_init__(self) -> None:
        self.cameras = tuple(self.cameras)
        if isinstance(self.autoencoder, dict):
            self.autoencoder = _from_dict(AutoencoderConfig, self.autoencoder, "autoencoder")
        if not self.cameras:
            raise ConfigError("cameras must name at least one camera")
        if self.obs_encoder not in OBS_ENCODERS:
            raise ConfigError(
                f"obs_encoder must be one of {OBS_ENCODERS}, got {self.obs_encoder!r}"
            )
        if len(set(self.cameras)) != len(self.cameras):
            raise ConfigError(f"cameras must be unique, got {list(self.cameras)}")
        if self.embed_dim % self.num_heads:
            raise ConfigError(
                f"embed_dim {self.embed_dim} not divisible by num_heads {self.num_heads}"
            )
        if self.n_future_steps % 2:
            raise ConfigError(
                f"n_future_steps must be even (temporal patch 2), got {self.n_future_steps}"
            )
        if self.latent_size % self.patch_size:
            raise ConfigError(
                f"latent size {self.latent_size} (image_size {self.image_size} / downsample "
                f"{self.autoencoder.downsample}) not divisible by patch_size {self.patch_size}"
            )
        if self.prediction not in PREDICTIONS:
            raise ConfigError(f"prediction must be one of {PREDICTIONS}, got {self.prediction!r}")
        if self.num_train_steps % self.num_inference_steps:
            raise ConfigError("num_train_steps must be a multiple of num_inference_steps")
        if not 0 <= self.policy_fraction <= 1:
            raise ConfigError(f"policy_fraction must be in [0, 1], got {self.policy_fraction}")
        if self.marginal_t is None:
            self.marginal_t = self.num_train_steps - 1
        if not 0 <= self.marginal_t < self.num_train_steps:
            raise ConfigError(
                f"marginal_t must be in [0, {self.num_train_steps}), got {self.marginal_t}"
            )

    # ----- derived sizes -------------------------------------------------------------------------
    @property
    def num_views(self) -> int:
        return len(self.cameras)

    @property
    def latent_size(self) -> int:
        """Side of the latent image of one frame."""
        return self.image_size // self.autoencoder.downsample

    @property
    def latent_shape(self) -> tuple[int, int, int, int, int]:
        """Future latents of one sample: (V, C, T', h, w)."""
        s = self.latent_size
        return (self.num_views, self.autoencoder.latent_channels, self.n_future_steps, s, s)

    @property
    def num_video_tokens(self) -> int:
        if not self.future_obs:
            return 0
        per_view = (self.n_future_steps // 2) * (self.latent_size // self.patch_size) ** 2
        return self.num_views * per_view

    @property
    def obs_feature_dim(self) -> int:
        """Size of the observation conditioning: one D-vector per view/frame (+ proprio/frame)."""
        per_frame = self.num_views + (1 if self.proprio_dim else 0)
        return per_frame * self.n_obs_steps * self.embed_dim

    @property
    def num_timesteps(self) -> int:
        """Diffusion timesteps the network is conditioned on (t_a, and t_o' for UWM)."""
        return 2 if self.future_obs else 1

    # ----- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["cameras"] = list(self.cameras)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UWMConfig:
        return _from_dict(cls, d, "model")

    def save_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load_yaml(cls, path: str | Path) -> UWMConfig:
        try:
            data = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{path}: cannot read model config: {e}") from e
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: model config must be a mapping, got {type(data).__name__}")
        try:
            return cls.from_dict(data)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from e


def _from_dict(cls: Any, d: dict[str, Any], where: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"unknown {where} config keys {unknown}; valid keys: {sorted(names)}")
    return cls(**d)


# What an action vector means; a runtime output that cannot express the kind refuses it.
# "deltas" are per-step joint deltas (next minus current measured positions), so positions
# follow by adding their running sum to the joints observed at the chunk's time.
ACTION_KINDS = ("positions", "deltas", "velocities", "twist", "other", "unknown")


@dataclass
class PolicySpec:
    """The raw-unit interface of a trained model, taken from its dataset; travels with weights.

    Args:
        fps: control rate the model was trained at (one action per 1/fps seconds).
        action_names: one name per action dimension (joints or end-effector axes).
        proprio_names: joint names an observation carries, in order: the proprio input, and
            the joints relative actions are added to (empty when neither is used).
        normalization: per key ("actions", "proprio") the dataset statistics, at least
            ``min`` and ``max`` lists (see ``contract.Normalizer``).
        relative_actions: the model predicts each chunk as offsets from the joints (same
            names) at the time of its observation; engines add them back, so what leaves an
            engine is always in the dataset's action units.
        action_kind: what the actions are (``ACTION_KINDS``), from the dataset's action
            source; "unknown" for specs written before it was recorded.
    """

    fps: float
    action_names: tuple[str, ...]
    proprio_names: tuple[str, ...] = ()
    normalization: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    relative_actions: bool = False
    action_kind: str = "unknown"

    def __post_init__(self) -> None:
        self.action_names = tuple(self.action_names)
        self.proprio_names = tuple(self.proprio_names)
        if self.fps <= 0:
            raise ConfigError(f"spec.fps must be > 0, got {self.fps}")
        if self.action_kind not in ACTION_KINDS:
            raise ConfigError(f"spec.action_kind must be one of {ACTION_KINDS}, got "
                              f"{self.action_kind!r}")  # fmt: skip

    def check(self, cfg: UWMConfig) -> None:
        """Raise unless names and statistics fit the model's action/proprio sizes."""
        sizes = {"actions": cfg.action_dim, "proprio": cfg.proprio_dim}
        names = {"actions": self.action_names, "proprio": self.proprio_names}
        if self.relative_actions:
            missing = [n for n in self.action_names if n not in self.proprio_names]
            if missing:
                raise ConfigError(f"relative actions {missing} are not among the joints "
                                  f"{list(self.proprio_names)}")  # fmt: skip
        for key, size in sizes.items():
            extra_joints = key == "proprio" and not size and self.relative_actions
            if len(names[key]) != size and not extra_joints:
                raise ConfigError(f"spec has {len(names[key])} {key} names, model expects {size}")
            if not size:
                continue
            stats = self.normalization.get(key)
            lengths = (size, size * cfg.horizon) if key == "actions" else (size,)
            if stats is None or any(len(stats.get(s, ())) not in lengths for s in ("min", "max")):
                raise ConfigError(f"spec.normalization[{key!r}] needs min/max of length {size}"
                                  + (f" (or {size * cfg.horizon}: per chunk step)"
                                     if key == "actions" else ""))  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["action_names"], d["proprio_names"] = list(self.action_names), list(self.proprio_names)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PolicySpec:
        return _from_dict(cls, d, "spec")


# ----- presets ----------------------------------------------------------------------------------
PRESETS: dict[str, dict[str, Any]] = {
    # The paper / official configuration: 3 cameras at 224^2, SDXL-shaped latents 28x28x4,
    # latent patch 4 -> 49 tokens per view; no proprio (the paper leaves it off).
    "paper": dict(
        cameras=("agentview", "wrist", "side"),
        obs_encoder="resnet18",
        prediction="epsilon",
        image_size=224,
        embed_dim=768,
        depth=12,
        num_heads=12,
        num_registers=8,
        patch_size=4,
        action_dim=10,
        proprio_dim=0,
    ),
    # Trains to a working policy on 2 CPU cores (the learning study in the README): one 64^2
    # camera through a keypoint encoder (spatial softmax, 16 channels); 16x16x4 latents
    # (autoencoder downsample 4: it draws the 7-pixel block), patch 4 -> 16 video tokens + 16
    # action + 4 registers = 36 tokens at D=128, 4 layers, a 128-wide timestep embedding; the
    # denoiser predicts x_0 ("sample"), which learnt twice as fast as epsilon here; proprio on;
    # half the action-labelled samples train the policy's own input (future latents at pure
    # noise), which took success from 64 to 80 % at equal CPU time (study run 3).
    "small": dict(
        cameras=("front",),
        image_size=64,
        obs_encoder="keypoints",
        keypoints=32,
        encoder_width=16,
        timestep_embed_dim=128,
        embed_dim=128,
        depth=4,
        num_heads=4,
        num_registers=4,
        patch_size=4,
        action_dim=7,
        proprio_dim=7,
        prediction="sample",
        policy_fraction=0.5,
        autoencoder=AutoencoderConfig(downsample=4, base_channels=16),
    ),
}


def preset(name: str, **overrides: Any) -> UWMConfig:
    """Build a preset configuration, optionally overriding fields."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return UWMConfig(**{**PRESETS[name], **overrides})
