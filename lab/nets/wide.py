"""Wide residual nets (Zagoruyko & Komodakis 2016), WRN-d-k: conv 3x3 on 16 filters, then three groups of N
full pre-activation basic blocks on 16k, 32k, 64k filters (``model.width`` k; d = 6N+4, ``model.depth``),
dropout between the two convs of a block (``model.dropout``: 0.3 on CIFAR in the paper, after the ReLU), a 1x1
projection where the channels change, which sees the activated input as in the official code, and a last BN-ReLU
before pooling. WRN-28-10: 36.5M parameters.

The block is He 2016's full pre-activation unit: the net is built by ``lab.nets.preact.PreactNet``. The official
PyTorch code has no dropout and uses plain momentum; the paper's recipe (Nesterov, wd 5e-4, lr x0.2 at 30/60/80%)
is a recipe's business (``experiments/``), not the net's.
"""
from __future__ import annotations

from lab.nets.preact import PreactNet as WideResNet

__all__ = ["WideResNet"]
