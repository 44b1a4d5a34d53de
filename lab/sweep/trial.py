"""A trial process: the body of one trial of a sweep (``trial_main``), forked from the coordinator's server that
imported torch, Lightning and W&B once; under SLURM it checkpoints at a signal (``lab.train.callbacks``)."""
from __future__ import annotations

import gc
import os
import sys
import threading
import time
from typing import Any

from lab.config import ConfigError, make_config
from lab.sweep.protocol import EXIT_CHECKPOINTED, EXIT_DISK_FULL, pid_alive
from lab.sweep.storage import disk_full

def trial_main(config_data: dict, run_name: str, log_path: str, threads: int, coordinator_pid: int,
                gpu: str | None = None, wandb_group: str | None = None, progress: tuple[Any, int] | None = None,
                pulse: Any = None, where: tuple[str, dict[str, str]] | None = None) -> None:
    """Body of a trial process: log to a file, die with the coordinator, train (on ``gpu`` alone when given, before
    CUDA starts: ``lab.sweep.packing``); exit 75 on a full disk. ``where``: the coordinator's working directory (a
    relative ``data.data_dir``) and environment as it starts the trial, taken first: the forkserver keeps those of
    the sweep that started it, the first one when ``lab.cli.main`` runs several in one process. ``progress``: (the
    coordinator's queue, the trial's number): where it is, every few seconds (``lab.progress``); ``pulse``: where the
    trial writes that it makes progress (``lab.train.progress.Pulse``, read by ``StallWatch``)."""
    from lab.sweep.packing import trial_environment

    # The half million objects of the imports the server made are for life: the collector leaves them alone (its
    # first full pass cost a 2-iteration digits trial 0.25 s of 0.65 s) and the pages stay shared with the server
    gc.freeze()
    if where is not None:
        os.chdir(where[0])
        os.environ.clear()
        os.environ.update(where[1])
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

        from lab.records import RunRecord, run_dir_for
        from lab.train.callbacks import CheckpointOnSignal

        slurm_env_dropped()
        checkpoint = RunRecord(run_dir_for(config, run_name)).checkpoint_path
        callbacks += (CheckpointOnSignal(checkpoint, config.train.eval_every, EXIT_CHECKPOINTED),)
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


def error_chain(error: BaseException | None) -> list[BaseException]:
    """An exception and the ones it was raised from or while handling."""
    seen: list[BaseException] = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen
