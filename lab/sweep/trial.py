"""A trial process: the body of one trial of a sweep (``trial_main``), forked from the coordinator's server that
imported torch, Lightning and W&B once; and, under SLURM, the checkpoint it saves at a signal."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any

from lab.config import Config, ConfigError, make_config
from lab.sweep.protocol import EXIT_CHECKPOINTED, EXIT_DISK_FULL, pid_alive
from lab.sweep.storage import disk_full

def trial_main(config_data: dict, run_name: str, log_path: str, threads: int, coordinator_pid: int,
                gpu: str | None = None, wandb_group: str | None = None, progress: tuple[Any, int] | None = None,
                pulse: Any = None) -> None:
    """Body of a trial process: log to a file, die with the coordinator, train (on ``gpu`` alone when given, before
    CUDA starts: ``lab.sweep.packing``); exit 75 on a full disk. ``progress``: (the coordinator's queue, the trial's
    number): where it is, every few seconds (``lab.progress``); ``pulse``: where the trial writes that it makes
    progress (``lab.train.progress.Pulse``, read by ``StallWatch``)."""
    from lab.sweep.packing import trial_environment

    os.environ.update(trial_environment(gpu))
    try:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        os._exit(EXIT_DISK_FULL if disk_full(e) else 1)
    os.dup2(fd, 1)
    os.dup2(fd, 2)

    def watch() -> None:  # an orphaned trial would race its own retry for the same run folder
        while pid_alive(coordinator_pid):
            time.sleep(1)
        os._exit(3)

    threading.Thread(target=watch, daemon=True).start()
    from lab.train import EXIT_INTERRUPTED, interrupt_note

    interrupted = interrupt_note(f"[lab sweep] {run_name}: interrupted (SIGINT); its run resumes from its last checkpoint")
    config = make_config(config_data)
    callbacks: tuple = ()
    if pulse is not None:
        from lab.train.progress import Pulse

        callbacks += (Pulse(pulse),)
    if os.environ.get("SLURM_JOB_ID"):  # the coordinator owns the requeue, not Lightning
        from lab.sweep.slurm import slurm_env_dropped

        slurm_env_dropped()
        callbacks += (_checkpoint_on_signal(config, run_name),)
    if progress is not None:
        from lab.train.progress import TrialProgress

        reports, number = progress
        reports.cancel_join_thread()  # a report still queued never holds up the trial's exit
        callbacks += (TrialProgress(lambda *where: reports.put((number, *where)), config.optim.batch_size),)
    import torch

    from lab.train import train

    torch.set_num_threads(threads)
    from lab.records import RunFailed

    try:
        # the study owns its run folders: a point runs again only when no trial of the study finished it (a run
        # that failed with another config, `lab sweep NAME optim.lr=1e30` then the fixed command, is replaced)
        train(config, run_name, callbacks=callbacks, overwrite=True, wandb_group=wandb_group)
    except RunFailed as e:  # the run's own result (it diverged): one line in its log, not a traceback
        print(f"[lab sweep] {e}; record: {e.run_dir}", flush=True)
        sys.exit(1)
    except ConfigError as e:  # e.g. its run folder holds a record of another config: one line, not a traceback
        print(f"[lab sweep] {run_name}: {e}", flush=True)
        sys.exit(2)
    except BaseException as e:
        if interrupted:  # Lightning turns Ctrl-C into exit(1); the log says what happened (interrupt_note)
            os._exit(EXIT_INTERRUPTED)
        if not any(disk_full(x) for x in error_chain(e)):
            raise
        try:
            print(f"[lab sweep] {run_name} stopped: the disk is full ({e})", flush=True)
        except OSError:
            pass
        os._exit(EXIT_DISK_FULL)
    sys.stdout.flush()


def _checkpoint_on_signal(config: Config, run_name: str) -> Any:
    """A Lightning callback for a SLURM task's trial: SIGTERM or SIGUSR1 (from SLURM at preemption, or from the
    coordinator releasing it) saves ``last.ckpt`` at the end of the training step under way, and the process
    exits ``EXIT_CHECKPOINTED``: the run resumes from that very iteration, not from its last evaluation.
    Installed before ``fit``, these handlers keep Lightning from registering its own for SIGTERM."""
    import pytorch_lightning as pl

    from lab.records import RunRecord, run_dir_for, write_atomic_with

    received: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, lambda number, frame: received.append(number))

    from lab.train.classifier import INTERVAL_STATE  # the classifier's statistics since the last evaluation

    class CheckpointOnSignal(pl.Callback):
        def on_save_checkpoint(self, trainer: pl.Trainer, module: pl.LightningModule, checkpoint: dict) -> None:
            # the training error and loss summed since the last evaluation: a run checkpointed between two
            # evaluations then logs the same averages at the next one as if never stopped
            checkpoint["lab_interval"] = {k: getattr(module, k) for k in INTERVAL_STATE if hasattr(module, k)}

        def on_load_checkpoint(self, trainer: pl.Trainer, module: pl.LightningModule, checkpoint: dict) -> None:
            for key, value in checkpoint.get("lab_interval", {}).items():
                setattr(module, key, value)

        def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: Any) -> None:
            # After a step that an evaluation follows, stop after the evaluation: a checkpoint saved before it
            # would resume past it, and its row would never be logged.
            evaluation_follows = trainer.global_step % config.train.eval_every == 0 or trainer.global_step >= trainer.max_steps
            if received and not evaluation_follows:
                self.stop(trainer, module)

        def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            if received:
                self.stop(trainer, module)

        def stop(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            if hasattr(module, "check_finite"):
                module.check_finite()  # a loss gone non-finite since the last check: the run diverged, say so
            # atomic: a kill now leaves the previous checkpoint or this one
            write_atomic_with(RunRecord(run_dir_for(config, run_name)).checkpoint_path, trainer.save_checkpoint)
            print(f"[lab sweep] {signal.Signals(received[0]).name}: checkpoint of iteration {trainer.global_step} "
                  f"saved; stopping", flush=True)
            os._exit(EXIT_CHECKPOINTED)

    return CheckpointOnSignal()


def error_chain(error: BaseException | None) -> list[BaseException]:
    """An exception and the ones it was raised from or while handling."""
    seen: list[BaseException] = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen
