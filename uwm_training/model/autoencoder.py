"""Frozen latent autoencoders: future camera frames <-> the latents the DiT denoises.

Two backends share one latent normalisation, (z * vae_scaling - shift) / scale, so the DiT sees
roughly unit-variance latents whichever one is used:

* ``KLAutoencoder``: a small conv KL autoencoder trained by us on the dataset's frames (default).
* ``DiffusersAutoencoder``: a local ``diffusers`` AutoencoderKL directory (paper: the SDXL VAE,
  latents x its scaling_factor, then / 3).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from uwm_ros.bundle.config import AutoencoderConfig


class AutoencoderError(ValueError):
    """The autoencoder cannot be built or cannot handle the given images."""


class LatentAutoencoder(nn.Module):
    """Base class: maps [0, 1] images to normalised latents and back, for either backend."""

    vae_scaling: float = 1.0

    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def _encode_moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior (mean, logvar) of [-1, 1] images; implemented by each backend."""
        raise NotImplementedError

    def _decode_raw(self, z: Tensor) -> Tensor:
        """Unnormalised latents -> [-1, 1] images; implemented by each backend."""
        raise NotImplementedError

    def _check_images(self, images: Tensor) -> None:
        """Fail early with a readable message instead of a shape error deep inside a conv."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise AutoencoderError(f"expected images (N, 3, H, W), got {tuple(images.shape)}")
        h, w = images.shape[-2:]
        f = self.cfg.downsample
        if h % f or w % f:
            raise AutoencoderError(f"image size {h}x{w} is not divisible by downsample {f}")

    def encode(self, images: Tensor, sample: bool = False) -> Tensor:
        """Images (N, 3, H, W) in [0, 1] -> normalised latents (N, C, H/f, W/f)."""
        self._check_images(images)
        mean, logvar = self._encode_moments(images * 2.0 - 1.0)
        # The posterior mean is the deterministic target the DiT learns; sampling is for training.
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean) if sample else mean
        return (z * self.vae_scaling - self.cfg.shift) / self.cfg.scale

    def decode(self, latents: Tensor) -> Tensor:
        """Normalised latents -> images (N, 3, H, W) in [0, 1], clamped."""
        z = (latents * self.cfg.scale + self.cfg.shift) / self.vae_scaling
        return ((self._decode_raw(z) + 1.0) / 2.0).clamp(0.0, 1.0)


# ----- our small KL autoencoder ------------------------------------------------------------------
def _norm(ch: int) -> nn.GroupNorm:
    # Up to 32 groups, but always a divisor of ch so any base_channels works.
    return nn.GroupNorm(math.gcd(32, ch), ch)


class ResBlock(nn.Module):
    """Pre-norm residual block: x + conv(silu(norm(conv(silu(norm(x))))))."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(ch), nn.Conv2d(ch, ch, 3, padding=1)
        self.norm2, self.conv2 = _norm(ch), nn.Conv2d(ch, ch, 3, padding=1)
        # Zero-init the last conv so every block starts as the identity: faster, stabler start.
        for p in self.conv2.parameters():
            nn.init.zeros_(p)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class KLAutoencoder(LatentAutoencoder):
    """Small conv KL autoencoder: log2(downsample) stride-2 stages, channels capped at 4x base."""

    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__(cfg)
        n = int(math.log2(cfg.downsample))
        # Width per resolution level: doubles per stage, capped so the low-res stages stay cheap.
        chs = [cfg.base_channels * min(2**i, 4) for i in range(n + 1)]
        enc: list[nn.Module] = [nn.Conv2d(3, chs[0], 3, padding=1)]
        for i in range(n):
            enc += [ResBlock(chs[i]), nn.Conv2d(chs[i], chs[i + 1], 3, stride=2, padding=1)]
        enc += [ResBlock(chs[n]), _norm(chs[n]), nn.SiLU()]
        enc += [nn.Conv2d(chs[n], 2 * cfg.latent_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)

        dec: list[nn.Module] = [nn.Conv2d(cfg.latent_channels, chs[n], 3, padding=1)]
        dec += [ResBlock(chs[n])]
        for i in reversed(range(n)):
            # Nearest upsample + conv instead of transposed conv: no checkerboard artefacts.
            dec += [nn.Upsample(scale_factor=2, mode="nearest")]
            dec += [nn.Conv2d(chs[i + 1], chs[i], 3, padding=1), ResBlock(chs[i])]
        dec += [_norm(chs[0]), nn.SiLU(), nn.Conv2d(chs[0], 3, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    def _encode_moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        # Same clamp as LDM/diffusers: keeps exp(logvar) finite early in training.
        return mean, logvar.clamp(-30.0, 20.0)

    def _decode_raw(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def loss(self, images: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Reconstruction MSE of a posterior sample + kl_weight * KL to N(0, I), per element."""
        self._check_images(images)
        x = images * 2.0 - 1.0
        mean, logvar = self._encode_moments(x)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        recon = F.mse_loss(self._decode_raw(z), x)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
        loss = recon + self.cfg.kl_weight * kl
        return loss, {"recon": recon.item(), "kl": kl.item(), "loss": loss.item()}


# ----- pretrained diffusers VAE ------------------------------------------------------------------
class DiffusersAutoencoder(LatentAutoencoder):
    """Frozen ``diffusers.AutoencoderKL`` loaded from a local directory (e.g. the SDXL VAE)."""

    def __init__(self, cfg: AutoencoderConfig, pretrained_weights: bool = True) -> None:
        super().__init__(cfg)
        path = Path(str(cfg.pretrained_path))
        self.vae = _load_diffusers_vae(path, pretrained_weights)
        self.vae.requires_grad_(False)
        self.vae.eval()
        vcfg = self.vae.config
        self.vae_scaling = float(vcfg.scaling_factor)
        factor = 2 ** (len(vcfg.block_out_channels) - 1)
        if vcfg.latent_channels != cfg.latent_channels:
            raise AutoencoderError(
                f"{path}: VAE has {vcfg.latent_channels} latent channels but "
                f"autoencoder.latent_channels is {cfg.latent_channels}"
            )
        if factor != cfg.downsample:
            raise AutoencoderError(
                f"{path}: VAE downsamples by {factor} but autoencoder.downsample is "
                f"{cfg.downsample}"
            )

    def train(self, mode: bool = True) -> DiffusersAutoencoder:
        """Stay in eval mode whatever the parent does: the VAE is frozen."""
        super().train(mode)
        self.vae.eval()
        return self

    def _encode_moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        # Cast to the VAE's dtype (it may be stored in fp16) and back to the caller's.
        dist = self.vae.encode(x.to(self.vae.dtype)).latent_dist
        return dist.mean.to(x.dtype), dist.logvar.to(x.dtype)

    def _decode_raw(self, z: Tensor) -> Tensor:
        return self.vae.decode(z.to(self.vae.dtype)).sample.to(z.dtype)


def _load_diffusers_vae(path: Path, weights: bool = True) -> Any:
    """Load an AutoencoderKL from a local directory, with errors that name the path; without
    ``weights`` only its config.json is read (the caller loads the weights from a checkpoint)."""
    try:
        from diffusers import AutoencoderKL
    except ImportError as e:
        raise AutoencoderError(
            f"autoencoder.pretrained_path={path} needs diffusers: pip install diffusers"
        ) from e
    config_file = path / "config.json"
    if not config_file.is_file():
        # A full pipeline directory (e.g. SDXL base) keeps its VAE in a subfolder.
        sub = path / "vae"
        hint = f" (did you mean {sub}?)" if (sub / "config.json").is_file() else ""
        raise AutoencoderError(f"{path}: not a diffusers AutoencoderKL directory{hint}")
    try:
        class_name = json.loads(config_file.read_text()).get("_class_name")
    except (OSError, ValueError) as e:
        raise AutoencoderError(f"{config_file}: cannot read VAE config: {e}") from e
    if class_name != "AutoencoderKL":
        raise AutoencoderError(f"{path}: expected an AutoencoderKL, config says {class_name!r}")
    try:
        if not weights:
            return AutoencoderKL.from_config(AutoencoderKL.load_config(str(path)))
        # local_files_only: never reach for the Hub; weights must already be on disk.
        return AutoencoderKL.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as e:
        raise AutoencoderError(f"{path}: cannot load AutoencoderKL: {e}") from e


def build_autoencoder(cfg: AutoencoderConfig, pretrained_weights: bool = True) -> LatentAutoencoder:
    """DiffusersAutoencoder if cfg.pretrained_path is set (its weights read from there unless
    ``pretrained_weights`` is False), else our small KLAutoencoder."""
    if cfg.pretrained_path:
        return DiffusersAutoencoder(cfg, pretrained_weights)
    return KLAutoencoder(cfg)
