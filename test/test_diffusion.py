"""Our tensor-code DDIM against diffusers.DDIMScheduler, step by step."""

from __future__ import annotations

import pytest
import torch

from uwm_training.model import DDIMScheduler

diffusers = pytest.importorskip("diffusers")


def reference(steps: int = 100, inference_steps: int = 10, prediction: str = "epsilon"):  # type: ignore[no-untyped-def]
    ref = diffusers.DDIMScheduler(
        num_train_timesteps=steps,
        beta_schedule="squaredcos_cap_v2",
        clip_sample=True,
        set_alpha_to_one=True,
        steps_offset=0,
        prediction_type=prediction,
        timestep_spacing="leading",
    )
    ref.set_timesteps(inference_steps)
    return ref


def test_schedule_and_timesteps_match_diffusers() -> None:
    ours, ref = DDIMScheduler(100, 10), reference()
    assert ours.timesteps == ref.timesteps.tolist() == [90, 80, 70, 60, 50, 40, 30, 20, 10, 0]
    torch.testing.assert_close(ours.alphas_cumprod[:-1], ref.alphas_cumprod, rtol=0, atol=1e-6)


@pytest.mark.parametrize("prediction", ["epsilon", "sample"])
@pytest.mark.parametrize("steps", [(100, 10), (100, 4), (1000, 50)])
def test_ddim_steps_match_diffusers(steps: tuple[int, int], prediction: str) -> None:
    ours, ref = DDIMScheduler(*steps, prediction), reference(*steps, prediction)
    g = torch.Generator().manual_seed(0)
    x_ours = x_ref = torch.randn(3, 16, 10, generator=g) * 1.5  # big enough that x0 clipping acts
    for t in ref.timesteps:
        eps = torch.randn(x_ours.shape, generator=g)
        x_ours = ours.step(eps, int(t), x_ours)
        x_ref = ref.step(eps, t, x_ref, eta=0.0).prev_sample
        torch.testing.assert_close(x_ours, x_ref, rtol=0, atol=1e-6)


def test_step_accepts_per_sample_timesteps() -> None:
    ours, ref = DDIMScheduler(), reference()
    x, eps = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    out = ours.step(eps, torch.tensor([90, 30]), x)
    torch.testing.assert_close(
        out[0], ref.step(eps[:1], 90, x[:1]).prev_sample[0], atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        out[1], ref.step(eps[1:], 30, x[1:]).prev_sample[0], atol=1e-6, rtol=0
    )


def test_add_noise_matches_diffusers() -> None:
    ours, ref = DDIMScheduler(), reference()
    x0, noise = torch.randn(5, 7), torch.randn(5, 7)
    t = torch.tensor([0, 10, 50, 98, 99])
    torch.testing.assert_close(
        ours.add_noise(x0, noise, t), ref.add_noise(x0, noise, t), atol=1e-6, rtol=0
    )
