"""A net from its config (``lab.nets.names.NetConfig``: the model section and the data's shape): ``build_net`` (the
family's module), and what is counted of a net: parameters and multiply-adds."""
from __future__ import annotations

import torch
from torch import nn

from lab.nets.names import NetConfig


def build_net(config: NetConfig) -> nn.Module:
    """The net of ``config``'s family: ``forward_features`` (to the pooled features), ``forward_head``, ``stages``."""
    if config.family == "resnet":
        from lab.nets.resnet import Net

        return Net(config)
    if config.family == "preact":
        from lab.nets.preact import PreactNet

        return PreactNet(config)
    if config.family == "wide":
        from lab.nets.wide import WideResNet

        return WideResNet(config)
    from lab.nets.resnext import ResNeXt

    return ResNeXt(config)


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def multiply_adds(net: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Multiply-adds of one forward pass of a ``C x H x W`` image through the convs and fully connected layers.

    Counted the way Table 1 of He 2015 counts "FLOPs" (ResNet-34: 3.6e9 at 224x224): BN, ReLU,
    pooling and additions are left out.
    """
    total = 0

    def count(module: nn.Module, inputs: tuple[torch.Tensor], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            total += out[0].numel() * per_output
        else:
            total += module.in_features * module.out_features

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = net.training
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(1, *input_shape))
    finally:
        net.train(was_training)
        for h in hooks:
            h.remove()
    return total
