"""Config + weights round trip through one safetensors file, and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import randomize, tiny_config

from uwm_training.model import (
    ConfigError,
    UnifiedWorldModel,
    UWMConfig,
    WeightsError,
    load_model,
    preset,
    read_config,
    save_model,
)


def test_save_load_round_trip(tmp_path: Path) -> None:
    model = randomize(UnifiedWorldModel(tiny_config(marginal_t=90)).eval())
    path = tmp_path / "ckpt" / "model.safetensors"
    save_model(model, path)
    assert [p.name for p in path.parent.iterdir()] == ["model.safetensors"]  # no temp left
    loaded = load_model(path)
    assert loaded.cfg == model.cfg and read_config(path).marginal_t == 90
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    S = model.cfg.image_size
    images, proprio = torch.rand(1, 2, 2, 3, S, S), torch.rand(1, 2, 2)
    outs = [
        m.sample("policy", images, proprio, generator=torch.Generator().manual_seed(0))
        for m in (model, loaded)
    ]
    torch.testing.assert_close(outs[0].actions, outs[1].actions, rtol=0, atol=0)


def test_bad_weight_files_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        load_model(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00\x01not a safetensors file")
    with pytest.raises(WeightsError, match="junk.safetensors"):
        load_model(junk)
    good = tmp_path / "good.safetensors"
    save_model(UnifiedWorldModel(tiny_config()), good)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(WeightsError, match="truncated.safetensors"):
        load_model(truncated)


def test_weights_that_do_not_match_the_config_are_refused(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    path = tmp_path / "m.safetensors"
    save_model(UnifiedWorldModel(tiny_config()), path)
    state = load_file(str(path))
    state["denoiser.pos_embed"] = state["denoiser.pos_embed"][:, :-1]
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    save_file(state, str(path), metadata=meta)
    with pytest.raises(WeightsError, match="denoiser.pos_embed"):
        load_model(path)


def test_config_yaml_round_trip_and_validation(tmp_path: Path) -> None:
    cfg = preset("paper")
    cfg.save_yaml(tmp_path / "model.yaml")
    assert UWMConfig.load_yaml(tmp_path / "model.yaml") == cfg
    (tmp_path / "bad.yaml").write_text("embed_dims: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*embed_dims"):
        UWMConfig.load_yaml(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="num_heads"):
        tiny_config(embed_dim=65)
    with pytest.raises(ConfigError, match="n_future_steps"):
        tiny_config(n_future_steps=3)
    with pytest.raises(ConfigError, match="patch_size"):
        tiny_config(patch_size=3)
    with pytest.raises(ConfigError, match="marginal_t"):
        tiny_config(marginal_t=100)
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("huge")
