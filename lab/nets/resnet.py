"""Plain and residual networks of He et al. 2015, CIFAR-style (Section 4.2) and ImageNet-style (Table 1).

CIFAR-style (``style="cifar"``): a 3x3 conv, then three stages of ``2n`` 3x3 convs on 16/32/64
filters (the first conv of stages 2 and 3 has stride 2), global average pooling and a fully
connected classifier: ``6n + 2`` weighted layers.

ImageNet-style (``style="imagenet"``): a 7x7/2 conv and a 3x3/2 max pool, then four stages on
64/128/256/512 filters of basic blocks (two 3x3 convs: depths 18, 34) or bottleneck blocks
(1x1, 3x3, 1x1 with 4x as many output channels: depths 50, 101, 152), pooling and a classifier.

``arch="plain"`` and ``arch="resnet"`` build the same layers; the residual net adds a shortcut
around every block, of option A, B or C (Section 3.3).

This module imports only torch: tracking, sweeping and plotting live elsewhere; what names a net (and is
checked without torch) is in ``lab.nets.names``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lab.nets.names import IMAGENET_LAYOUTS, NetConfig, check_depth

WIDTHS = (16, 32, 64)  # filters per stage (He 2015, Section 4.2)
IMAGENET_WIDTHS = (64, 128, 256, 512)  # filters per stage (He 2015, Table 1), x4 at a bottleneck's output


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

    expansion = 1

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


class Bottleneck(nn.Module):
    """1x1 (reduce), 3x3, 1x1 (restore, ``expansion`` x the width): Figure 5 (right) of He 2015.

    The stride sits on the first 1x1 conv as in the paper's nets ("downsampling is performed by
    conv3_1, conv4_1 and conv5_1"), which gives Table 1's FLOPs; torchvision's "V1.5" moves it to the
    3x3 conv (same parameters, more multiply-adds).
    """

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int, residual: bool, shortcut: str, width: int | None = None,
                 groups: int = 1, stride_on_3x3: bool = False) -> None:
        """``width``: channels of the 3x3 (``planes`` in He 2015), a grouped conv of ``groups`` groups (ResNeXt,
        which also moves the stride to the 3x3: ``stride_on_3x3``)."""
        super().__init__()
        out_planes, width = planes * self.expansion, width or planes
        self.conv1 = conv1x1(in_planes, width, 1 if stride_on_3x3 else stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride if stride_on_3x3 else 1, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out_planes)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = make_shortcut(shortcut, in_planes, out_planes, stride) if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return F.relu(out)


def make_stages(
    block: type[nn.Module], in_planes: int, widths: tuple[int, ...], blocks: tuple[int, ...], residual: bool, shortcut: str,
    per_stage: tuple[dict, ...] | None = None,
) -> tuple[nn.Sequential, int]:
    """Stages of ``blocks[i]`` blocks of width ``widths[i]`` (and ``per_stage[i]``'s arguments); every stage after the
    first starts with stride 2."""
    stages = []
    for i, (planes, count) in enumerate(zip(widths, blocks)):
        layers = []
        for j in range(count):
            more = per_stage[i] if per_stage else {}
            layers.append(block(in_planes, planes, 2 if i > 0 and j == 0 else 1, residual, shortcut, **more))
            in_planes = planes * block.expansion
        stages.append(nn.Sequential(*layers))
    return nn.Sequential(*stages), in_planes


def init_weights(net: nn.Module) -> None:
    # He et al. 2015 ("Delving deep into rectifiers"), as Section 3.4 of the ResNet paper states.
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class Net(nn.Module):
    """A plain or residual net: CIFAR-style (``6n + 2`` layers, any image size) or ImageNet-style (Table 1)."""

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        self.config = config
        residual = config.arch == "resnet"
        if config.style == "imagenet":
            blocks, bottleneck = IMAGENET_LAYOUTS[check_depth(config.depth, "imagenet")]
            block, widths = (Bottleneck if bottleneck else BasicBlock), IMAGENET_WIDTHS
            self.conv1 = nn.Conv2d(config.in_channels, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
            self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            blocks, block, widths = (check_depth(config.depth),) * 3, BasicBlock, WIDTHS
            self.conv1 = conv3x3(config.in_channels, widths[0])
            self.pool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.stages, width = make_stages(block, widths[0], widths, blocks, residual, config.shortcut)
        self.fc = nn.Linear(width, config.num_classes)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        x = self.stages(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
