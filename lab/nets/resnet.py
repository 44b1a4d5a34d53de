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
    """Options A, B, C (He 2015, Section 3.3); He 2016's variants (Table 1) are identities, and option A where the
    shape changes: their gate, scale or dropout is the block's (``Block``)."""
    reshapes = stride != 1 or in_planes != out_planes
    if shortcut == "C" or (shortcut == "B" and reshapes):
        return projection(in_planes, out_planes, stride)
    if reshapes:
        return ZeroPadShortcut(in_planes, out_planes, stride)
    return nn.Identity()


class Block(nn.Module):
    """What He 2015's blocks share: how their residual branch F (``branch``) meets their input x.

    ``shortcut``: option A, B or C: relu(F + s(x)); or one of He 2016's variants (Table 1), whose s(x) is the
    identity, and option A's zero-padding where the shape changes: ``gated``, exclusive gating as Highway networks,
    relu(T F + (1 - T) s(x)) with T = sigmoid(1x1 conv of x), its bias at ``gate_bias`` (on the identity shortcuts
    only: a transition is plain option A); ``shortcut_gated``, relu(F + (1 - T) s(x)); ``scaled``,
    relu(0.5 F + 0.5 s(x)), the constant scaling that trains (F unscaled fails in the paper); ``dropout``,
    relu(F + dropout_0.5(s(x))); these two on every shortcut. He 2016's "1x1 conv shortcut" is option C.

    ``survival`` < 1: stochastic depth (Huang et al. 2016): in training the block is dropped (relu(s(x))) on a
    draw of the whole mini-batch, kept with probability ``survival``; at test time F is scaled by it. Not timm's
    drop_path, which drops per sample and rescales in training: a different method.
    """

    survival = 1.0

    def join_with(self, shortcut: str, in_planes: int, out_planes: int, stride: int, residual: bool) -> None:
        self.kind = shortcut
        self.shortcut = make_shortcut(shortcut, in_planes, out_planes, stride) if residual else None
        identity = isinstance(self.shortcut, nn.Identity)
        self.gate = nn.Conv2d(in_planes, out_planes, 1) if identity and shortcut in ("gated", "shortcut_gated") else None
        self.shortcut_dropout = nn.Dropout(0.5) if residual and shortcut == "dropout" else None

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut is None:
            return F.relu(self.branch(x))
        s = self.shortcut(x)
        if self.survival < 1 and self.training and bool(torch.rand(()) >= self.survival):
            return F.relu(s)  # dropped for this mini-batch
        f = self.branch(x)
        if self.survival < 1 and not self.training:
            f = f * self.survival
        if self.gate is not None:
            t = torch.sigmoid(self.gate(x))
            return F.relu(t * f + (1 - t) * s if self.kind == "gated" else f + (1 - t) * s)
        if self.kind == "scaled":
            return F.relu(0.5 * f + 0.5 * s)
        if self.shortcut_dropout is not None:
            s = self.shortcut_dropout(s)
        return F.relu(f + s)


class BasicBlock(Block):
    """Two 3x3 convs; with a shortcut (``residual=True``) this is Figure 2 of He 2015."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int, residual: bool, shortcut: str) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.join_with(shortcut, in_planes, planes, stride, residual)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))


class Bottleneck(Block):
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
        self.join_with(shortcut, in_planes, out_planes, stride, residual)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


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


def deep_stem(in_channels: int, out_channels: int) -> nn.Sequential:
    """ResNet-C (He et al. 2019, "Bag of Tricks"): three 3x3 convs (32, 32, ``out_channels``; the first with stride
    2) in place of the 7x7; the net's ``bn1`` and ReLU follow the last."""
    return nn.Sequential(conv3x3(in_channels, 32, 2), nn.BatchNorm2d(32), nn.ReLU(), conv3x3(32, 32), nn.BatchNorm2d(32),
                         nn.ReLU(), conv3x3(32, out_channels))


def avg_down(projection: nn.Sequential) -> nn.Sequential:
    """ResNet-D (He et al. 2019): a strided projection becomes a 2x2 average pool with stride 2 and a 1x1 conv with
    stride 1 (as timm's ``avg_down``): the same parameters, and no input pixel skipped."""
    conv = projection[0]
    return nn.Sequential(nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False),
                         conv1x1(conv.in_channels, conv.out_channels), nn.BatchNorm2d(conv.out_channels))


def finish(net: nn.Module, config: NetConfig) -> None:
    """He initialisation (``init_weights``), then the knobs on ``net``'s blocks, in order: ``avg_down``, the gates'
    bias (``gate_bias``), stochastic depth's survival, linear in the block's place l of L down to
    ``stochastic_depth`` = p_L (Huang 2016, Eq. 4), and ``zero_init_residual`` (each block's last BN at 0, as timm
    and Goyal et al. 2017 do: not the papers' nets)."""
    blocks = [m for m in net.modules() if isinstance(m, Block)]
    for block in blocks:
        strided = isinstance(block.shortcut, nn.Sequential) and block.shortcut[0].stride != (1, 1)
        if config.avg_down and strided:
            block.shortcut = avg_down(block.shortcut)
    init_weights(net)
    for place, block in enumerate(blocks, 1):
        if block.gate is not None:
            nn.init.constant_(block.gate.bias, config.gate_bias)
        block.survival = 1 - place / len(blocks) * (1 - config.stochastic_depth)
        if config.zero_init_residual:
            nn.init.zeros_((block.bn3 if isinstance(block, Bottleneck) else block.bn2).weight)


class Net(nn.Module):
    """A plain or residual net: CIFAR-style (``6n + 2`` layers, any image size) or ImageNet-style (Table 1)."""

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        self.config = config
        residual = config.arch == "resnet"
        if config.style == "imagenet":
            blocks, bottleneck = IMAGENET_LAYOUTS[check_depth(config.depth, "imagenet")]
            block, widths = (Bottleneck if bottleneck else BasicBlock), IMAGENET_WIDTHS
            self.conv1 = nn.Conv2d(config.in_channels, widths[0], kernel_size=7, stride=2, padding=3, bias=False) \
                if config.stem == "default" else deep_stem(config.in_channels, widths[0])
            self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            blocks, block, widths = (check_depth(config.depth),) * 3, BasicBlock, WIDTHS
            self.conv1 = conv3x3(config.in_channels, widths[0])
            self.pool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.stages, width = make_stages(block, widths[0], widths, blocks, residual, config.shortcut)
        self.fc = nn.Linear(width, config.num_classes)
        finish(self, config)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        x = self.stages(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
