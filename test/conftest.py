"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from helpers import randomize, tiny_config

from uwm_training.model import UnifiedWorldModel


@pytest.fixture(scope="session", autouse=True)
def user_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Verified-hash records and TensorRT plans go to a per-session directory, never to the
    home directory of whoever runs the tests (child processes inherit it)."""
    path = tmp_path_factory.mktemp("uwm_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UWM_CACHE_DIR", str(path))
        yield path


@pytest.fixture
def tiny_model() -> UnifiedWorldModel:
    torch.manual_seed(0)
    return randomize(UnifiedWorldModel(tiny_config()).eval())  # type: ignore[return-value]


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A random-weight tiny model exported once per session: (bundle dir, fp32 model, spec)."""
    from helpers import tiny_spec

    from uwm_training.export.exporter import export_bundle
    from uwm_training.model import save_model

    root = tmp_path_factory.mktemp("bundle")
    model = randomize(UnifiedWorldModel(tiny_config()).eval())  # type: ignore[assignment]
    spec = tiny_spec(model.cfg)  # type: ignore[attr-defined]
    save_model(model, root / "ckpt" / "model.safetensors", spec)  # type: ignore[arg-type]
    export_bundle(root / "ckpt", root / "bundle", modes=["policy", "forward_dynamics", "joint"])
    return root / "bundle", model, spec


@pytest.fixture(scope="session")
def tiny_vae_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random diffusers AutoencoderKL saved as a local directory (downsample 2)."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=4,
        sample_size=32,
        scaling_factor=0.5,
    )
    path = tmp_path_factory.mktemp("vae") / "tiny_vae"
    vae.save_pretrained(path)
    return path
