"""Tests for the latent autoencoders: shapes, normalisation, training, diffusers adapter, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from uwm_ros.bundle.config import AutoencoderConfig
from uwm_training.model.autoencoder import (
    AutoencoderError,
    DiffusersAutoencoder,
    KLAutoencoder,
    build_autoencoder,
)


def smooth_images(n: int, side: int, seed: int = 0) -> torch.Tensor:
    """Low-frequency images in [0, 1]: bilinearly upsampled 4x4 noise plus a gradient."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    x = F.interpolate(coarse, size=(side, side), mode="bilinear", align_corners=False)
    ramp = torch.linspace(0, 1, side).view(1, 1, 1, side)
    return (0.7 * x + 0.3 * ramp).clamp(0, 1)


# ----- our KL autoencoder ------------------------------------------------------------------------
@pytest.mark.parametrize("downsample", [4, 8])
def test_kl_shapes_and_ranges(downsample: int) -> None:
    torch.manual_seed(0)
    ae = build_autoencoder(AutoencoderConfig(downsample=downsample, latent_channels=4))
    assert isinstance(ae, KLAutoencoder)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        z = ae.encode(x)
        assert z.shape == (2, 4, 64 // downsample, 64 // downsample)
        assert torch.isfinite(z).all()
        y = ae.decode(z)
        assert y.shape == x.shape
        assert 0.0 <= y.min() and y.max() <= 1.0
        # Decode clamps even for latents far outside the training distribution.
        y_far = ae.decode(torch.randn_like(z) * 50)
        assert 0.0 <= y_far.min() and y_far.max() <= 1.0


def test_kl_encode_deterministic_unless_sampling() -> None:
    torch.manual_seed(0)
    ae = KLAutoencoder(AutoencoderConfig(downsample=4))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(ae.encode(x), ae.encode(x))
        assert not torch.allclose(ae.encode(x, sample=True), ae.encode(x, sample=True))


def test_normalisation_matches_raw_mean() -> None:
    torch.manual_seed(0)
    ae = KLAutoencoder(AutoencoderConfig(downsample=4, shift=0.5, scale=2.0))
    assert ae.vae_scaling == 1.0
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        mean, logvar = ae._encode_moments(x * 2 - 1)
        assert logvar.min() >= -30 and logvar.max() <= 20
        z = ae.encode(x)
        torch.testing.assert_close(z, (mean * 1.0 - 0.5) / 2.0)
        expected = ((ae._decode_raw(mean) + 1) / 2).clamp(0, 1)
        torch.testing.assert_close(ae.decode(z), expected, atol=1e-5, rtol=1e-5)


def test_kl_training_reduces_reconstruction() -> None:
    torch.manual_seed(0)
    ae = KLAutoencoder(AutoencoderConfig(downsample=4, base_channels=8, latent_channels=4))
    x = smooth_images(8, 32)

    def recon() -> float:
        with torch.no_grad():
            mean, _ = ae._encode_moments(x * 2 - 1)
            return F.mse_loss(ae._decode_raw(mean), x * 2 - 1).item()

    before = recon()
    opt = torch.optim.Adam(ae.parameters(), lr=1e-3)
    for _ in range(150):
        loss, info = ae.loss(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert set(info) == {"recon", "kl", "loss"}
    assert info["loss"] == pytest.approx(info["recon"] + ae.cfg.kl_weight * info["kl"], rel=1e-5)
    after = recon()
    assert after * 3 < before, (before, after)


# ----- diffusers adapter -------------------------------------------------------------------------
def test_diffusers_adapter_matches_vae(tiny_vae_dir: Path) -> None:
    from diffusers import AutoencoderKL

    cfg = AutoencoderConfig(pretrained_path=str(tiny_vae_dir), downsample=2, shift=0.0, scale=3.0)
    ae = build_autoencoder(cfg)
    assert isinstance(ae, DiffusersAutoencoder)
    assert ae.vae_scaling == 0.5
    assert all(not p.requires_grad for p in ae.parameters())
    ae.train()
    assert not ae.vae.training  # frozen VAE stays in eval mode

    vae = AutoencoderKL.from_pretrained(tiny_vae_dir).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        z = ae.encode(x)
        assert z.shape == (2, 4, 16, 16)
        ref_z = vae.encode(2 * x - 1).latent_dist.mean * 0.5 / 3
        torch.testing.assert_close(z, ref_z, atol=1e-5, rtol=1e-5)
        y = ae.decode(z)
        ref_y = ((vae.decode(z * 3 / 0.5).sample + 1) / 2).clamp(0, 1)
        torch.testing.assert_close(y, ref_y, atol=1e-5, rtol=1e-5)


# ----- errors ------------------------------------------------------------------------------------
def test_missing_path_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_vae"
    with pytest.raises(AutoencoderError, match="no_such_vae"):
        build_autoencoder(AutoencoderConfig(pretrained_path=str(missing)))


def test_downsample_mismatch(tiny_vae_dir: Path) -> None:
    cfg = AutoencoderConfig(pretrained_path=str(tiny_vae_dir), downsample=8)
    with pytest.raises(AutoencoderError, match=r"tiny_vae.* 2 .* 8"):
        build_autoencoder(cfg)


def test_latent_channel_mismatch(tiny_vae_dir: Path) -> None:
    cfg = AutoencoderConfig(pretrained_path=str(tiny_vae_dir), downsample=2, latent_channels=16)
    with pytest.raises(AutoencoderError, match=r"4 latent channels.* 16"):
        build_autoencoder(cfg)


def test_image_side_not_divisible() -> None:
    ae = KLAutoencoder(AutoencoderConfig(downsample=8))
    with pytest.raises(AutoencoderError, match="divisible by downsample 8"):
        ae.encode(torch.rand(1, 3, 60, 64))
    with pytest.raises(AutoencoderError, match="divisible"):
        ae.loss(torch.rand(1, 3, 64, 36))
