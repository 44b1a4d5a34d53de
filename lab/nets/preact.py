"""Pre-activation residual nets (He et al. 2016, "Identity Mappings in Deep Residual Networks") and their unit
ablation (Figure 4), on CIFAR; the wide nets (``lab.nets.wide``) are built here too, from the same unit.

A full pre-activation unit is BN -> ReLU -> conv for each weight layer and nothing after the addition; the first
unit's BN-ReLU follows conv1, a last BN-ReLU comes before pooling. Basic units (two 3x3 convs: depth 6n+2, e.g.
ResNet-110) or bottlenecks (1x1, 3x3, 1x1 with 4x the channels: 9n+2, ResNet-164 and ResNet-1001) on 16/32/64
filters. Where the dimensions grow the shortcut is a 1x1 conv that takes the pre-activated input (the paper's
Appendix, its official code's "both_preact"); elsewhere it is the identity on the unit's input.

``unit`` places BN and ReLU as the other units of Figure 4 do: (a) ``original`` (He 2015), (b) ``bn_after_add``,
(c) ``relu_before_add``, (d) ``relu_only_preact``, (e) ``full_preact``. The post-activation units (a-c) take a 1x1
conv and BN as their projection (He 2015's option B) on the unit's input.

Norms that precede a conv are named ``norm1``... (not ``bn1``: He 2015's Figure 7 pairs ``convK`` with the ``bnK``
that follows it, ``analysis.responses``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lab.nets.names import NetConfig, preact_block, units_per_stage
from lab.nets.resnet import conv1x1, conv3x3, init_weights

PRE_ACTIVATED = ("relu_only_preact", "full_preact")  # units whose weight layers follow their activation


class PreactUnit(nn.Module):
    """One unit of Figure 4 (``unit``), basic (two 3x3 convs) or bottleneck (``bottleneck``: 1x1, 3x3, 1x1 to 4x
    ``planes``); ``dropout`` between the 3x3 convs of a basic unit (WRN); ``residual=False``: no shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int, residual: bool, unit: str = "full_preact",
                 bottleneck: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        self.unit, self.residual = unit, residual
        out_planes = planes * (4 if bottleneck else 1)
        shapes = [(in_planes, planes, 1), (planes, planes, 3), (planes, out_planes, 1)] if bottleneck \
            else [(in_planes, planes, 3), (planes, planes, 3)]
        self.depth = len(shapes)
        # the stride on the first conv, as in He 2015 and He 2016's official code; full_preact: a norm before each
        # conv (of its input); the other units: after each conv (bn_after_add: the last one after the addition)
        self.norm = "norm" if unit == "full_preact" else "bn"
        for k, (i, o, size) in enumerate(shapes, 1):
            conv = conv3x3 if size == 3 else conv1x1
            self.add_module(f"conv{k}", conv(i, o, stride if k == 1 else 1))
            self.add_module(f"{self.norm}{k}", nn.BatchNorm2d(i if unit == "full_preact" else o))
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.projection: nn.Module | None = None
        if residual and (stride != 1 or in_planes != out_planes):
            self.projection = conv1x1(in_planes, out_planes, stride) if unit in PRE_ACTIVATED else \
                nn.Sequential(conv1x1(in_planes, out_planes, stride), nn.BatchNorm2d(out_planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        convs = [getattr(self, f"conv{k}") for k in range(1, self.depth + 1)]
        norms = [getattr(self, f"{self.norm}{k}") for k in range(1, self.depth + 1)]
        if self.unit == "full_preact":
            pre = out = F.relu(norms[0](x))
            for k, conv in enumerate(convs):
                if k:
                    out = F.relu(norms[k](out))
                    out = self.dropout(out) if k == 1 else out
                out = conv(out)
        else:
            pre = out = F.relu(x) if self.unit == "relu_only_preact" else x
            for k, conv in enumerate(convs):
                out = conv(out)
                if k < self.depth - 1:
                    out = F.relu(norms[k](out))
                    out = self.dropout(out) if k == 0 else out
                elif self.unit != "bn_after_add":
                    out = norms[k](out)
                    out = F.relu(out) if self.unit == "relu_before_add" else out
        if self.residual:
            out = out + (self.projection(pre) if self.projection is not None else x)
        if self.unit == "bn_after_add":
            out = norms[-1](out)
        return F.relu(out) if self.unit in ("original", "bn_after_add") else out


class PreactNet(nn.Module):
    """A pre-activation net (``family=preact``) or a wide one (``family=wide``: WRN-d-k, basic full pre-activation
    units on 16k/32k/64k filters with ``dropout`` between their convs, d = 6N+4); ``arch=plain``: no shortcuts."""

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        self.config = config
        wide = config.family == "wide"
        unit = "full_preact" if wide else config.unit
        bottleneck = not wide and preact_block(config.depth, config.block) == "bottleneck"
        widths = tuple(w * (config.width if wide else 1) for w in (16, 32, 64))
        n = units_per_stage(config)
        self.conv1 = conv3x3(config.in_channels, 16)
        # the stem's BN-ReLU: in (a-c) after conv1 as in He 2015; in (d) its BN (the ReLU opens the first unit);
        # in (e) the first unit's own norm1 (a last one closes the net)
        self.bn1 = nn.Identity() if unit == "full_preact" else nn.BatchNorm2d(16)
        stages, in_planes = [], 16
        for i, planes in enumerate(widths):
            units = []
            for j in range(n):
                units.append(PreactUnit(in_planes, planes, 2 if i and not j else 1, config.arch == "resnet", unit,
                                        bottleneck, config.dropout))
                in_planes = planes * (4 if bottleneck else 1)
            stages.append(nn.Sequential(*units))
        self.stages = nn.Sequential(*stages)
        self.final_norm = nn.BatchNorm2d(in_planes) if unit == "full_preact" else nn.Identity()
        self.fc = nn.Linear(in_planes, config.num_classes)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.conv1(x))
        if self.config.family == "preact" and self.config.unit in ("original", "bn_after_add", "relu_before_add"):
            x = F.relu(x)
        x = self.stages(x)
        if self.config.family == "wide" or self.config.unit in PRE_ACTIVATED:
            x = F.relu(self.final_norm(x))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
