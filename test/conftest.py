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
