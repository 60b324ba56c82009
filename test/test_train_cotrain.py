"""Co-training: robot + action-free sources in the configured proportions, and action-free
samples that never produce an action loss."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from train_helpers import make_dataset, one_thread, tiny_config, train_autoencoder

from uwm_training.train import TrainError, train
from uwm_training.train.data import build_data, dataset_spec, open_sources
from uwm_training.train.loop import Objective
from uwm_training.train.models import new_model, set_trainable
from uwm_training.train.sampler import MixtureSampler


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    tmp = tmp_path_factory.mktemp("cotrain")
    robot = make_dataset(tmp / "robot", episodes=4)
    video = make_dataset(tmp / "video", episodes=3, actions=False, seed=7)
    with one_thread():
        ae = train_autoencoder(tmp / "ae", [robot, video])
        yield {"tmp": tmp, "robot": robot, "video": video, "ae": ae}


def cotrain_config(setup: dict[str, Path], name: str, **fields: object):  # type: ignore[no-untyped-def]
    sources = [(setup["robot"], 1.0), (setup["video"], 3.0)]
    return tiny_config(setup["tmp"] / name, sources, stage="cotrain",
                       autoencoder_from=str(setup["ae"]), **fields)  # fmt: skip


def test_sources_are_drawn_in_the_configured_proportions(setup: dict[str, Path]) -> None:
    cfg = cotrain_config(setup, "mix")
    sources = open_sources(cfg)
    model = new_model(cfg, sources)
    data = build_data(sources, model.cfg, cfg, dataset_spec(sources, model.cfg, ["joint_pos"]))
    sampler = MixtureSampler(data.sizes, data.weights, seed=0, batch_size=8)
    _, source = sampler.positions(0, 8000)
    assert float((source == 1).mean()) == pytest.approx(0.75, abs=0.02)
    loader = DataLoader(data.train, batch_size=8, sampler=sampler)
    batch = next(iter(loader))
    index, source = sampler.positions(0, 8)
    assert batch["has_action"].tolist() == (source == 0).tolist()  # video windows: no actions
    video = ~batch["has_action"]
    assert not batch["proprio"][video].any() and batch["proprio"].shape[1:] == (2, 2)
    assert not batch["actions"][video].any()


def test_action_free_samples_never_produce_an_action_loss(setup: dict[str, Path]) -> None:
    cfg = cotrain_config(setup, "mask")
    sources = open_sources(cfg)
    model = new_model(cfg, sources)
    set_trainable(model, "cotrain")
    data = build_data(sources, model.cfg, cfg, dataset_spec(sources, model.cfg, ["joint_pos"]))
    robot_windows = data.sizes[0]
    video_only = [data.train[robot_windows + i] for i in range(4)]
    batch = {k: torch.stack([item[k] for item in video_only]) for k in video_only[0]}
    assert not batch["has_action"].any()
    loss, info = Objective(model, "cotrain")(batch)
    loss.backward()
    assert info["action_loss"] == 0.0 and info["video_loss"] > 0
    head = list(model.denoiser.action_decoder.parameters())
    assert all(p.grad is None or not p.grad.any() for p in head)  # nothing learnt from noise
    assert any(p.grad is not None and p.grad.any() for p in model.denoiser.final_layer.parameters())


def test_cotrain_runs_and_pretrain_refuses_action_free_sources(setup: dict[str, Path]) -> None:
    cfg = cotrain_config(setup, "run", steps=2, eval={"every": 2})
    result = train(cfg)
    assert result.step == 2 and result.checkpoint is not None
    rows = (Path(cfg.out_dir) / "metrics.jsonl").read_text()
    assert '"policy_mse"' in rows and '"hold_mse"' in rows
    pretrain = tiny_config(setup["tmp"] / "pre", [setup["robot"], setup["video"]],
                           autoencoder_from=str(setup["ae"]))  # fmt: skip
    with pytest.raises(TrainError, match=r"have no actions; use cotrain"):
        train(pretrain)
    with pytest.raises(TrainError, match="needs at least one source with actions"):
        train(tiny_config(setup["tmp"] / "v", [setup["video"]], stage="cotrain"))
    assert np.isfinite(result.model.denoiser.pos_embed.detach().numpy()).all()
