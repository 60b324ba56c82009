"""ResNet-18 with GroupNorm: torchvision-compatible weight loading and the observation encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import tiny_config

from uwm_training.model import UnifiedWorldModel, UWMConfig
from uwm_training.model.vision import ObservationEncoder, ResNet18, load_imagenet_weights


def torchvision_style_state(model: ResNet18) -> dict[str, torch.Tensor]:
    """What torchvision's resnet18 state dict looks like: BN running stats and a 1000-way fc."""
    state = {
        k: torch.randn_like(v) for k, v in model.state_dict().items() if not k.startswith("fc.")
    }
    for k in list(state):
        if k.endswith(".weight") and state[k].ndim == 1:  # a norm layer
            base = k[: -len("weight")]
            state[base + "running_mean"] = torch.zeros_like(state[k])
            state[base + "running_var"] = torch.ones_like(state[k])
            state[base + "num_batches_tracked"] = torch.tensor(0)
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 512), torch.randn(1000)
    return state


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_imagenet_weights_load_from_a_local_file(tmp_path: Path, suffix: str) -> None:
    model = ResNet18(out_dim=32)
    state = torchvision_style_state(model)
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        save_file(state, str(path))
    fc_before = model.fc.weight.clone()
    load_imagenet_weights(model, path)
    assert torch.equal(model.layer3[1].bn2.weight, state["layer3.1.bn2.weight"])
    assert torch.equal(model.conv1.weight, state["conv1.weight"])
    assert torch.equal(model.fc.weight, fc_before)  # our head is kept
    uwm = UnifiedWorldModel(tiny_config(), imagenet_weights=path)
    assert torch.equal(uwm.obs_encoder.backbone.conv1.weight, state["conv1.weight"])


def test_wrong_weight_files_are_refused(tmp_path: Path) -> None:
    model = ResNet18(out_dim=8)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_imagenet_weights(model, tmp_path / "nope.pth")
    state = torchvision_style_state(model)
    del state["layer4.0.conv1.weight"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match=r"partial.pth.*layer4.0.conv1.weight"):
        load_imagenet_weights(model, tmp_path / "partial.pth")


def test_observation_encoder_keeps_views_and_frames_apart() -> None:
    cfg: UWMConfig = tiny_config()
    enc = ObservationEncoder(cfg).eval()
    S = cfg.image_size
    images, proprio = torch.rand(2, 2, 2, 3, S, S), torch.rand(2, 2, 2)
    feats = enc(images, proprio)
    assert feats.shape == (2, cfg.obs_feature_dim)
    D = cfg.embed_dim
    changed = images.clone()
    changed[:, 1, 0] = torch.rand(2, 3, S, S)  # camera "right", frame 0 only
    delta = (enc(changed, proprio) - feats).abs().reshape(2, -1, D).amax(dim=(0, 2))
    assert delta[2] > 0 and delta[[0, 1, 3, 4, 5]].abs().max() == 0  # slot (view 1, frame 0)
    with pytest.raises(ValueError, match="proprio"):
        enc(images, None)
