"""Observation encoder: per view and frame ResNet-18 with GroupNorm (the paper) or a small
conv net with spatial-softmax keypoints (CPU budgets), plus optional proprio.

torchvision has no build for our CPU torch, so ResNet-18 is written here with torchvision's
parameter names: an ImageNet ``resnet18`` state dict from a local file loads directly (its
BatchNorm affine parameters become the GroupNorm affine parameters, running stats are dropped).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
from torch import Tensor

from uwm_ros.bundle.config import UWMConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 16 channels per group: BatchNorm breaks with small or per-rank batches."""
    return nn.GroupNorm(channels // 16, channels)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual; a 1x1 stride-2 projection when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = group_norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = group_norm(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), group_norm(c_out)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """ResNet-18 (He et al. 2016) with GroupNorm, its fc replaced by Linear(512 -> out_dim)."""

    def __init__(self, out_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = group_norm(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._stage(64, 64, stride=1)
        self.layer2 = self._stage(64, 128, stride=2)
        self.layer3 = self._stage(128, 256, stride=2)
        self.layer4 = self._stage(256, 512, stride=2)
        self.fc = nn.Linear(512, out_dim)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _stage(c_in: int, c_out: int, stride: int) -> nn.Sequential:
        return nn.Sequential(BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out, 1))

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (N, 64, H/4, W/4)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (N, 512, H/32, W/32)
        return self.fc(x.mean(dim=(2, 3)))  # (N, out_dim)


def load_imagenet_weights(model: nn.Module, path: str | Path) -> None:
    """Load a torchvision ``resnet18`` ImageNet state dict (.pth/.pt or .safetensors) from disk.

    The fc layer is kept (its output size is ours); BatchNorm running statistics are dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ImageNet ResNet-18 weights not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    dropped = ("running_mean", "running_var", "num_batches_tracked")
    state = {k: v for k, v in state.items() if not k.endswith(dropped) and not k.startswith("fc.")}
    expected = {k for k in model.state_dict() if not k.startswith("fc.")}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{path}: not a torchvision resnet18 state dict "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    model.load_state_dict(state, strict=False)


class SpatialSoftmax(nn.Module):
    """Feature maps (N, K, h, w) -> each channel's expected (x, y) under its spatial softmax:
    K keypoints in [-1, 1] (Levine et al. 2016; Diffusion Policy): where things are."""

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        attention = x.flatten(2).float().softmax(dim=-1)  # (N, K, h*w), fp32 for the sum
        ys, xs = torch.meshgrid(
            torch.linspace(-1, 1, h, device=x.device),
            torch.linspace(-1, 1, w, device=x.device),
            indexing="ij",
        )
        grid = torch.stack([xs.flatten(), ys.flatten()], dim=-1)  # (h*w, 2)
        return (attention @ grid).flatten(1).to(x.dtype)  # (N, 2K)


class KeypointNet(nn.Module):
    """A CPU-sized conv trunk at 1/4 resolution with spatial-softmax keypoints, -> Linear.

    Average pooling a deep network's last map throws away where objects are, which is what a
    pushing policy needs; keypoints keep it at ~1/20 of ResNet-18's cost at 64^2.
    """

    def __init__(self, out_dim: int, keypoints: int, width: int = 32):
        super().__init__()

        def conv(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), group_norm(c_out),
                    nn.ReLU(inplace=True)]  # fmt: skip

        self.trunk = nn.Sequential(
            *conv(3, width, 2), *conv(width, width, 1),  # (N, w, H/2, W/2)
            *conv(width, 2 * width, 2), *conv(2 * width, 2 * width, 1),  # (N, 2w, H/4, W/4)
            nn.Conv2d(2 * width, keypoints, 1),  # (N, K, H/4, W/4)
        )  # fmt: skip
        self.spatial_softmax = SpatialSoftmax()
        self.fc = nn.Linear(2 * keypoints, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.spatial_softmax(self.trunk(x)))  # (N, out_dim)


class ObservationEncoder(nn.Module):
    """Current observation -> conditioning vector: one D-feature per view and frame (+ proprio).

    One ResNet is shared by all views and frames (as in the official code); the concatenation
    order (view-major, then frame) tells the DiT which feature is which.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, cfg: UWMConfig, imagenet_weights: str | Path | None = None):
        super().__init__()
        self.cfg = cfg
        self.backbone: nn.Module
        if cfg.obs_encoder == "resnet18":
            self.backbone = ResNet18(cfg.embed_dim)
            if imagenet_weights is not None:
                load_imagenet_weights(self.backbone, imagenet_weights)
        else:
            if imagenet_weights is not None:
                raise ValueError("imagenet_weights initialise a resnet18 obs_encoder only")
            self.backbone = KeypointNet(cfg.embed_dim, cfg.keypoints, cfg.encoder_width)
        self.proprio = nn.Linear(cfg.proprio_dim, cfg.embed_dim) if cfg.proprio_dim else None
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(3, 1, 1), persistent=False)

    def forward(self, images: Tensor, proprio: Tensor | None = None) -> Tensor:
        """images (B, V, T, 3, H, W) in [0, 1]; proprio (B, T, P) normalised -> (B, obs_dim)."""
        B = images.shape[0]
        x = (images.flatten(0, 2) - self.mean) / self.std  # (B*V*T, 3, H, W)
        feats = self.backbone(x).reshape(B, -1)  # (B, V*T*D)
        if self.proprio is None:
            return feats
        if proprio is None:
            raise ValueError(f"model expects proprio of size {self.cfg.proprio_dim}, got None")
        return torch.cat([feats, self.proprio(proprio).reshape(B, -1)], dim=1)  # (B, obs_dim)
