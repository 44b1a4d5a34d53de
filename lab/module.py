"""Lightning wrappers: the classifier around an injected net, and the on-device data."""
from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from lab.config import DataConfig, OptimConfig
from lab.data import Dataset, EvalBatches, TrainStream, load_dataset

EVAL_BATCH = 1000
EVAL_SETS = ("val", "test")  # validation dataloader index -> metric prefix


class LrSchedule:
    """Multiplier of ``optim.lr`` at an iteration: an optional warm-up, then step decays at milestones."""

    def __init__(self, optim: OptimConfig) -> None:
        # Plain numbers only: LambdaLR puts this object's fields into checkpoints.
        self.warmup_steps, self.gamma, self.milestones = optim.warmup_steps, optim.gamma, list(optim.milestones)
        self.warmup_factor = (optim.warmup_lr or optim.lr) / optim.lr

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup_factor
        return self.gamma ** sum(step >= m for m in self.milestones)


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
    """Loads the dataset straight onto the training device; training batches are a pure function of seed and iteration."""

    def __init__(self, cfg: DataConfig, batch_size: int, seed: int) -> None:
        super().__init__()
        self.cfg, self.batch_size, self.seed = cfg, batch_size, seed
        self.data: Dataset | None = None

    def prepare(self) -> Dataset:
        """Load on the CPU (before the trainer exists) so that shapes are known to build the net."""
        if self.data is None:
            self.data = load_dataset(self.cfg)
        return self.data

    def setup(self, stage: str) -> None:
        self.data = self.prepare().to(self.trainer.strategy.root_device)

    def train_dataloader(self) -> TrainStream:
        d, trainer = self.data, self.trainer
        return TrainStream(
            d.train, d.mean, d.std, self.batch_size, self.seed, self.cfg.crop_pad, self.cfg.flip,
            start=lambda: trainer.global_step,  # a resumed run continues the stream where it stopped
        )

    def val_dataloader(self) -> list[EvalBatches]:
        return [EvalBatches(s, self.data.mean, self.data.std, EVAL_BATCH) for s in (self.data.val, self.data.test)]
