"""Finetuning: from a checkpoint, in a new action space (re-initialised action head) or the same
one (the checkpoint's normalisation kept, or the new data's)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from train_helpers import make_dataset, one_thread, tiny_config, train_autoencoder

from uwm_ros.bundle.contract import Normalizer
from uwm_training.data.store import Store
from uwm_training.model import load_model, read_spec
from uwm_training.train import TrainError, train
from uwm_training.train.data import build_data, open_sources
from uwm_training.train.models import finetune_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    tmp = tmp_path_factory.mktemp("finetune")
    base = make_dataset(tmp / "base", episodes=3)
    with one_thread():
        ae = train_autoencoder(tmp / "ae", [base])
        train(tiny_config(tmp / "pre", [base], autoencoder_from=str(ae), steps=2))
        yield {"tmp": tmp, "base": base, "pre": tmp / "pre" / "last"}


def finetune_config(setup: dict[str, Path], data: Path, **fields: object):  # type: ignore[no-untyped-def]
    return tiny_config(setup["tmp"] / f"ft-{data.name}", [data], stage="finetune",
                       init_from=str(setup["pre"]), **fields)  # fmt: skip


def test_new_action_space_reinitialises_only_the_action_head(setup: dict[str, Path]) -> None:
    three = make_dataset(setup["tmp"] / "three", episodes=3, joints=3, seed=5)
    cfg = finetune_config(setup, three, steps=1)
    said: list[str] = []
    model, spec = finetune_model(cfg, open_sources(cfg), say=said.append)
    assert spec is None and said and "re-initialised" in said[0]
    assert (model.cfg.action_dim, model.cfg.proprio_dim) == (3, 3)
    old = load_model(setup["pre"] / "ema.safetensors").state_dict()
    for k, v in model.state_dict().items():
        fresh = k.startswith(("denoiser.action_", "obs_encoder.proprio."))
        assert torch.equal(v, old[k]) != fresh, k  # all else starts from the checkpoint
    result = train(cfg)
    saved = read_spec(Path(cfg.out_dir) / "last" / "ema.safetensors")
    assert saved is not None and saved.action_names == ("j0", "j1", "j2")
    assert result.step == 1


@pytest.mark.parametrize("keep", [True, False])
def test_same_action_space_keeps_or_replaces_the_normalisation(
    setup: dict[str, Path], keep: bool
) -> None:
    other = setup["tmp"] / "other"
    if not other.exists():
        make_dataset(other, episodes=3, seed=11, length=12)
    cfg = finetune_config(setup, other, keep_normalization=keep)
    sources = open_sources(cfg)
    model, spec = finetune_model(cfg, sources)
    pretrained = read_spec(setup["pre"] / "ema.safetensors")
    assert pretrained is not None
    assert (spec == pretrained) if keep else spec is None
    data = build_data(sources, model.cfg, cfg, spec or pretrained)
    store = Store(other)
    episode_start, _ = store.episode_range(0)
    item = data.train[0]  # episode 0, t = 0
    raw = store.lowdim("action")[episode_start : episode_start + model.cfg.horizon]
    want = Normalizer.from_stats(pretrained.normalization["actions"]).normalize(raw)
    np.testing.assert_allclose(item["actions"].numpy(), want, atol=1e-5)  # re-mapped exactly


def test_finetune_refuses_what_it_cannot_reuse(setup: dict[str, Path]) -> None:
    cams = make_dataset(setup["tmp"] / "cams", episodes=2, cameras=("wrist",), seed=3)
    with pytest.raises(TrainError, match=r"no cameras \['front'\]"):
        train(finetune_config(setup, cams))
    deeper = finetune_config(setup, setup["base"], model={"depth": 3})
    with pytest.raises(TrainError, match=r"cannot finetune from it .*blocks\.2"):
        train(deeper)
