"""ResNeXt on CIFAR (Xie et al. 2017, Section 5.3 and the official code): ResNeXt-29 C x d.

A 3x3 conv on 64 filters with BN-ReLU, then three stages of n bottleneck blocks (depth 9n+2; n=3: 29 layers) whose
outputs have 256, 512 and 1024 channels; the 3x3 of a block is a grouped conv of C groups (``model.cardinality``)
of d channels each (``model.group_width``), d doubling per stage, and carries the stride; projections (1x1 conv and
BN) where the shape changes. ResNeXt-29 8x64d: 34.4M parameters, 16x64d: 68.1M (Table 7).

The block is He 2015's bottleneck (``lab.nets.resnet.Bottleneck``) with a grouped 3x3 of its own width. A public
reimplementation's "ResNeXt29_8x64d" with 89.6M parameters doubles the 3x3's width with an expansion of 2 instead.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lab.nets.names import NetConfig, units_per_stage
from lab.nets.resnet import Bottleneck, conv3x3, finish, make_stages

OUTPUTS = (256, 512, 1024)  # channels out of each stage


class ResNeXt(nn.Module):
    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        self.config = config
        n, c, d = units_per_stage(config), config.cardinality, config.group_width
        self.conv1 = conv3x3(config.in_channels, 64)
        self.bn1 = nn.BatchNorm2d(64)
        per_stage = tuple({"width": c * d * 2**i, "groups": c, "stride_on_3x3": True} for i in range(3))
        widths = tuple(out // Bottleneck.expansion for out in OUTPUTS)
        self.stages, width = make_stages(Bottleneck, 64, widths, (n,) * 3, config.arch == "resnet", "B", per_stage)
        self.fc = nn.Linear(width, config.num_classes)
        finish(self, config)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(F.relu(self.bn1(self.conv1(x))))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
