"""The UWM network: shapes, parameter count, mode wiring, the obs-conditioning cache, losses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import make_batch, randomize, tiny_config

from uwm_training.model import MODES, UnifiedWorldModel, UWMConfig, preset
from uwm_training.model.dit import UWMDenoiser, modulate

EXPECTED = {  # mode -> (actions produced, future latents produced)
    "policy": (True, False),
    "video": (False, True),
    "forward_dynamics": (False, True),
    "inverse_dynamics": (True, False),
    "joint": (True, True),
}


def mode_inputs(cfg: UWMConfig, mode: str, B: int, device: str = "cpu") -> dict:  # type: ignore[type-arg]
    kw: dict = {}  # type: ignore[type-arg]
    if mode == "forward_dynamics":
        kw["actions"] = torch.randn(B, cfg.horizon, cfg.action_dim, device=device)
    if mode == "inverse_dynamics":
        kw["future_latents"] = torch.randn(B, *cfg.latent_shape, device=device)
    return kw


def obs_inputs(cfg: UWMConfig, B: int, device: str = "cpu") -> tuple:  # type: ignore[type-arg]
    S = cfg.image_size
    images = torch.rand(B, cfg.num_views, cfg.n_obs_steps, 3, S, S, device=device)
    proprio = (
        torch.rand(B, cfg.n_obs_steps, cfg.proprio_dim, device=device) if cfg.proprio_dim else None
    )
    return images, proprio


@pytest.mark.parametrize("name", ["paper", "small"])
@pytest.mark.parametrize("mode", MODES)
def test_every_mode_shapes_on_meta(name: str, mode: str) -> None:
    cfg = preset(name)
    with torch.device("meta"):
        model = UnifiedWorldModel(cfg)
        out = model.sample(mode, *obs_inputs(cfg, 3, "meta"), **mode_inputs(cfg, mode, 3, "meta"))
    want_a, want_o = EXPECTED[mode]
    assert (out.actions is not None) == want_a and (out.future_latents is not None) == want_o
    if want_a:
        assert out.actions.shape == (3, cfg.horizon, cfg.action_dim)
    if want_o:
        assert out.future_latents.shape == (3, *cfg.latent_shape)


def test_paper_preset_counts_385m_dit_parameters() -> None:
    with torch.device("meta"):
        den = UWMDenoiser(preset("paper"))
    n = sum(p.numel() for p in den.parameters())
    assert abs(n - 385e6) / 385e6 < 0.02, n
    adaln = sum(p.numel() for m in (den.adaLN_obs, den.adaLN_t) for p in m.parameters())
    assert 0.74 < adaln / n < 0.78  # "≈76% in the adaLN Linears"
    assert preset("paper").num_video_tokens == 3 * 7 * 7


def test_every_mode_runs_and_latents_decode(tiny_model: UnifiedWorldModel) -> None:
    cfg = tiny_model.cfg
    for mode in MODES:
        out = tiny_model.sample(mode, *obs_inputs(cfg, 2), **mode_inputs(cfg, mode, 2))
        for x in out:
            assert x is None or torch.isfinite(x).all()
    frames = tiny_model.decode_future(out.future_latents)
    assert frames.shape == (2, 2, cfg.n_future_steps, 3, cfg.image_size, cfg.image_size)
    assert frames.min() >= 0 and frames.max() <= 1


def test_patchify_round_trip_is_a_permutation() -> None:
    """With identity-like weights, unpatchify(patchify) must put every value back in place."""
    cfg = tiny_config()
    lat = torch.randn(2, *cfg.latent_shape)
    C, p = cfg.autoencoder.latent_channels, cfg.patch_size
    k = 2 * p * p * C
    small = UnifiedWorldModel(tiny_config(embed_dim=k, num_heads=2)).denoiser.patchifier
    with torch.no_grad():  # conv kernel = one-hot per (c, t, y, x) slot; decoder = identity
        small.encoder.weight.copy_(torch.eye(k).reshape(k, C, 2, p, p))
        small.encoder.bias.zero_()
        small.decoder.weight.copy_(torch.eye(k))
        small.decoder.bias.zero_()
    tokens = small.patchify(lat)
    assert tokens.shape == (2, cfg.num_video_tokens, k)
    torch.testing.assert_close(small.unpatchify(tokens), lat)


def test_forward_dynamics_depends_on_actions(tiny_model: UnifiedWorldModel) -> None:
    cfg = tiny_model.cfg
    obs = obs_inputs(cfg, 2)
    noise = torch.randn(2, *cfg.latent_shape)
    a1, a2 = (
        torch.randn(2, cfg.horizon, cfg.action_dim),
        torch.randn(2, cfg.horizon, cfg.action_dim),
    )
    o1 = tiny_model.sample("forward_dynamics", *obs, actions=a1, noise_future=noise).future_latents
    o1b = tiny_model.sample("forward_dynamics", *obs, actions=a1, noise_future=noise).future_latents
    o2 = tiny_model.sample("forward_dynamics", *obs, actions=a2, noise_future=noise).future_latents
    torch.testing.assert_close(o1, o1b)
    assert (o1 - o2).abs().max() > 1e-4


def test_inverse_dynamics_depends_on_future(tiny_model: UnifiedWorldModel) -> None:
    cfg = tiny_model.cfg
    obs = obs_inputs(cfg, 2)
    noise = torch.randn(2, cfg.horizon, cfg.action_dim)
    f1, f2 = torch.randn(2, *cfg.latent_shape), torch.randn(2, *cfg.latent_shape)
    a1 = tiny_model.sample("inverse_dynamics", *obs, future_latents=f1, noise_actions=noise).actions
    a2 = tiny_model.sample("inverse_dynamics", *obs, future_latents=f2, noise_actions=noise).actions
    assert (a1 - a2).abs().max() > 1e-4


def test_policy_takes_no_future_frames(tiny_model: UnifiedWorldModel) -> None:
    cfg = tiny_model.cfg
    obs = obs_inputs(cfg, 1)
    with pytest.raises(ValueError, match="future_latents"):
        tiny_model.sample("policy", *obs, future_latents=torch.randn(1, *cfg.latent_shape))
    with pytest.raises(ValueError, match="actions"):
        tiny_model.sample("policy", *obs, actions=torch.randn(1, cfg.horizon, cfg.action_dim))
    with pytest.raises(ValueError, match="unknown sampling mode"):
        tiny_model.sample("dreaming", *obs)
    # The only future-frame input a policy sees is its own start noise, held at marginal_t.
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    torch.testing.assert_close(
        tiny_model.sample("policy", *obs, generator=g1).actions,
        tiny_model.sample("policy", *obs, generator=g2).actions,
    )


def naive_denoise(den: UWMDenoiser, obs, action, t_a, future, t_o):  # type: ignore[no-untyped-def]
    """Reference: the official computation, Linear(SiLU([obs ⊕ temb])) -> per-block modulation."""
    B = obs.shape[0]
    temb = den.t_embedder(t_a.expand(B), t_o.expand(B))
    weight = torch.cat([den.adaLN_obs.weight, den.adaLN_t.weight], dim=1)  # Linear(cond -> M)
    mods = F.linear(F.silu(torch.cat([obs, temb], 1)), weight, den.adaLN_obs.bias)
    mods = mods.split(den.mod_sizes, dim=1)
    registers = den.registers.expand(B, -1, -1)
    x = torch.cat([den.action_encoder(action), den.patchifier.patchify(future), registers], 1)
    x = x + den.pos_embed
    for block, mod in zip(den.blocks, mods):
        x = block(x, mod)
    shift, scale = mods[-1].chunk(2, dim=1)
    x = den.final_layer.linear(modulate(den.final_layer.norm(x), shift, scale))
    return den.action_decoder(x[:, : den.cfg.horizon])


def test_obs_conditioning_cache_equals_naive_computation(tiny_model: UnifiedWorldModel) -> None:
    cfg, den = tiny_model.cfg, tiny_model.denoiser
    obs = tiny_model.obs_encoder(*obs_inputs(cfg, 3))
    obs_cond = den.condition(obs)
    t_cond = den.timestep_condition(torch.tensor([90, 0, 50]), torch.tensor([99, 40, 50]))
    for i, (t_a, t_o) in enumerate([(90, 99), (0, 40), (50, 50)]):
        a, f = torch.randn(3, cfg.horizon, cfg.action_dim), torch.randn(3, *cfg.latent_shape)
        ta, to = torch.tensor(t_a), torch.tensor(t_o)
        cached, _ = den.denoise(obs_cond + t_cond[i], a, f)
        torch.testing.assert_close(
            cached, naive_denoise(den, obs, a, ta, f, to), atol=1e-5, rtol=1e-5
        )
    obs_in = obs_inputs(cfg, 2)
    noise = torch.randn(2, cfg.horizon, cfg.action_dim), torch.randn(2, *cfg.latent_shape)
    fast = tiny_model.sample("joint", *obs_in, noise_actions=noise[0], noise_future=noise[1])
    slow = tiny_model.sample(
        "joint",
        *obs_in,
        noise_actions=noise[0],
        noise_future=noise[1],
        cache_obs_conditioning=False,
    )
    torch.testing.assert_close(fast.actions, slow.actions, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast.future_latents, slow.future_latents, atol=1e-5, rtol=1e-5)


def test_masked_action_loss_gives_no_action_decoder_gradient() -> None:
    for masked in (True, False):
        model = randomize(UnifiedWorldModel(tiny_config(mask_action_free_loss=masked)))
        batch = make_batch(model.cfg, 3)
        batch["has_action"] = torch.zeros(3, dtype=torch.bool)
        batch["actions"] = torch.full_like(batch["actions"], float("nan"))  # action-free: no labels
        loss, info = model.loss(batch)
        loss.backward()
        grads = [p.grad for p in model.denoiser.action_decoder.parameters()]
        total = sum(g.abs().sum().item() for g in grads if g is not None)
        assert torch.isfinite(loss)
        if masked:
            assert info["action_loss"] == 0 and total == 0
        else:
            assert info["action_loss"] > 0 and total > 0


def test_diffusion_policy_baseline_is_one_flag() -> None:
    cfg = tiny_config(future_obs=False)
    model = randomize(UnifiedWorldModel(cfg))
    den = model.denoiser
    assert den.patchifier is None and den.registers.shape[1] == 0 and model.autoencoder is None
    assert den.pos_embed.shape[1] == cfg.horizon
    assert den.t_embedder.mlp[0].in_features == cfg.timestep_embed_dim  # t_a only
    loss, info = model.loss(make_batch(cfg))
    assert "video_loss" not in info and torch.isfinite(loss)
    assert model.sample("policy", *obs_inputs(cfg, 2)).actions.shape == (
        2,
        cfg.horizon,
        cfg.action_dim,
    )
    with pytest.raises(ValueError, match="future_obs"):
        model.sample("video", *obs_inputs(cfg, 2))


def test_marginal_t_is_configurable() -> None:
    assert tiny_config().marginal_t == 99
    cfg = tiny_config(marginal_t=90)
    model = randomize(UnifiedWorldModel(cfg).eval())
    ref = randomize(UnifiedWorldModel(tiny_config()).eval())
    obs, g = obs_inputs(cfg, 1), [torch.Generator().manual_seed(3) for _ in range(2)]
    a90 = model.sample("policy", *obs, generator=g[0]).actions
    a99 = ref.sample("policy", *obs, generator=g[1]).actions
    assert (a90 - a99).abs().max() > 1e-6  # the held timestep reaches the network
