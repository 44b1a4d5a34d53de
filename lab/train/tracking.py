"""Run records (local, always: the source of truth) and their W&B mirror (offline unless configured)."""
from __future__ import annotations

import json
import netrc
import os
import platform
import socket
import subprocess
import sys
import uuid
import warnings
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import Logger
from pytorch_lightning.utilities import rank_zero_only

from lab.config import Config
from lab.records import ERRORS, LOSSES, RunRecord

WANDB_INIT_TIMEOUT_S = 30
WANDB_SUMMARY_METRICS = (*ERRORS, *LOSSES)  # each with its min and last in a W&B run's summary


class RecordLogger(Logger):
    """Appends every logged row to the run's metrics (``MetricsFile.append_row``: one line, one write)."""

    def __init__(self, run_dir: Path, rows: list[dict[str, float]] | None = None) -> None:
        """``rows``: those of an earlier attempt to keep (up to its checkpoint; ``train`` reads them) and go on from;
        None: a fresh record."""
        super().__init__()
        self.run_dir = Path(run_dir)
        self.files = RunRecord(self.run_dir)
        self.rows: list[dict[str, float]] = list(rows or [])
        if rows is not None:
            self.files.metrics.write_rows(self.rows)

    @property
    def name(self) -> str:
        return "record"

    @property
    def version(self) -> str:
        return self.run_dir.name

    @property
    def save_dir(self) -> str:
        return str(self.run_dir)

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass  # the resolved config is written as config.yaml before training starts

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        # Lightning's ``step`` lags the iteration count by one here; rows carry ``iteration`` instead. Lightning's
        # ``epoch`` is left out: always 0 (runs are measured in iterations), it only cluttered records and charts.
        row = {k: float(v) for k, v in metrics.items() if k != "epoch"}
        self.files.metrics.append_row(row)
        self.rows.append(row)


def code_version() -> str:
    """The git commit of the code that ran (``+dirty`` with uncommitted changes), or ``unknown``."""
    from lab import git_commit

    return git_commit() or "unknown"


def hardware(device: torch.device) -> dict[str, Any]:
    info = {
        "host": socket.gethostname(),
        "device": device.type,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    else:
        info["device_name"] = f"{_cpu_model()} ({os.cpu_count()} cores)"
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def wandb_api_key_configured() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_mode(setting: str) -> str:
    """``auto`` follows ``WANDB_MODE`` if set, else online with an API key, offline without one."""
    if setting != "auto":
        return setting
    env = os.environ.get("WANDB_MODE")
    if env in ("online", "offline", "disabled"):
        return env
    return "online" if wandb_api_key_configured() else "offline"


WANDB_CONFIG_KEYS = ("arch", "depth", "shortcut", "style", "seed", "dataset")  # top-level in W&B's config: group-by
WANDB_SECTIONS = ("train", "val", "test")  # train_err -> train/err: one W&B workspace section per split
WANDB_GROUP_FILE = "wandb-group"  # in a study folder of `lab train` runs: the study's W&B group, made once


def wandb_config(config: Config) -> dict[str, Any]:
    """The config's fields that apply to this run (``lab.config.applicable``: no ImageFolder fields on digits),
    and the keys a study is grouped by at its top level (W&B's group-by and filters)."""
    from lab.config import applicable

    m = config.model
    flat = {"arch": m.arch, "depth": m.depth, "shortcut": m.shortcut, "style": m.style, "seed": config.train.seed,
            "dataset": config.data.name}
    return {**applicable(config), **{k: flat[k] for k in WANDB_CONFIG_KEYS}}


def wandb_key(metric: str) -> str:
    """A record's metric as W&B shows it: ``train_err`` -> ``train/err``, ``val_loss`` -> ``val/loss``; ``lr`` and
    ``iteration`` as they are."""
    section, _, rest = metric.partition("_")
    return f"{section}/{rest}" if section in WANDB_SECTIONS and rest else metric


def study_group(run_dir: Path, study: str) -> str:
    """The W&B group of a study of ``lab train`` runs: its name and a short id made with its folder, kept in
    ``STUDY/wandb-group``, so that two studies of one name (in two runs folders) never share a group. A study
    folder that held runs before groups had ids keeps the study's name as its group: its runs stay together."""
    run_dir = Path(run_dir)
    path = run_dir.parent / WANDB_GROUP_FILE
    try:
        group = path.read_text().strip()
        if group:
            return group
    except OSError:
        pass
    older = (run_dir / "wandb").is_dir() or any(
        p != run_dir and RunRecord(p).config_path.is_file() for p in run_dir.parent.iterdir() if p.is_dir())
    group = study if older else f"{study}-{uuid.uuid4().hex[:6]}"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "x") as f:  # made once: of two runs starting at once, the first one's stays
            f.write(group + "\n")
    except FileExistsError:
        return path.read_text().strip() or group
    return group


def wandb_history(path: Path) -> list[dict[str, Any]]:
    """The history rows of a ``.wandb`` transaction log, read by W&B's own reader (``wandb leet inspect --json``).

    A log cut short by a killed process is read up to its last whole record, as ``wandb sync`` would upload it.
    """
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_ERROR_REPORTING": "false"}  # no network for a local file
    result = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(path)],
                            capture_output=True, text=True, env=env, timeout=300)
    if result.returncode:
        raise RuntimeError(" ".join(result.stderr.split())[-300:] or f"exit status {result.returncode}")
    records = (json.loads(line) for line in result.stdout.splitlines() if line.strip())
    return [r["history"]["item"] for r in records if r.get("type") == "history"]


def wandb_logged_through(run_dir: Path, run_id: str) -> float | None:
    """The last iteration that this run's earlier W&B attempts (``run_dir/wandb/*-RUN_ID``) hold; None: none.

    W&B writes its ``.wandb`` file every ``x_transaction_log_flush_interval`` (15 s): a killed attempt leaves only
    what was written, often nothing of its last evaluations; the next attempt logs those again (from
    ``metrics.jsonl``). Each attempt logs only rows after the last one W&B holds, so the newest attempt with any
    history holds the last row.
    """
    files = [f for f in (Path(run_dir) / "wandb").glob(f"*run-*-{run_id}/run-{run_id}.wandb") if f.is_file()]
    # Folders are named [offline-]run-YYYYMMDD_HHMMSS-ID: newest first.
    for path in sorted(files, key=lambda f: (f.parent.name.split("run-", 1)[1], f.stat().st_mtime), reverse=True):
        iterations = [row["iteration"] for row in wandb_history(path) if isinstance(row.get("iteration"), (int, float))]
        if iterations:
            return max(iterations)
    return None


class WandbMirror(pl.Callback):
    """The W&B run of a training run: the rows of ``metrics.jsonl``, each once, in order, ``iteration`` their x-axis.

    A row goes to W&B once its checkpoint is on disk (this callback comes after ``RecordCheckpoint`` in the trainer's
    callbacks; ``train`` sends the last row after saving the final state), so W&B never holds a row that a resumed
    run trains again: the rows W&B holds are always rows that ``metrics.jsonl`` keeps. Each row is logged at
    ``step=iteration``, so W&B's ``_step`` rises across the attempts of a resumed run and W&B drops no row.
    """

    def __init__(self, run: Any, record: RecordLogger, logged_through: float | None) -> None:
        """``logged_through``: the last iteration W&B already holds (an earlier attempt's); None: none."""
        self.run, self.record = run, record
        self.logged_through = -1.0 if logged_through is None else float(logged_through)

    def sync(self) -> None:
        """Log the record's rows that W&B does not hold yet."""
        for row in self.record.rows:
            iteration = row.get("iteration")
            if isinstance(iteration, (int, float)) and iteration > self.logged_through:
                # now, not when the next step comes
                self.run.log({wandb_key(k): v for k, v in row.items()}, step=int(iteration), commit=True)
                self.logged_through = float(iteration)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step < trainer.max_steps:  # as RecordCheckpoint: it has just saved this evaluation's state
            self.sync()

    def finish(self, summary: Mapping[str, Any] | None = None, exit_code: int = 0) -> None:
        """End the W&B run; ``summary``: the run's own numbers (parameters, wall time, ...) for its summary. Each
        metric's min and last there are those of the whole record (an earlier attempt's rows too, which this
        attempt's W&B fragment does not hold)."""
        if summary:
            per_metric: dict[str, dict[str, float]] = {}
            for row in self.record.rows:
                for key, value in row.items():
                    if key in WANDB_SUMMARY_METRICS:
                        entry = per_metric.setdefault(wandb_key(key), {"min": value, "last": value})
                        entry["min"], entry["last"] = min(entry["min"], value), value
            self.run.summary.update({**per_metric, **dict(summary)})
        self.run.finish(exit_code=exit_code)


def make_wandb_mirror(
    config: Config, run_dir: Path, run_name: str, run_id: str, record: RecordLogger, group: str | None = None
) -> WandbMirror | None:
    """A W&B run named like the paper, grouped by study, tagged, with its config; ``None`` when disabled.

    ``group``: the study's W&B group (a sweep's, stored with its Optuna study); None: ``study_group`` of the
    run's study folder. The study's name plus a short id: two studies of one name are two groups.

    ``run_id`` continues an earlier attempt's W&B run (W&B's resume) when a run resumes from its checkpoint; the
    rows of ``record`` (those kept from the earlier attempt) that W&B does not hold yet are logged at once.

    An online run that cannot reach the server within ``WANDB_INIT_TIMEOUT_S`` falls back to offline,
    so training never waits on the network; offline runs are synced later with ``wandb sync``.
    """
    mode = wandb_mode(config.track.wandb)
    if mode == "disabled":
        return None
    import wandb

    try:  # read before this attempt's own folder exists
        local_through = wandb_logged_through(run_dir, run_id)
    except Exception as e:  # an unreadable log: better a row twice than a row missing
        warnings.warn(f"W&B's earlier logs of {run_name} could not be read ({e}); logging its rows again")
        local_through = None
    m = config.model
    tags = [m.arch, f"depth-{m.depth}", f"shortcut-{m.shortcut}", f"{m.style}-style", config.data.name]
    for attempt in (mode, "offline") if mode == "online" else (mode,):
        try:  # wandb.init itself, not Lightning's WandbLogger: that passes ``anonymous``, which W&B warns about
            run = wandb.init(
                name=run_name,
                id=run_id,
                resume="allow",
                dir=str(Path(run_dir).resolve()),  # W&B's process may have another working directory than this one
                project=config.track.project,
                entity=config.track.entity,
                group=group or study_group(Path(run_dir), config.track.study),
                tags=tags,
                config=wandb_config(config),
                mode=attempt,
                settings=wandb.Settings(init_timeout=WANDB_INIT_TIMEOUT_S, console="off", silent=True),
            )
        except Exception as e:  # wandb raises several kinds of errors for an unreachable server
            warnings.warn(f"W&B {attempt} run could not start ({e}); logging offline instead")
            continue
        run.define_metric("iteration")
        for key in WANDB_SUMMARY_METRICS:  # train/err, val/loss, ...: min and last in the run's summary
            run.define_metric(wandb_key(key), step_metric="iteration", summary="min,last")
        for section in WANDB_SECTIONS:  # the rest of a section (train/loss_max, ...) against the iteration too
            run.define_metric(f"{section}/*", step_metric="iteration")
        run.define_metric("lr", step_metric="iteration", summary="last")
        # Online, the server knows what it holds (a resumed run's next step); offline, the earlier logs on disk do.
        through = local_through if run.offline else (run.starting_step - 1 if run.starting_step else None)
        mirror = WandbMirror(run, record, through)
        mirror.sync()
        return mirror
    return None
