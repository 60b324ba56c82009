"""The model's input contract: image fitting and low-dim normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uwm_ros.bundle.contract import (
    ContractError,
    Normalizer,
    fit_image,
    image_array,
    normalizers,
)


def test_fit_image_resizes_short_side_and_centre_crops() -> None:
    img = np.zeros((48, 96, 3), np.uint8)
    img[:, 24:72] = 255  # a white centre band exactly as wide as the crop
    out = fit_image(img, 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert out.min() == 255  # the crop kept the centre, dropped the dark sides
    same = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    assert np.array_equal(fit_image(same, 32), same)  # already the right size: untouched
    up = fit_image(np.full((10, 20, 3), 7, np.uint8), 32)
    assert up.shape == (32, 32, 3) and (up == 7).all()
    with pytest.raises(ContractError, match="uint8"):
        fit_image(np.zeros((8, 8, 3), np.float32), 4)


def test_image_array_layout_and_range() -> None:
    frames = np.random.default_rng(0).integers(0, 256, (2, 5, 6, 3), dtype=np.uint8)
    x = image_array(frames)
    assert x.shape == (2, 3, 5, 6) and x.dtype == np.float32 and x.flags.c_contiguous
    assert x[1, 2, 3, 4] == np.float32(frames[1, 3, 4, 2]) / np.float32(255.0)
    # Bit for bit what the torch version (before the contract became numpy) computed.
    by_torch = torch.from_numpy(frames).movedim(-1, -3).float().div_(255.0).numpy()
    np.testing.assert_array_equal(x, by_torch)
    with pytest.raises(ContractError, match="uint8"):
        image_array(frames.astype(np.float32))


def test_normalizer_round_trip_numpy_and_torch() -> None:
    values = np.array([[0.0, -2.0, 5.0], [1.0, 2.0, 5.0], [0.5, 0.0, 5.0]])
    norm = Normalizer.fit(values)
    y = norm.normalize(values)
    assert y.min() == -1 and y.max() == 1 and (y[:, 2] == 0).all()  # constant dim -> 0
    np.testing.assert_allclose(norm.unnormalize(y), values)
    t = torch.tensor(values, dtype=torch.float32)
    torch.testing.assert_close(norm.unnormalize(norm.normalize(t)), t)
    assert Normalizer.from_stats(norm.to_stats()) == norm


def test_missing_or_bad_stats_raise() -> None:
    with pytest.raises(ContractError, match="actions"):
        normalizers({"proprio": {"min": [0], "max": [1]}}, ["proprio", "actions"])
    with pytest.raises(ContractError, match="max"):
        Normalizer.from_stats({"min": [0.0]}, "actions")
    with pytest.raises(ContractError, match="last dimension 2"):
        Normalizer((0.0, 0.0), (1.0, 1.0)).normalize(np.zeros((4, 3)))
