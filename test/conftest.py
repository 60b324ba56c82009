"""Shared fixtures."""

from __future__ import annotations

import pytest
import torch
from helpers import randomize, tiny_config

from uwm_training.model import UnifiedWorldModel


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
