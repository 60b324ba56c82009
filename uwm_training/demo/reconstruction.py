"""Can the autoencoder draw the task? Reconstruction error on the block's and the goal's pixels.

A blurry autoencoder makes a world model that cannot show where the block goes, however well
the DiT learns: its predicted futures decode through it. Measured on frames of the dataset,
on the pixels the real frame paints in the block's / goal's colour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from uwm_ros.bundle.contract import image_array
from uwm_ros.sim.render import COLORS

from ..data.store import Store
from ..model import UnifiedWorldModel

COLOR_TOLERANCE = 40  # sum of |RGB difference| that still counts as the object's colour


@torch.no_grad()
def object_errors(model: UnifiedWorldModel, dataset: Path, frames: int = 256) -> dict[str, float]:
    """Per object: RMS error (0-255) of its pixels and the share still drawn in its colour."""
    store = Store(dataset)
    camera = store.cameras[0]
    picks = np.linspace(0, store.num_frames - 1, min(frames, store.num_frames)).astype(int)
    real = np.stack([store.frames(camera).read(int(i)) for i in picks])  # (N, H, W, 3)
    assert model.autoencoder is not None
    ae = model.autoencoder
    pixels = torch.from_numpy(image_array(real))
    recon = torch.cat([ae.decode(ae.encode(pixels[i : i + 64])) for i in range(0, len(real), 64)])
    drawn = (recon.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.int32)
    out = {}
    for name in ("block", "goal"):
        colour = np.array(COLORS[name])
        mask = np.abs(real.astype(np.int32) - colour).sum(-1) < COLOR_TOLERANCE
        err = (drawn - real.astype(np.int32))[mask]
        kept = np.abs(drawn[mask] - colour).sum(-1) < COLOR_TOLERANCE
        out[f"{name}_rms"] = float(np.sqrt((err**2).mean())) if mask.any() else float("nan")
        out[f"{name}_kept"] = float(kept.mean()) if mask.any() else float("nan")
    return out
