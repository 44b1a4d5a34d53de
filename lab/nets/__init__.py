"""The networks a depth study trains. ``lab.nets.names``: what names a net, which depths and fields each family has,
and ``NetConfig`` (no torch); ``lab.nets.build``: ``build_net`` and what is counted of a net; one module per family:
``resnet`` (He 2015, plain and residual, CIFAR and ImageNet styles), ``preact`` (He 2016), ``wide`` (WRN),
``resnext`` (Xie 2017). The names are here too, and ``build_net`` and the nets' classes load torch only when first
used (``from lab import nets`` stays light).
"""
from __future__ import annotations

from typing import Any

from lab.nets.names import (ARCHS, FAMILIES, IMAGENET_LAYOUTS, SHORTCUTS, STYLES, UNITS, NetConfig,  # noqa: F401
                            check_depth, resnet_name, run_name, valid_depths)

TORCH_MODULES = ("lab.nets.build", "lab.nets.resnet", "lab.nets.preact", "lab.nets.wide", "lab.nets.resnext")


def __getattr__(name: str) -> Any:  # PEP 562: build_net, NetConfig, BasicBlock... imported on first use
    import importlib

    for module in TORCH_MODULES:  # not `from lab.nets import`: that would call this again
        found = getattr(importlib.import_module(module), name, None)
        if found is not None:
            return found
    raise AttributeError(f"module 'lab.nets' has no attribute {name!r}")
