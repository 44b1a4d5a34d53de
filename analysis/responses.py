"""Layer responses (He 2015, Figure 7): the standard deviation of every 3x3 layer's output on the test set.

"The responses are the outputs of each 3x3 layer, after BN and before other nonlinearity (ReLU/addition)"
(Section 4.2). They are read with forward hooks on those BN layers of each run's final checkpoint.
"""
from __future__ import annotations

import json
from functools import partial

import pandas as pd
import torch
from torch import nn

from lab import nets
from lab.config import Config, ConfigError, ModelConfig, from_dict, quote
from lab.data import TENSOR_SHAPES, EvalBatches, load_dataset
from lab.records import RunRecord, UnsafeCheckpoint

EVAL_BATCH = 500


def response_layers(net: nn.Module) -> list[tuple[str, nn.BatchNorm2d]]:
    """(name, BN) of every BN that follows a 3x3 conv, in the order the net defines them.

    Blocks (and the net's stem) hold ``convK``/``bnK`` pairs; 1x1 convs of bottlenecks and the 7x7
    ImageNet stem are not 3x3 layers and are left out, as in Figure 7.
    """
    layers = []
    for name, module in net.named_modules():
        for k in (1, 2, 3):
            conv, bn = getattr(module, f"conv{k}", None), getattr(module, f"bn{k}", None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and conv.kernel_size == (3, 3):
                layers.append((f"{name}.bn{k}".lstrip("."), bn))
    return layers


def _accumulate(moments: torch.Tensor, i: int, module: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
    out = out.detach().double()
    moments[i] += torch.stack([torch.tensor(out.numel(), dtype=torch.float64), out.sum().cpu(), out.square().sum().cpu()])


@torch.no_grad()
def response_stds(net: nn.Module, batches: EvalBatches) -> list[float]:
    """Standard deviation (over images, channels and positions) of every 3x3 layer's response, in eval mode."""
    layers = response_layers(net)
    moments = torch.zeros(len(layers), 3, dtype=torch.float64)  # count, sum, sum of squares per layer
    hooks = [bn.register_forward_hook(partial(_accumulate, moments, i)) for i, (_, bn) in enumerate(layers)]
    net.eval()
    try:
        for x, _ in batches:
            net(x)
    finally:
        for h in hooks:
            h.remove()
    n, total, squares = moments.unbind(1)
    return ((squares - total * total / n) / (n - 1)).clamp_min(0).sqrt().tolist()


def _load_net(record: RunRecord, m: ModelConfig, in_channels: int, num_classes: int, device: torch.device) -> nn.Module:
    """The run's net with the weights of its final checkpoint (Lightning's ``state_dict``, keys ``net.*``)."""
    net = nets.build_net(nets.NetConfig.of(m, in_channels, num_classes))
    state = record.checkpoint.load(map_location=device)["state_dict"]
    net.load_state_dict({k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")})
    return net.to(device)


def layer_responses(runs: pd.DataFrame, device: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """One row per (run, 3x3 layer): ``layer`` (0-based, in order), ``module`` and ``std``; and notes on runs left out.

    Runs without a checkpoint, or on a dataset without a test split here, are left out with a note.
    Each dataset is loaded once (the runs of a study share it).
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    rows, notes, datasets = [], [], {}
    for run in runs.itertuples():
        record = RunRecord(run.run_dir)
        try:
            cfg = from_dict(Config, record.read_config())
        except ConfigError as e:  # damaged or hostile: its file is named, and the run left out
            notes.append(f"{run.run}: {e}" if str(record.config_path) in str(e) else f"{run.run}: {record.config_path}: {e}")
            continue
        if cfg.data.name not in TENSOR_SHAPES or not record.checkpoint_path.is_file():
            notes.append(f"{run.run}: no {record.checkpoint_path.name}" if cfg.data.name in TENSOR_SHAPES
                         else f"{run.run}: dataset {cfg.data.name} has no test split that lab.data loads here")
            continue
        key = json.dumps(cfg.to_dict()["data"], sort_keys=True)
        try:
            if key not in datasets:
                datasets[key] = load_dataset(cfg.data).to(device)
        except ConfigError as e:
            notes.append(f"{run.run}: {e}")
            continue
        data = datasets[key]
        try:
            net = _load_net(record, cfg.model, data.in_channels, data.num_classes, device)
        except Exception as e:  # UnsafeCheckpoint (never unpickled), or torn: torch raises many kinds
            reason = str(e) if isinstance(e, UnsafeCheckpoint) else f"{record.checkpoint_path}: unreadable ({quote(str(e), 100)})"
            notes.append(f"{run.run}: {reason}")
            continue
        stds = response_stds(net, EvalBatches(data.test, data.mean, data.std, EVAL_BATCH))
        names = [name for name, _ in response_layers(net)]
        rows += [{"run": run.run, "arch": run.arch, "depth": run.depth, "shortcut": run.shortcut, "seed": run.seed,
                  "layer": i, "module": name, "std": s} for i, (name, s) in enumerate(zip(names, stds))]
    return pd.DataFrame(rows, columns=["run", "arch", "depth", "shortcut", "seed", "layer", "module", "std"]), notes
