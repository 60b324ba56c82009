"""The model's input contract: one set of functions used by the dataset converter and reader,
the exporter and every engine, so train/serve skew cannot creep in.

- Images: any camera frame (H, W, 3) uint8 RGB -> ``fit_image`` (resize the short side, centre
  crop) -> the dataset/model resolution, still uint8 -> ``image_array`` -> float32 [0, 1] CHW.
- Low-dim vectors (actions, proprio): min/max ``Normalizer`` to [-1, 1], as diffusion policies do
  (the DDIM clips predicted x0 to [-1, 1]). Missing statistics raise; nothing passes through.

numpy only, so the runtime needs no torch (``Normalizer`` also takes torch tensors, duck-typed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np


class ContractError(ValueError):
    """Input that does not match what the model was trained on."""


def fit_image(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8: resize the short side to ``size``, centre crop.

    INTER_AREA when shrinking (no aliasing), INTER_LINEAR when enlarging.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ContractError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    if (h, w) != (size, size):
        scale = size / min(h, w)
        new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, (new_w, new_h), interpolation=interp)
        top, left = (new_h - size) // 2, (new_w - size) // 2
        image = image[top : top + size, left : left + size]
    return np.ascontiguousarray(image)


def image_array(frames: np.ndarray) -> np.ndarray:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32 in [0, 1] (contiguous)."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ContractError(f"expected uint8 frames, got {frames.dtype}")
    x = np.ascontiguousarray(np.moveaxis(frames, -1, -3), dtype=np.float32)
    x /= np.float32(255.0)  # in float32, bit for bit what the torch version computed
    return x


@dataclass(frozen=True)
class Normalizer:
    """Per-dimension min/max scaling to [-1, 1]; constant dimensions map to 0 and back."""

    min: tuple[float, ...]
    max: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.min) != len(self.max):
            raise ContractError(
                f"normalizer min/max sizes differ: {len(self.min)} vs {len(self.max)}"
            )
        if any(hi < lo for lo, hi in zip(self.min, self.max)):
            raise ContractError("normalizer max < min in some dimension")

    @classmethod
    def from_stats(cls, stats: Mapping[str, Any], key: str = "") -> Normalizer:
        """From a stats mapping with ``min`` and ``max`` lists (as stored with datasets/bundles)."""
        missing = [k for k in ("min", "max") if k not in stats]
        if missing:
            raise ContractError(f"normalization stats for {key or 'a key'!r} lack {missing}")
        return cls(tuple(map(float, stats["min"])), tuple(map(float, stats["max"])))

    @classmethod
    def fit(cls, values: np.ndarray) -> Normalizer:
        """Statistics of (N, d) values."""
        values = np.asarray(values, dtype=np.float64).reshape(-1, np.shape(values)[-1])
        return cls(tuple(values.min(0).tolist()), tuple(values.max(0).tolist()))

    def to_stats(self) -> dict[str, list[float]]:
        return {"min": list(self.min), "max": list(self.max)}

    @property
    def dim(self) -> int:
        return len(self.min)

    def _affine(self, like: Any) -> tuple[Any, Any]:
        lo, hi = np.array(self.min), np.array(self.max)
        half = (hi - lo) / 2
        scale = np.where(half > 1e-8, half, 1.0)  # constant dims: (x - lo) / 1 = 0
        center = np.where(half > 1e-8, lo + half, lo)
        if isinstance(like, np.ndarray):
            return center.astype(like.dtype), scale.astype(like.dtype)
        # A torch tensor (training side), duck-typed so this module never imports torch:
        # new_tensor casts to its dtype and device.
        return like.new_tensor(center), like.new_tensor(scale)

    def _per_step(self, x: Any) -> bool:
        """True for chunk statistics: one min/max per (step, dim) of (..., h, d) values."""
        if x.shape[-1] == self.dim:
            return False
        if x.ndim >= 2 and x.shape[-2] * x.shape[-1] == self.dim:
            return True
        raise ContractError(f"expected last dimension {self.dim}, got shape {tuple(x.shape)}")

    def normalize(self, x: Any) -> Any:
        """Raw values (..., d), or chunks (..., h, d) with per-step statistics, -> [-1, 1];
        numpy or torch in, same type out."""
        if self._per_step(x):
            return self.normalize(x.reshape(*x.shape[:-2], self.dim)).reshape(x.shape)
        center, scale = self._affine(x)
        return (x - center) / scale

    def unnormalize(self, y: Any) -> Any:
        """[-1, 1] (..., d) or (..., h, d) -> raw values; numpy or torch in, same type out."""
        if self._per_step(y):
            return self.unnormalize(y.reshape(*y.shape[:-2], self.dim)).reshape(y.shape)
        center, scale = self._affine(y)
        return y * scale + center


def normalizers(
    stats: Mapping[str, Mapping[str, Any]], keys: Sequence[str]
) -> dict[str, Normalizer]:
    """One Normalizer per key; a key without stats is an error, never a silent pass-through."""
    missing = [k for k in keys if k not in stats]
    if missing:
        raise ContractError(f"no normalization stats for {missing}; have {sorted(stats)}")
    return {k: Normalizer.from_stats(stats[k], k) for k in keys}
