"""The learning-recipe switches: keypoint encoder, relative actions, end padding, random shift,
policy-mode training samples, cached latents (DESIGN §15)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_batch, randomize, tiny_config, tiny_spec

from uwm_ros.bundle.contract import Normalizer
from uwm_ros.engines import Observation
from uwm_ros.engines.torch_engine import TorchEngine
from uwm_training.data.dataset import UWMDataset, relative_action_stats
from uwm_training.data.store import Store
from uwm_training.model import PolicySpec, UnifiedWorldModel, save_model
from uwm_training.model.vision import SpatialSoftmax
from uwm_training.train.augment import random_shift
from uwm_training.train.synthetic import make_dataset


def test_spatial_softmax_finds_the_peak() -> None:
    maps = torch.full((1, 2, 16, 16), -20.0)
    maps[0, 0, 3, 12] = 20.0  # row 3, column 12
    maps[0, 1, 15, 0] = 20.0
    xy = SpatialSoftmax()(maps).reshape(2, 2)
    grid = torch.linspace(-1, 1, 16)
    torch.testing.assert_close(xy[0], torch.stack([grid[12], grid[3]]), atol=1e-4, rtol=0)
    torch.testing.assert_close(xy[1], torch.stack([grid[0], grid[15]]), atol=1e-4, rtol=0)


def test_keypoint_model_trains_and_samples() -> None:
    cfg = tiny_config(obs_encoder="keypoints", keypoints=8)
    model = randomize(UnifiedWorldModel(cfg))  # adaLN-Zero would block the encoder's gradient
    loss, _ = model.loss(make_batch(cfg))
    loss.backward()
    assert model.obs_encoder.backbone.trunk[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="resnet18"):
        UnifiedWorldModel(cfg, imagenet_weights="resnet18.pth")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("ds") / "ds", episodes=3, length=10, joints=3)


def test_relative_actions_are_offsets_from_the_current_joints(dataset: Path) -> None:
    store = Store(dataset)
    data = UWMDataset(dataset, horizon=4, n_future_steps=2, relative_to="joint_pos", pad_end=5)
    stats = relative_action_stats(store, "joint_pos", 4)
    norm = Normalizer.from_stats(stats)
    actions, q = store.lowdim("action"), store.lowdim("joint_pos")
    end = store.episode_range(0)[1]
    for t in (0, 7, 9):  # 7 and 9: the chunk runs past the end and repeats the last action
        item = data[t]
        chunk = actions[np.minimum(np.arange(t, t + 4), end - 1)] - q[t]
        np.testing.assert_allclose(norm.unnormalize(item["actions"].numpy()), chunk, atol=1e-5)
    assert all(data[i]["actions"].abs().max() <= 1 + 1e-5 for i in range(len(data)))
    assert len(data) == store.num_frames  # pad_end = h_a + h_o' - 1: every frame


def test_end_padding_repeats_the_last_frame(dataset: Path) -> None:
    unpadded = UWMDataset(dataset, horizon=4, n_future_steps=2)
    padded = UWMDataset(dataset, horizon=4, n_future_steps=2, pad_end=2)
    assert len(padded) == len(unpadded) + 3 * 2
    last = padded[len(padded) - 1]  # t = 7 of the last episode (10 frames: 20..29)
    assert last["future_index"].tolist() == [29, 29]
    with pytest.raises(Exception, match="pad_end"):
        UWMDataset(dataset, horizon=4, n_future_steps=2, pad_end=6)


def test_engine_adds_the_joints_back_to_relative_actions(tmp_path: Path) -> None:
    model = randomize(UnifiedWorldModel(tiny_config(proprio_dim=0)).eval())
    cfg = model.cfg
    spec = tiny_spec(cfg)
    spec = PolicySpec(spec.fps, spec.action_names, spec.action_names, spec.normalization, True)
    save_model(model, tmp_path / "m.safetensors", spec)
    engine = TorchEngine.from_checkpoint(tmp_path / "m.safetensors")
    rng = np.random.default_rng(0)
    images = {c: rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8) for c in cfg.cameras}
    joints = rng.uniform(-1, 1, (2, cfg.action_dim))
    z = {"noise_actions": rng.standard_normal((1, cfg.horizon, cfg.action_dim), dtype=np.float32),
         "noise_future": rng.standard_normal((1, *cfg.latent_shape), dtype=np.float32)}  # fmt: skip
    absolute = engine.policy(Observation(images, joints), z)
    moved = engine.policy(Observation(images, joints + 0.5), z)
    np.testing.assert_allclose(moved - absolute, 0.5, atol=1e-5)  # the image decides the offset
    batch = engine.predict_batch([Observation(images, joints)] * 3)
    assert all(p.actions is not None and p.actions.shape == absolute.shape for p in batch)


def test_random_shift_moves_each_view_as_a_whole() -> None:
    x = torch.rand(3, 2, 2, 3, 8, 8)
    assert random_shift(x, 0) is x
    torch.manual_seed(0)
    y = random_shift(x, 2)
    for b in range(3):
        for v in range(2):
            inner, view = y[b, v, ..., 2:6, 2:6], x[b, v]
            shifts = [
                (dy, dx)
                for dy in range(-2, 3)
                for dx in range(-2, 3)
                if torch.equal(inner, view[..., 2 + dy : 6 + dy, 2 + dx : 6 + dx])
            ]
            assert shifts, "every frame of a view shifted by one common offset"


def test_policy_fraction_trains_the_policy_configuration() -> None:
    cfg = tiny_config(policy_fraction=1.0)
    model = UnifiedWorldModel(cfg)
    seen: dict[str, torch.Tensor] = {}

    def capture(_: object, args: tuple, kwargs: dict) -> None:  # type: ignore[type-arg]
        seen["future"], seen["t_video"] = args[3], args[4]

    model.denoiser.register_forward_pre_hook(capture, with_kwargs=True)
    batch = make_batch(cfg, batch_size=4)
    batch["has_action"] = torch.tensor([True, True, True, False])
    model.loss(batch, generator=torch.Generator().manual_seed(0))
    assert seen["t_video"][:3].tolist() == [cfg.marginal_t] * 3  # policy samples: o' = noise
