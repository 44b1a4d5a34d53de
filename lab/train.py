"""``train(config)``: one run, a pure function of its config, leaving a complete run record (``lab.records``)."""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
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
from lab.module import Classifier, Diverged, make_datamodule
from lab.records import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    DAMAGED_SUFFIX,
    FAILURE_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    WANDB_ID_FILE,
    RunFailed,
    finished_summary,
    read_summary,
    run_dir_for,
    same_config,
    set_aside,
    write_json_atomic,
)
from lab.tracking import RecordLogger, code_version, hardware, make_wandb_mirror

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
    """Hide Lightning's info lines (the devices it found) and its warnings that a user of lab can do nothing about;
    ``lab -v`` (``LAB_VERBOSE=1``, inherited by a sweep's trial processes) shows them all."""
    verbose = os.environ.get("LAB_VERBOSE") == "1"
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    if verbose:
        return
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*(LeafSpec|treespec).*")
    # Lightning's hint to launch multi-process SLURM jobs with srun, on every machine with srun: a run is one process
    warnings.filterwarnings("ignore", message="The `srun` command is available on your system but is not used")


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
        tmp = self.path.with_name(self.path.name + ".tmp")  # one left by a killed process is overwritten
        try:
            trainer.save_checkpoint(tmp)
            os.replace(tmp, self.path)
        except BaseException:  # a full disk: leave no half-written .tmp behind
            tmp.unlink(missing_ok=True)
            raise

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step < trainer.max_steps:  # the final state is saved by train() itself
            self.save(trainer)

    def state_dict(self) -> dict[str, float]:
        return {"elapsed_s": self.elapsed_s()}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.before_s = state["elapsed_s"]


CHECKPOINT_KEYS = ("global_step", "state_dict", "optimizer_states", "lr_schedulers", "loops", "callbacks")


def _note(message: str) -> None:
    """One line on stderr about what was found in a run record and what was done about it."""
    print(f"lab: {message}", file=sys.stderr, flush=True)


def _read_checkpoint_step(path: Path) -> int:
    """The iteration of a checkpoint, read whole (a torn file fails here, and not halfway into a resume)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or not all(k in state for k in CHECKPOINT_KEYS):
        raise ValueError("not a complete Lightning checkpoint")
    return int(state["global_step"])


def _read_rows(path: Path, resume_at: int, name: str) -> list[dict[str, Any]] | None:
    """The rows of ``metrics.jsonl`` up to iteration ``resume_at``; None when one of them is unreadable.

    Rows are appended in iteration order, so an unreadable line that comes after the row of ``resume_at``
    (a torn last line: a crash mid-write) is past the checkpoint, and is dropped: training logs it again.
    One before it is needed, and lost: the file is set aside and the run starts again (None).
    """
    rows: list[dict[str, Any]] = []
    last = None  # the iteration of the last readable row
    for number, line in enumerate(path.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("iteration", 0), (int, float)):
                raise ValueError("not a row")
        except ValueError:  # also UnicodeDecodeError
            if last is not None and last >= resume_at:
                _note(f"{path}: line {number} is unreadable (torn by a crash?); it comes after the checkpoint of iteration "
                      f"{resume_at}, so it is dropped and {name} resumes")
                break
            damaged = set_aside(path)
            _note(f"{path}: line {number} is unreadable; set aside as {damaged.name}; "
                  f"{name} starts again from iteration 0")
            return None
        last = row.get("iteration", 0)
        if last <= resume_at:
            rows.append(row)
    return rows


def _resume_point(run_dir: Path, config: Config, name: str) -> tuple[int, list[dict[str, Any]]] | None:
    """(iteration, metrics rows up to it) of an unfinished attempt of exactly this config to resume from, if any.

    A damaged checkpoint or metrics file is set aside (``NAME.damaged``), saying so in one line, and the run
    starts again from iteration 0: never a failure that repeats on every rerun. A run that failed
    (``failure.json``) starts again too.
    """
    ckpt, saved, metrics = run_dir / CHECKPOINT_FILE, run_dir / CONFIG_FILE, run_dir / METRICS_FILE
    if (run_dir / FAILURE_FILE).exists() or not (ckpt.is_file() and saved.is_file()):
        return None
    try:
        if not same_config(yaml.safe_load(saved.read_text()), config):
            return None  # another config: replaced
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None  # unreadable: not known to be this config
    try:
        resume_at = _read_checkpoint_step(ckpt)
    except Exception as e:  # torch raises many kinds for a torn file
        damaged = set_aside(ckpt)
        reason = " ".join(str(e).split())[:120] or type(e).__name__
        _note(f"{ckpt}: unreadable ({reason}); set aside as {damaged.name}; {name} starts again from iteration 0")
        return None
    if not metrics.is_file():
        if resume_at == 0:
            return resume_at, []
        _note(f"{metrics}: missing, with a checkpoint of iteration {resume_at}; {name} starts again from iteration 0")
        return None
    rows = _read_rows(metrics, resume_at, name)
    return None if rows is None else (resume_at, rows)


def _set_aside_damaged_summary(run_dir: Path) -> str | None:
    """Set a damaged ``summary.json`` aside; the line to say so (how the run goes on is added), or None."""
    path = run_dir / SUMMARY_FILE
    if not path.is_file() or read_summary(path) is not None:
        return None
    damaged = set_aside(path)
    return f"{path}: damaged (not a run summary); set aside as {damaged.name}"


def _clear_run_dir(run_dir: Path) -> None:
    """Empty ``run_dir`` for a fresh start, keeping set-aside damaged files (for inspection; never read again)."""
    if not run_dir.exists():
        run_dir.mkdir(parents=True)
        return
    for path in run_dir.iterdir():
        if path.name.endswith(DAMAGED_SUFFIX):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def train(config: Config, run_name: str | None = None, callbacks: tuple[pl.Callback, ...] = ()) -> dict[str, Any]:
    """Train one run and return its summary (``callbacks``: more Lightning callbacks, e.g. ``lab bench``'s clock).

    A finished run of the same config is returned as it is; an unfinished one (a killed worker)
    resumes from its last checkpoint; anything else in the run folder is replaced. Damaged record files
    are set aside (one line on stderr each) and the run goes on without them.

    Raises ``RunFailed`` when the training loss becomes NaN or infinite, after writing ``failure.json``
    (``lab.records.read_failure`` reads its reason); no summary is written. A later call starts afresh.
    """
    name = run_name or config.run_name
    run_dir = run_dir_for(config, name)
    done = finished_summary(run_dir, config)
    if done is not None:
        return done
    damaged_summary = _set_aside_damaged_summary(run_dir)
    resume = _resume_point(run_dir, config, name)
    if damaged_summary is not None:
        how = f"resuming {name} from its checkpoint of iteration {resume[0]}" if resume else f"training {name} again"
        _note(f"{damaged_summary}; {how}")
    if resume is None:
        _clear_run_dir(run_dir)
        (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        (run_dir / WANDB_ID_FILE).write_text(uuid.uuid4().hex[:12])
    resume_at, rows = resume if resume is not None else (None, None)

    _quiet_lightning()
    pl.seed_everything(config.train.seed, workers=False, verbose=False)
    datamodule = make_datamodule(config.data, config.optim.batch_size, config.train.seed)
    data = datamodule.prepare()
    m = config.model
    net = nets.build_net(nets.NetConfig(m.arch, m.depth, m.shortcut, data.in_channels, data.num_classes, m.style))
    module = Classifier(net, config.optim, compile=config.train.compile)

    record = RecordLogger(run_dir, rows)
    loggers: list[Any] = [record]
    wandb_id = run_dir / WANDB_ID_FILE
    if not wandb_id.is_file() or not wandb_id.read_text().strip():  # lost: the W&B mirror goes on in a new run
        wandb_id.write_text(uuid.uuid4().hex[:12])
    wandb_mirror = make_wandb_mirror(config, run_dir, name, wandb_id.read_text().strip(), record)

    checkpoint = RecordCheckpoint(run_dir / CHECKPOINT_FILE)
    accelerator, devices = _accelerator(config.train.device)
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=devices,
        precision="32-true" if config.train.precision == "32" else config.train.precision,
        max_steps=config.optim.max_steps,
        max_epochs=-1,
        val_check_interval=config.train.eval_every,
        check_val_every_n_epoch=None,  # evaluate every eval_every iterations, across epochs
        num_sanity_val_steps=0,
        logger=loggers,
        # W&B's mirror after RecordCheckpoint: a row goes to W&B once the state it was measured in is saved
        callbacks=[checkpoint, *callbacks, *([wandb_mirror] if wandb_mirror is not None else [])],
        enable_checkpointing=False,  # Lightning's ModelCheckpoint: not needed, RecordCheckpoint keeps last.ckpt
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,  # nothing is logged per step; this only silences a warning
        benchmark=True,
    )
    device = trainer.strategy.root_device
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=None if resume_at is None else run_dir / CHECKPOINT_FILE)
        module.check_finite()  # the iterations since the last check
        if trainer.global_step != config.optim.max_steps:  # stopped early: not a finished run, so no summary
            raise RuntimeError(f"{name}: training stopped at iteration {trainer.global_step} of {config.optim.max_steps}")
    except Diverged as e:  # a result of this config, not an accident: recorded, and no summary
        reason = str(e)
        write_json_atomic(run_dir / FAILURE_FILE, {
            "run": name,
            "reason": reason,
            "iteration": e.iteration,
            "config": config.to_dict(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        })
        if wandb_mirror is not None:
            wandb_mirror.finish({"failure": reason}, exit_code=1)
        raise RunFailed(name, reason, run_dir) from None
    except BaseException:
        if wandb_mirror is not None:
            wandb_mirror.finish(exit_code=1)
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
    if wandb_mirror is not None:
        wandb_mirror.sync()  # the last evaluation: its final state is saved
        final = (*last, "best_val_err", "params", "wall_s", "steps", "images_per_s")
        wandb_mirror.finish({k: summary[k] for k in final})
    return summary
