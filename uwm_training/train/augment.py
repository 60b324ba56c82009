"""Training-time image augmentation: random shifts (DrQ), the cheap one that matters most for
visuomotor policies learnt from few demonstrations."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def random_shift(images: Tensor, pad: int) -> Tensor:
    """Shift each sample's view by up to ``pad`` pixels each way (edges replicated).

    images (B, V, T, 3, H, W): the T frames of one view move together, so the motion between
    them stays what the camera saw. Draws from torch's global RNG (seeded per step by the loop).
    """
    if pad <= 0:
        return images
    B, V, T, C, H, W = images.shape
    padded = F.pad(images.reshape(B * V, T * C, H, W), (pad, pad, pad, pad), mode="replicate")
    dy, dx = torch.randint(0, 2 * pad + 1, (2, B * V, 1), device=images.device)
    rows = (dy + torch.arange(H, device=images.device))[:, :, None]  # (BV, H, 1)
    cols = (dx + torch.arange(W, device=images.device))[:, None, :]  # (BV, 1, W)
    n = torch.arange(B * V, device=images.device)[:, None, None]
    shifted = padded.permute(0, 2, 3, 1)[n, rows, cols]  # (BV, H, W, T*C)
    return shifted.permute(0, 3, 1, 2).reshape(B, V, T, C, H, W)
