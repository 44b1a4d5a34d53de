"""The LightningModule (``Classifier``) around an injected net: the training step (compiled on a GPU), divergence checks,
evaluation metrics, the optimizer and its schedule (``lab.train.schedule``)."""
from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from lab.config import OptimConfig
from lab.data.seeding import NET_DRAWS, seed_for
from lab.train.schedule import LrSchedule


EVAL_BATCH = 1000
EVAL_SETS = ("val", "test")  # validation dataloader index -> metric prefix
DIVERGENCE_CHECK_EVERY = 10  # iterations between host checks of the device-side divergence flag (one sync each)
NO_ITERATION = 2**62  # Classifier._first_bad while every training loss has been finite
# Classifier's training statistics since the last evaluation: a checkpoint saved between two evaluations (a SLURM
# signal, lab.sweep) carries them, so that the next row is logged as if the run had never stopped.
INTERVAL_STATE = ("_train_loss", "_train_wrong", "_train_seen", "_train_loss_max", "_train_loss_initial")


class Diverged(Exception):
    """A training loss was NaN or infinite; ``iteration``: the first such iteration (its ``global_step``)."""

    def __init__(self, iteration: int) -> None:
        super().__init__(f"diverged at iteration {iteration}")
        self.iteration = iteration


def loss_and_wrong(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A training batch's forward: (mean cross-entropy loss, number of wrong top-1 predictions): what ``compile`` captures."""
    logits = net(x)
    return F.cross_entropy(logits, y), (logits.argmax(1) != y).sum()


def compile_mode(device: torch.device) -> str | None:
    """torch.compile's mode for the fast path: CUDA graphs on a GPU, where these small nets wait on kernel launches;
    inductor's default (fused C++ kernels) elsewhere, where there is nothing to graph."""
    return "reduce-overhead" if device.type == "cuda" else None


def compiled_step(device: torch.device) -> Any:
    """``loss_and_wrong`` through torch.compile for ``device``: static shapes (every training batch has one size).

    Compiled code is cached by inductor on disk (``TORCHINDUCTOR_CACHE_DIR``, default ``/tmp/torchinductor_USER``),
    keyed by graph, shapes, device and torch version: the second trial of a net on a machine reuses the first one's
    kernels and pays only for tracing.
    """
    return torch.compile(loss_and_wrong, mode=compile_mode(device), dynamic=False)


class Classifier(pl.LightningModule):
    """Trains ``net`` with the paper's SGD; logs train/val/test loss and error (%) every evaluation.

    ``compile``: the training forward and backward go through :func:`compiled_step` (made at the start of fit, on
    the device); evaluations stay eager (one shape of another batch size every few hundred iterations). The net
    itself is never wrapped, so checkpoints hold the same keys (no ``_orig_mod.``) either way.
    """

    def __init__(self, net: nn.Module, optim: OptimConfig, compile: bool = False, seed: int = 0) -> None:
        super().__init__()
        self.net, self.optim, self.compile_step, self.seed = net, optim, compile, seed
        # a net that draws random numbers in its forward (dropout, stochastic depth): its draws at iteration i are a function of
        # (seed, i), as the batches are (lab.data.seeding), so that a resumed run draws what the whole run drew
        self.draws = any(isinstance(m, nn.Dropout) and m.p > 0 or getattr(m, "survival", 1.0) < 1 for m in net.modules())
        self._step_fn: Any = loss_and_wrong
        self.schedule: LrSchedule | None = None  # made with the optimizer; LambdaLR checkpoints its state
        self._first_bad: torch.Tensor | None = None  # on the device: the first iteration with a non-finite loss
        self._reset_train_stats()

    def _reset_train_stats(self) -> None:
        # Summed on the device and read once per evaluation: a .item() per step would be a sync point.
        self._train_loss = self._train_wrong = self._train_seen = 0
        # The largest single-batch loss since the last evaluation, and the run's first one (iteration 0): a loss
        # that climbs far above where it started is an unstable run (lab.health), whatever the interval's mean says.
        self._train_loss_max: torch.Tensor | None = None
        self._train_loss_initial: torch.Tensor | None = None
        self._val_wrong = self._val_seen = 0  # val_err for the plateau schedule, as validation_step logs it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def on_fit_start(self) -> None:
        # On the CPU, oneDNN's convolutions run 1.2-1.5x faster on channels_last (NHWC) weights: measured
        # on the digits nets (depth 20/32, options A and C, batch 128, one thread). On CUDA, cuDNN's NHWC kernels
        # pay with bf16 (tensor cores; 60,736 vs 33,603 img/s for ResNet-20 graphed on an H200, with fp32) and
        # fp32 stays NCHW.
        if self.device.type == "cpu" or (self.device.type == "cuda" and "bf16" in str(self.trainer.precision)):
            self.net.to(memory_format=torch.channels_last)
        if self.compile_step:
            self._step_fn = compiled_step(self.device)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        if self.compile_step and self.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()  # last step's graph outputs (loss, wrong) are used up
        loss, wrong = self._step_fn(self.net, x, y)
        with torch.no_grad():
            # Divergence is noted on the device (three small kernels, no sync) and read by check_finite now and then.
            if self._first_bad is None:
                self._first_bad = torch.full((), NO_ITERATION, dtype=torch.long, device=loss.device)
            bad_at = torch.where(torch.isfinite(loss.detach()), NO_ITERATION, self.global_step)
            self._first_bad = torch.minimum(self._first_bad, bad_at)
            self._train_loss = self._train_loss + loss.detach() * len(y)
            # Copies, not the loss itself: on the CUDA-graph path the next replay overwrites this step's outputs.
            step_loss = loss.detach().float()
            self._train_loss_max = (step_loss.clone() if self._train_loss_max is None
                                    else torch.maximum(self._train_loss_max, step_loss))
            if self.global_step == 0:
                self._train_loss_initial = step_loss.clone()
            self._train_wrong = self._train_wrong + wrong
            self._train_seen += len(y)
            if self.schedule is not None and self.schedule.warming_up_until_err():
                # The only per-step sync, and only during the warm-up: its end depends on this batch's error.
                self.schedule.observe_train_err(self.global_step, wrong.item() * 100.0 / len(y))
        return loss

    def check_finite(self) -> None:
        """Raise ``Diverged`` if a training loss so far was NaN or infinite (one device sync).

        Called every ``DIVERGENCE_CHECK_EVERY`` iterations, before every evaluation (so no checkpoint ever holds
        a diverged state) and by ``train`` at the end; the iteration it names is the exact first bad one.
        """
        if self._first_bad is not None and (first := int(self._first_bad)) != NO_ITERATION:
            raise Diverged(first)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.draws:
            torch.manual_seed(seed_for(self.seed, NET_DRAWS, self.global_step))

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.global_step % DIVERGENCE_CHECK_EVERY == 0:
            self.check_finite()
        if self.global_step >= self.trainer.max_steps:  # Lightning evaluates once more when asked to stop: the
            self.trainer.should_stop = True  # curves end at max_steps whether or not train.eval_every divides it

    def on_validation_start(self) -> None:
        self.check_finite()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y = batch
        logits = self.net(x)
        prefix = EVAL_SETS[dataloader_idx]
        log = dict(batch_size=len(y), add_dataloader_idx=False)
        self.log(f"{prefix}_loss", F.cross_entropy(logits, y), **log)
        wrong = logits.argmax(1) != y
        self.log(f"{prefix}_err", wrong.float().mean() * 100, **log)
        if prefix == "val":
            self._val_wrong = self._val_wrong + wrong.sum()
            self._val_seen += len(y)

    def on_validation_epoch_end(self) -> None:
        # Training error as the paper plots it: over the training batches since the last evaluation.
        self.log("iteration", float(self.global_step))
        if self._val_seen and self.schedule is not None and self.schedule.observe_val_err(
            float(self._val_wrong) * 100.0 / self._val_seen  # Lightning's own val_err is only aggregated after this hook
        ):
            # A plateau: lr x gamma from the next iteration on (LambdaLR would apply it only one iteration later).
            scheduler = self.lr_schedulers()
            for group, base in zip(self.trainer.optimizers[0].param_groups, scheduler.base_lrs):
                group["lr"] = base * self.schedule(self.global_step)
        self._val_wrong = self._val_seen = 0
        if self._train_seen:
            self.log("train_loss", self._train_loss / self._train_seen)
            self.log("train_err", self._train_wrong * 100.0 / self._train_seen)
            self.log("train_loss_max", self._train_loss_max)
            if self._train_loss_initial is not None:  # only in the row of the first evaluation
                self.log("train_loss_initial", self._train_loss_initial)
            self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"])
            self._reset_train_stats()

    def configure_optimizers(self) -> dict[str, Any]:
        o = self.optim
        # On the fast path on a GPU the update is one fused kernel, not a few dozen launches of foreach kernels.
        fused = True if self.compile_step and self.device.type == "cuda" else None
        optimizer = torch.optim.SGD(self.parameters(), lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                                    weight_decay=o.weight_decay, fused=fused)
        self.schedule = LrSchedule(o)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
