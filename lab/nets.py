"""CIFAR-style plain and residual networks of He et al. 2015, Section 4.2.

A 3x3 conv, then three stages of ``2n`` 3x3 convs on 16/32/64 filters (the
first conv of stages 2 and 3 has stride 2), global average pooling and a
fully connected classifier: ``6n + 2`` weighted layers. ``arch="plain"`` and
``arch="resnet"`` build the same layers; the residual net adds a shortcut
around every pair of 3x3 convs.

This module imports only torch: tracking, sweeping and plotting live elsewhere.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

ARCHS = ("plain", "resnet")
SHORTCUTS = ("A", "B", "C")
WIDTHS = (16, 32, 64)  # filters per stage (He 2015, Section 4.2)


def valid_depths(limit: int = 1202) -> list[int]:
    """The depths ``6n + 2`` up to ``limit``, e.g. 8, 14, 20, ..., 1202."""
    return list(range(8, limit + 1, 6))


def check_depth(depth: int) -> int:
    """Return ``n`` for a depth of ``6n + 2``; raise ``ValueError`` otherwise."""
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 8 or (depth - 2) % 6:
        raise ValueError(
            f"depth {depth!r} is not 6n+2 with n >= 1: valid depths are 8, 14, 20, 26, 32, 44, 56, 110, 1202, ..."
        )
    return (depth - 2) // 6


@dataclass(frozen=True)
class NetConfig:
    """What a depth study varies, and the shape of the data."""

    arch: str = "resnet"
    depth: int = 20
    shortcut: str = "A"
    in_channels: int = 3
    num_classes: int = 10

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch {self.arch!r} is not one of {', '.join(ARCHS)}")
        if self.shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut {self.shortcut!r} is not one of {', '.join(SHORTCUTS)}")
        check_depth(self.depth)


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A: identity, stride-2 subsampling and zero-padded extra channels (parameter-free)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.extra, self.stride = out_planes - in_planes, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))


def projection(in_planes: int, out_planes: int, stride: int) -> nn.Sequential:
    """Options B and C: a 1x1 conv and BN."""
    return nn.Sequential(conv1x1(in_planes, out_planes, stride), nn.BatchNorm2d(out_planes))


def make_shortcut(shortcut: str, in_planes: int, out_planes: int, stride: int) -> nn.Module:
    reshapes = stride != 1 or in_planes != out_planes
    if shortcut == "C" or (shortcut == "B" and reshapes):
        return projection(in_planes, out_planes, stride)
    if shortcut == "A" and reshapes:
        return ZeroPadShortcut(in_planes, out_planes, stride)
    return nn.Identity()


class BasicBlock(nn.Module):
    """Two 3x3 convs; with a shortcut (``residual=True``) this is Figure 2 of He 2015."""

    def __init__(self, in_planes: int, planes: int, stride: int, residual: bool, shortcut: str) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = make_shortcut(shortcut, in_planes, planes, stride) if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.bn1(out)
        out = F.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return F.relu(out)


class CifarNet(nn.Module):
    """A plain or residual net of depth ``6n + 2`` for small images of any size and channel count."""

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        self.config = config
        n = check_depth(config.depth)
        residual = config.arch == "resnet"
        self.conv1 = conv3x3(config.in_channels, WIDTHS[0])
        self.bn1 = nn.BatchNorm2d(WIDTHS[0])
        stages, in_planes = [], WIDTHS[0]
        for i, planes in enumerate(WIDTHS):
            blocks = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(BasicBlock(in_planes, planes, stride, residual, config.shortcut))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(WIDTHS[-1], config.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # He et al. 2015 ("Delving deep into rectifiers"), as Section 3.4 of the ResNet paper states.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.stages(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build_net(config: NetConfig) -> CifarNet:
    return CifarNet(config)


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def run_name(arch: str, depth: int, shortcut: str, seed: int | None = None) -> str:
    """Names as in the paper: ``plain-56``, ``resnet-110-B``; option A, the CIFAR default, is left out."""
    name = f"{arch}-{depth}" + (f"-{shortcut}" if arch == "resnet" and shortcut != "A" else "")
    return name if seed is None else f"{name}-s{seed}"
