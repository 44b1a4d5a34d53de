"""The networks a depth study trains. ``lab.nets.names``: what names a net and which depths exist (no torch);
``lab.nets.resnet``: He 2015's plain and residual nets (torch). The nets' names are here too, and ``build_net`` and
the rest of ``lab.nets.resnet`` load torch only when first used (``from lab import nets`` stays light).
"""
from __future__ import annotations

from typing import Any

from lab.nets.names import ARCHS, IMAGENET_LAYOUTS, SHORTCUTS, STYLES, check_depth, run_name, valid_depths  # noqa: F401


def __getattr__(name: str) -> Any:  # PEP 562: build_net, NetConfig, ... from lab.nets.resnet, imported on first use
    import importlib

    resnet = importlib.import_module("lab.nets.resnet")  # not `from lab.nets import`: that would call this again
    try:
        return getattr(resnet, name)
    except AttributeError:
        raise AttributeError(f"module 'lab.nets' has no attribute {name!r}") from None
