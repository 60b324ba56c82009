"""The `small` model can fit one fixed tiny batch: proof that loss, gradients and wiring work."""

from __future__ import annotations

import torch
from helpers import make_batch

from uwm_training.model import UnifiedWorldModel, preset

STEPS = 100  # the loss falls ~1000x by step 50 on 2 cores; 10x is the bar


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
        # One fixed batch = fixed data, timesteps and noise: an objective the model can memorise,
        # so anything that blocks learning (detached graph, dead layer, bad target) shows.
        loss, _ = model.loss(batch, generator=torch.Generator().manual_seed(0))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = losses[0], min(losses[-10:])
    assert last < first / 10, (first, last)
