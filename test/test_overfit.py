"""The `small` model can fit one fixed tiny batch: proof that loss, gradients and wiring work."""

from __future__ import annotations

import torch
from helpers import make_batch

from uwm_training.model import UnifiedWorldModel, preset


def test_small_model_overfits_one_batch() -> None:
    torch.manual_seed(0)
    cfg = preset("small")
    model = UnifiedWorldModel(cfg).train()
    batch = make_batch(cfg, batch_size=2)
    with torch.no_grad():  # the autoencoder is frozen: encode the targets once
        batch["future_latents"] = model.encode_future(batch.pop("future_images"))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-4)
    losses = []
    for _ in range(STEPS):
        # Same timesteps and noise every step: a fixed objective that must be memorised.
        loss, _ = model.loss(batch, generator=torch.Generator().manual_seed(0))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = losses[0], min(losses[-10:])
    assert last < first / 10, (first, last)


STEPS = 300
