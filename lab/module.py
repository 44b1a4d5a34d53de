"""Lightning wrappers: the classifier around an injected net, and the on-device data."""
from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from lab.config import DataConfig, OptimConfig
from lab.data import Batches, Dataset, load_dataset

EVAL_BATCH = 1000
EVAL_SETS = ("val", "test")  # validation dataloader index -> metric prefix


class LrSchedule:
    """Multiplier of ``optim.lr`` at an iteration: an optional warm-up, then step decays at milestones."""

    def __init__(self, optim: OptimConfig) -> None:
        self.optim = optim

    def __call__(self, step: int) -> float:
        o = self.optim
        if step < o.warmup_steps:
            return o.warmup_lr / o.lr
        return o.gamma ** sum(step >= m for m in o.milestones)


class Classifier(pl.LightningModule):
    """Trains ``net`` with the paper's SGD; logs train/val/test loss and error (%) every evaluation."""

    def __init__(self, net: nn.Module, optim: OptimConfig) -> None:
        super().__init__()
        self.net, self.optim = net, optim
        self._reset_train_stats()

    def _reset_train_stats(self) -> None:
        # Summed on the device and read once per evaluation: a .item() per step would be a sync point.
        self._train_loss = self._train_wrong = self._train_seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        with torch.no_grad():
            self._train_loss = self._train_loss + loss.detach() * len(y)
            self._train_wrong = self._train_wrong + (logits.argmax(1) != y).sum()
            self._train_seen += len(y)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y = batch
        logits = self.net(x)
        prefix = EVAL_SETS[dataloader_idx]
        log = dict(batch_size=len(y), add_dataloader_idx=False)
        self.log(f"{prefix}_loss", F.cross_entropy(logits, y), **log)
        self.log(f"{prefix}_err", (logits.argmax(1) != y).float().mean() * 100, **log)

    def on_validation_epoch_end(self) -> None:
        # Training error as the paper plots it: over the training batches since the last evaluation.
        self.log("iteration", float(self.global_step))
        if self._train_seen:
            self.log("train_loss", self._train_loss / self._train_seen)
            self.log("train_err", self._train_wrong * 100.0 / self._train_seen)
            self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"])
            self._reset_train_stats()

    def configure_optimizers(self) -> dict[str, Any]:
        o = self.optim
        optimizer = torch.optim.SGD(self.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, LrSchedule(o))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class TensorDataModule(pl.LightningDataModule):
    """Loads the dataset straight onto the training device; one seeded generator drives shuffling and augmentation."""

    def __init__(self, cfg: DataConfig, batch_size: int, seed: int) -> None:
        super().__init__()
        self.cfg, self.batch_size, self.seed = cfg, batch_size, seed
        self.data: Dataset | None = None
        self.generator: torch.Generator | None = None

    def prepare(self) -> Dataset:
        """Load on the CPU (before the trainer exists) so that shapes are known to build the net."""
        if self.data is None:
            self.data = load_dataset(self.cfg)
        return self.data

    def setup(self, stage: str) -> None:
        device = self.trainer.strategy.root_device
        self.data = self.prepare().to(device)
        if self.generator is None or self.generator.device != device:
            self.generator = torch.Generator(device=device).manual_seed(self.seed)

    def train_dataloader(self) -> Batches:
        d = self.data
        return Batches(d.train, d.mean, d.std, self.batch_size, self.generator, self.cfg.crop_pad, self.cfg.flip)

    def val_dataloader(self) -> list[Batches]:
        return [Batches(s, self.data.mean, self.data.std, EVAL_BATCH) for s in (self.data.val, self.data.test)]

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()} if self.generator is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "generator" in state and self.generator is not None:
            self.generator.set_state(state["generator"])
