"""The torch Dataset: official window slicing, start padding, normalisation, model batches."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import convert, convert_config, robot_messages, write_bag
from helpers import tiny_config

from uwm_ros.bundle.contract import Normalizer, image_array
from uwm_training.data.dataset import UWMDataset
from uwm_training.data.errors import DatasetError
from uwm_training.data.store import Frames, Store
from uwm_training.model import UnifiedWorldModel

H_O, H_A, H_F = 2, 4, 2


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two episodes: one with commands, one from a bag without the command topic."""
    tmp = tmp_path_factory.mktemp("ds")
    acting = robot_messages(seconds=2.0)
    idle = [m for m in robot_messages(seconds=1.5, seed=3) if m[0] != "/command"]
    convert([write_bag(tmp / "a", acting)], tmp / "ds", convert_config(tmp))
    convert([write_bag(tmp / "b", idle)], tmp / "ds", convert_config(tmp), append=True)
    return tmp / "ds"


def test_windows_follow_the_official_slicing_with_start_padding(root: Path) -> None:
    store = Store(root)
    data = UWMDataset(root, H_O, H_A, H_F)
    lengths = np.diff([0, *store.episode_ends])
    assert len(data) == sum(n - H_A - H_F + 1 for n in lengths)  # t from each episode start
    stats = store.attrs["stats"]
    first = data[0]  # t = 0: history padded with frame 0
    frames = {i: store.frames("front").read(i) for i in (0, 4, 5)}
    want_obs = torch.from_numpy(image_array(np.stack([frames[0], frames[0]])))
    torch.testing.assert_close(first["obs_images"][0], want_obs)
    torch.testing.assert_close(
        first["future_images"][0], torch.from_numpy(image_array(np.stack([frames[4], frames[5]])))
    )
    want_a = Normalizer.from_stats(stats["action"]).normalize(store.lowdim("action")[0:4])
    torch.testing.assert_close(first["actions"], torch.from_numpy(want_a))
    q = Normalizer.from_stats(stats["joint_pos"]).normalize(store.lowdim("joint_pos")[[0, 0]])
    torch.testing.assert_close(first["proprio"], torch.from_numpy(q))
    assert first["has_action"].item() and first["actions"].abs().max() <= 1 + 1e-6
    shapes = {k: tuple(v.shape) for k, v in first.items()}
    assert shapes == {"obs_images": (2, H_O, 3, 32, 32), "proprio": (H_O, 3), "actions": (H_A, 3),
                      "future_images": (2, H_F, 3, 32, 32), "future_index": (H_F,),
                      "has_action": ()}  # fmt: skip


def test_official_sampler_without_padding_and_episode_bounds(root: Path) -> None:
    store = Store(root)
    data = UWMDataset(root, H_O, H_A, H_F, pad_start=0)
    lengths = np.diff([0, *store.episode_ends])
    assert len(data) == sum(n - (H_O - 1) - H_A - H_F + 1 for n in lengths)
    end0 = int(store.episode_ends[0])
    last = int(lengths[0]) - (H_O - 1) - H_A - H_F  # last window of episode 0
    t = int(data.index[last, 0])
    assert t + H_A + H_F == end0  # the future ends exactly at the episode end
    second = data[last + 1]  # first window of episode 1 (action-free)
    assert not second["has_action"].item() and not second["actions"].any()


def test_a_sample_reads_only_its_window(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []
    original = Frames.read
    monkeypatch.setattr(Frames, "read", lambda self, i: reads.append(i) or original(self, i))
    data = UWMDataset(root, H_O, H_A, H_F, cameras=["wrist"])
    data[10]
    t = int(data.index[10, 0])
    assert sorted(reads) == [t - 1, t, t + H_A, t + H_A + 1]


def test_batches_feed_the_model_loss(root: Path) -> None:
    data = UWMDataset(root, H_O, H_A, H_F)
    loader = torch.utils.data.DataLoader(data, batch_size=4, shuffle=True, num_workers=0)
    batch = next(iter(loader))
    cfg = tiny_config(cameras=("front", "wrist"), horizon=H_A, action_dim=3, proprio_dim=3)
    torch.manual_seed(0)
    loss, info = UnifiedWorldModel(cfg).loss(batch)
    assert torch.isfinite(loss) and set(info) >= {"action_loss", "video_loss"}
    pickle.loads(pickle.dumps(data))  # DataLoader workers may pickle it (spawn)


def test_bad_requests_are_clear(root: Path) -> None:
    with pytest.raises(DatasetError, match="no cameras"):
        UWMDataset(root, cameras=["left"])
    with pytest.raises(DatasetError, match="pad_start"):
        UWMDataset(root, pad_start=2)
