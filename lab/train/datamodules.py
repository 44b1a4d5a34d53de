"""The data of a run as Lightning sees it: tensors on the training device (``TensorDataModule``), or an ImageFolder
through DataLoader workers (``ImageFolderDataModule``)."""
from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

from lab.config import DataConfig
from lab.data import Dataset, EvalBatches, TrainStream, imagefolder, load_dataset
from lab.train.classifier import EVAL_BATCH


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


class ImageFolderDataModule(pl.LightningDataModule):
    """An ImageFolder through DataLoader workers (``lab.data.imagefolder``); normalised on the training device.

    Workers send uint8 batches (4x less to pin and copy than float32); the per-pixel mean image is
    subtracted, and the result scaled, after the transfer (``on_after_batch_transfer``).
    """

    def __init__(self, cfg: DataConfig, batch_size: int, seed: int) -> None:
        super().__init__()
        self.cfg, self.batch_size, self.seed = cfg, batch_size, seed
        self.data: imagefolder.ImageFolderData | None = None
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None

    def prepare(self) -> imagefolder.ImageFolderData:
        """Scan the folders (no decoding) before the trainer exists, so that shapes are known to build the net."""
        if self.data is None:
            self.data = imagefolder.load_imagefolder(self.cfg)
        return self.data

    def setup(self, stage: str) -> None:
        data, device = self.prepare(), self.trainer.strategy.root_device
        if self.mean is None:  # recomputed identically on resume (a seeded sample, summed in a fixed order)
            mean, std = imagefolder.mean_image(data.train, self.cfg)
            self.mean, self.std = mean.to(device), std.to(device).view(-1, 1, 1)
        self.pin_memory = device.type == "cuda"

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        trainer = self.trainer
        return imagefolder.train_loader(
            self.prepare().train, self.cfg, self.batch_size, self.seed,
            start=lambda: trainer.global_step,  # a resumed run continues the stream where it stopped
            pin_memory=self.pin_memory,
        )

    def val_dataloader(self) -> list[torch.utils.data.DataLoader]:
        # Batches of the training size: 1,000 images of 224x224 would be 600 MB of float32 input alone.
        data = self.prepare()
        return [imagefolder.eval_loader(s, self.cfg, self.batch_size, self.pin_memory) for s in (data.val, data.test)]

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        return (x.float() - self.mean) / self.std, y


def make_datamodule(cfg: DataConfig, batch_size: int, seed: int) -> TensorDataModule | ImageFolderDataModule:
    """Tensors on the device for the small datasets; a DataLoader pipeline for an ImageFolder."""
    if cfg.name == "imagefolder":
        return ImageFolderDataModule(cfg, batch_size, seed)
    return TensorDataModule(cfg, batch_size, seed)
