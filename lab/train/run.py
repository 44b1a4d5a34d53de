"""``train(config)``: one run, a pure function of its config, leaving a complete run record (``lab.records``)."""
from __future__ import annotations

import logging
import os
import signal
import sys
import time
import warnings
from typing import Any

import pytorch_lightning as pl

from lab import nets
from lab.config import Config, ConfigError, quote
from lab.health import run_warnings
from lab.records import BEST_VAL_ERR, FINAL_METRICS, RunFailed, RunRecord, note, run_dir_for
from lab.train.callbacks import RecordCheckpoint
from lab.train.classifier import Classifier, Diverged
from lab.train.datamodules import make_datamodule
from lab.train.tracking import RecordLogger, code_version, hardware, make_wandb_mirror


EXIT_INTERRUPTED = 130  # a run stopped by SIGINT (Ctrl-C): 128 + 2, as a shell says it


def interrupt_note(line: str, stream: Any = None) -> list[int]:
    """On SIGINT (Ctrl-C), write ``line`` to ``stream`` (stdout: a trial's log) at once and go on as
    Python does (KeyboardInterrupt); returns the list that the signal's number is appended to. Lightning catches
    the KeyboardInterrupt and exits with status 1, so the process itself says why it stopped."""
    received: list[int] = []

    def on_sigint(number: int, frame: Any) -> None:
        if not received:
            try:
                os.write((stream or sys.stdout).fileno(), f"\n{line}\n".encode())
            except OSError:
                pass
        received.append(number)
        signal.default_int_handler(number, frame)

    signal.signal(signal.SIGINT, on_sigint)
    return received


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


def train(config: Config, run_name: str | None = None, callbacks: tuple[pl.Callback, ...] = (),
          overwrite: bool = False, wandb_group: str | None = None) -> dict[str, Any]:
    """Train one run and return its summary (``callbacks``: more Lightning callbacks, e.g. ``lab bench``'s clock;
    ``wandb_group``: the W&B group of a sweep's study, ``lab.train.tracking.make_wandb_mirror``).

    A finished run of the same config is returned as it is; an unfinished one (a killed worker)
    resumes from its last checkpoint. A run folder holds one config: a record of another config there is
    refused (``ConfigError``, naming the fields that differ; nothing of it changes) unless ``overwrite``, which
    replaces it. Damaged record files are set aside (one line on stderr each) and the run goes on without them.

    Raises ``RunFailed`` when the training loss becomes NaN or infinite, after writing ``failure.json``
    (``lab.records.RunRecord.failure`` reads its reason); no summary is written. A later call starts afresh.
    """
    name = run_name or config.run_name
    run_dir = run_dir_for(config, name)
    files = RunRecord(run_dir)
    files.folder.check(config.track.follow_symlinks)
    done = files.finished(config)
    if done is not None:
        return done
    if files.folder.not_a_run():
        raise ConfigError(f"{run_dir} is there and is not a run folder (none of a run record's files); give the run "
                          f"another name (--name NAME)")
    differ = files.other_config(config)
    if differ and not overwrite:
        shown = "; ".join(f"{k}: {quote(there, 40)} there, {quote(here, 40)} here" for k, (there, here) in sorted(differ.items())[:4])
        more = f"; and {len(differ) - 4} more" if len(differ) > 4 else ""
        raise ConfigError(f"{run_dir} holds a run of another config ({shown}{more}); to keep both, give this one "
                          f"another track.study=NAME or --name NAME; to replace it, --overwrite")
    files.folder.set_aside_links()
    damaged_summary = files.set_aside_damaged_summary()
    resume = files.resume_point(config, name)
    if damaged_summary is not None:
        how = f"resuming {name} from its checkpoint of iteration {resume[0]}" if resume else f"training {name} again"
        note(f"{damaged_summary}; {how}")
    if resume is None:
        files.folder.clear()
        files.write_config(config)
        files.new_wandb_id()
    resume_at, rows = resume if resume is not None else (None, None)

    _quiet_lightning()
    pl.seed_everything(config.train.seed, workers=False, verbose=False)
    datamodule = make_datamodule(config.data, config.optim.batch_size, config.train.seed)
    data = datamodule.prepare()
    net = nets.build_net(nets.NetConfig.of(config.model, data.in_channels, data.num_classes))
    module = Classifier(net, config.optim, compile=config.train.compile, seed=config.train.seed)

    record = RecordLogger(run_dir, rows)
    loggers: list[Any] = [record]
    # a lost id: the W&B mirror goes on in a new run
    wandb_mirror = make_wandb_mirror(config, run_dir, name, files.wandb_id(), record, group=wandb_group)

    checkpoint = RecordCheckpoint(files.checkpoint_path)
    accelerator, devices = _accelerator(config.train.device)
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=devices,
        precision="32-true" if config.train.precision == "32" else config.train.precision,
        max_steps=config.optim.max_steps,
        max_epochs=-1,
        val_check_interval=min(config.train.eval_every, config.optim.max_steps),
        check_val_every_n_epoch=None,  # evaluate every eval_every iterations, across epochs
        num_sanity_val_steps=0,
        logger=loggers,
        # W&B's mirror after RecordCheckpoint: a row goes to W&B once the state it was measured in is saved
        callbacks=[checkpoint, *callbacks, *([wandb_mirror] if wandb_mirror is not None else [])],
        enable_checkpointing=False,  # Lightning's ModelCheckpoint: not needed, RecordCheckpoint keeps last.ckpt
        # a progress bar only when the caller gives one (lab train on a terminal: lab.progress)
        enable_progress_bar=any(isinstance(c, pl.callbacks.ProgressBar) for c in callbacks),
        enable_model_summary=False,
        log_every_n_steps=1,  # nothing is logged per step; this only silences a warning
        benchmark=True,
    )
    device = trainer.strategy.root_device
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=None if resume_at is None else files.checkpoint_path,
                    weights_only=True)  # never code from a checkpoint (Checkpoint.load read it so already)
        module.check_finite()  # the iterations since the last check
        if trainer.global_step != config.optim.max_steps:  # stopped early: not a finished run, so no summary
            raise RuntimeError(f"{name}: training stopped at iteration {trainer.global_step} of {config.optim.max_steps}")
    except Diverged as e:  # a result of this config, not an accident: recorded, and no summary
        reason = str(e)
        files.write_failure(name, reason, e.iteration, config)
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
        "family": config.model.family,
        "arch": config.model.arch,
        "depth": config.model.depth,
        "shortcut": config.model.shortcut,
        "style": config.model.style,
        "seed": config.train.seed,
        "dataset": config.data.name,
        "params": nets.count_params(net),
        **last,
        BEST_VAL_ERR: min(r["val_err"] for r in record.rows if "val_err" in r),
        "num_classes": data.num_classes,
        "warnings": run_warnings(record.rows, data.num_classes),  # still a result, marked (lab.health)
        "warmup_ended": module.schedule.warmup_ended,  # the iteration lr went from warmup_lr to lr; None: no warm-up
        "steps": trainer.global_step,
        "wall_s": round(wall_s, 2),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),  # survives copying run folders together
        "images_per_s": round(trainer.global_step * config.optim.batch_size / wall_s, 1),
        "code_version": code_version(),
        "hardware": hardware(device),
        "config": config.to_dict(),
    }
    files.write_summary(summary)  # the result is safe before W&B is told about it
    files.pruned_path.unlink(missing_ok=True)  # a pruned run trained to its end on purpose: no longer stopped early
    if wandb_mirror is not None:
        wandb_mirror.sync()  # the last evaluation: its final state is saved
        # the final metrics are each metric's last (and min: best_val_err is val/err's) in W&B's summary
        wandb_mirror.finish({k: summary[k] for k in ("params", "wall_s", "steps", "images_per_s")})
    return summary
