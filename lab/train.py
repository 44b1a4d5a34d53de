"""``train(config)``: one run, a pure function of its config, leaving a complete run record (``lab.records``)."""
from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import yaml

from lab import nets
from lab.config import Config, ConfigError
from lab.module import Classifier, make_datamodule
from lab.records import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    SUMMARY_FILE,
    WANDB_ID_FILE,
    finished_summary,
    run_dir_for,
    write_json_atomic,
)
from lab.tracking import RecordLogger, code_version, hardware, make_wandb_logger

FINAL_METRICS = ("train_err", "val_err", "test_err", "train_loss", "val_loss", "test_loss")


def _accelerator(device: str) -> tuple[str, Any]:
    if device == "auto":
        return "auto", "auto"
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"train.device: {device!r} is not one of auto, cpu, cuda, cuda:N, mps")
    accelerator = "gpu" if kind == "cuda" else kind
    return accelerator, [int(index)] if index else 1


def _quiet_lightning() -> None:
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*(LeafSpec|treespec).*")


class RecordCheckpoint(pl.Callback):
    """Saves ``last.ckpt`` after every evaluation and at the end, and counts training time across attempts.

    The checkpoint holds model, optimizer, scheduler and loop state; training batches are a function of
    seed and iteration (``TrainStream``), so a run resumed from it continues as if never stopped.
    """

    def __init__(self, path: Path) -> None:
        self.path, self.before_s, self.start = path, 0.0, time.perf_counter()

    def elapsed_s(self) -> float:
        return self.before_s + time.perf_counter() - self.start

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start = time.perf_counter()

    def save(self, trainer: pl.Trainer) -> None:
        """Write, then rename: a crash mid-write leaves the previous checkpoint to resume from."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        trainer.save_checkpoint(tmp)
        os.replace(tmp, self.path)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step < trainer.max_steps:  # the final state is saved by train() itself
            self.save(trainer)

    def state_dict(self) -> dict[str, float]:
        return {"elapsed_s": self.elapsed_s()}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.before_s = state["elapsed_s"]


def _resume_point(run_dir: Path, config: Config) -> int | None:
    """The iteration of an unfinished attempt of exactly this config to resume from, if there is one."""
    ckpt, saved = run_dir / CHECKPOINT_FILE, run_dir / CONFIG_FILE
    if not (ckpt.is_file() and saved.is_file()) or yaml.safe_load(saved.read_text()) != config.to_dict():
        return None
    return torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"]


def train(config: Config, run_name: str | None = None) -> dict[str, Any]:
    """Train one run and return its summary.

    A finished run of the same config is returned as it is; an unfinished one (a killed worker)
    resumes from its last checkpoint; anything else in the run folder is replaced.
    """
    name = run_name or config.run_name
    run_dir = run_dir_for(config, name)
    done = finished_summary(run_dir, config)
    if done is not None:
        return done
    resume_at = _resume_point(run_dir, config)
    if resume_at is None:
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        (run_dir / WANDB_ID_FILE).write_text(uuid.uuid4().hex[:12])

    _quiet_lightning()
    pl.seed_everything(config.train.seed, workers=False, verbose=False)
    datamodule = make_datamodule(config.data, config.optim.batch_size, config.train.seed)
    data = datamodule.prepare()
    m = config.model
    net = nets.build_net(nets.NetConfig(m.arch, m.depth, m.shortcut, data.in_channels, data.num_classes, m.style))
    module = Classifier(net, config.optim)

    record = RecordLogger(run_dir, resume_at)
    loggers: list[Any] = [record]
    wandb_logger = make_wandb_logger(config, run_dir, name, (run_dir / WANDB_ID_FILE).read_text().strip())
    if wandb_logger is not None:
        loggers.append(wandb_logger)

    checkpoint = RecordCheckpoint(run_dir / CHECKPOINT_FILE)
    accelerator, devices = _accelerator(config.train.device)
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=devices,
        max_steps=config.optim.max_steps,
        max_epochs=-1,
        val_check_interval=config.train.eval_every,
        check_val_every_n_epoch=None,  # evaluate every eval_every iterations, across epochs
        num_sanity_val_steps=0,
        logger=loggers,
        callbacks=[checkpoint],
        enable_checkpointing=False,  # Lightning's ModelCheckpoint: not needed, RecordCheckpoint keeps last.ckpt
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,  # nothing is logged per step; this only silences a warning
        benchmark=True,
    )
    device = trainer.strategy.root_device
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=None if resume_at is None else run_dir / CHECKPOINT_FILE)
        if trainer.global_step != config.optim.max_steps:  # stopped early: not a finished run, so no summary
            raise RuntimeError(f"{name}: training stopped at iteration {trainer.global_step} of {config.optim.max_steps}")
    except BaseException:
        if wandb_logger is not None:
            wandb_logger.experiment.finish(exit_code=1)
        raise
    wall_s = checkpoint.elapsed_s()
    checkpoint.save(trainer)

    last = {k: v for row in record.rows for k, v in row.items() if k in FINAL_METRICS}
    summary = {
        "run": name,
        "study": config.track.study,
        "arch": m.arch,
        "depth": m.depth,
        "shortcut": m.shortcut,
        "style": m.style,
        "seed": config.train.seed,
        "dataset": config.data.name,
        "params": nets.count_params(net),
        **last,
        "best_val_err": min(r["val_err"] for r in record.rows if "val_err" in r),
        "warmup_ended": module.schedule.warmup_ended,  # the iteration lr went from warmup_lr to lr; None: no warm-up
        "steps": trainer.global_step,
        "wall_s": round(wall_s, 2),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),  # survives copying run folders together
        "images_per_s": round(trainer.global_step * config.optim.batch_size / wall_s, 1),
        "code_version": code_version(),
        "hardware": hardware(device),
        "config": config.to_dict(),
    }
    write_json_atomic(run_dir / SUMMARY_FILE, summary)  # the result is safe before W&B is told about it
    if wandb_logger is not None:
        wandb_logger.experiment.summary.update({k: summary[k] for k in (*last, "best_val_err", "params", "wall_s")})
        wandb_logger.experiment.finish()
    return summary
