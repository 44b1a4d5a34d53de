"""The run record on disk: every file of a run, written and read here only. No Lightning, no W&B.

``runs_dir/study/run-name/`` holds ``config.yaml`` (resolved), ``metrics.jsonl`` (every evaluation),
``last.ckpt`` (after every evaluation, then at the end), ``wandb-id`` (a resumed run continues its W&B run) and,
written last and atomically, ``summary.json``: a run is finished exactly when its summary exists. A run that failed
for a reason of its own (it diverged) has ``failure.json`` instead, and no summary; one that a sweep's pruner
stopped early has ``pruned.json``, and no summary.
A damaged file found when a run is trained again is renamed ``NAME.damaged`` (kept for inspection) and not read again.

``RunRecord(run_dir)`` reads and writes one run's files and owns its lifecycle (running, finished, failed, pruned,
damaged); training (``lab.train``), sweeps and analysis go through it. Its ``metrics`` (``lab.records.metrics``,
where the metrics a run records are named once) and ``checkpoint`` (``lab.records.checkpoint``: the one place torch
is imported, to read one) are files of their own.
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from lab.config import Config, ConfigError, canonical, flat, make_config, quote, read_yaml
from lab.records.checkpoint import Checkpoint, UnsafeCheckpoint
from lab.records.files import is_number, note, read_json, read_text, set_aside, write_atomic, write_json_atomic
from lab.records.folder import RunFolder
from lab.records.metrics import MetricsFile, check_summary


CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, CHECKPOINT_FILE = "config.yaml", "metrics.jsonl", "summary.json", "last.ckpt"
FAILURE_FILE = "failure.json"  # {"run", "reason", "iteration", "config", "finished"}: why a run stopped without a result
WANDB_ID_FILE = "wandb-id"  # a resumed run continues the same W&B run
# {"run", "iteration", "metric", "value", "pruner", "config", "finished"}: a sweep's pruner stopped the run there;
# its checkpoint and metrics up to then are kept (``lab train`` with its config finishes it, and removes this file)
PRUNED_FILE = "pruned.json"
RECORD_FILES = {CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, CHECKPOINT_FILE, FAILURE_FILE, WANDB_ID_FILE, PRUNED_FILE, "wandb"}

class RunFailed(RuntimeError):
    """A run that stopped without a result for a reason of its own (``failure.json`` says why); str: "RUN REASON"."""

    def __init__(self, run: str, reason: str, run_dir: Path) -> None:
        super().__init__(f"{run} {reason}")
        self.run, self.reason, self.run_dir = run, reason, Path(run_dir)


def run_dir_for(config: Config, name: str | None = None) -> Path:
    return Path(config.track.runs_dir) / config.track.study / (name or config.run_name)



def read_summary(path: Path) -> dict[str, Any] | None:
    """A summary file's content; None if it is missing or damaged (not JSON, not a summary with its config)."""
    try:
        summary = read_json(path)
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return summary if isinstance(summary, dict) and isinstance(summary.get("config"), dict) else None


def same_config(recorded: Any, config: Config) -> bool:
    """Whether a recorded config is ``config``'s run (``lab.config.canonical``: milestones as iterations, ``track``
    aside). A field added to lab after the record was written counts at its default there (a run finished before
    ``train.precision`` existed ran at 32 bits): it is not run again."""
    if recorded == config.to_dict():
        return True
    try:
        return isinstance(recorded, dict) and canonical(make_config(recorded)) == canonical(config)
    except (ConfigError, TypeError):  # written by a lab that allowed what this one refuses: not this config
        return False


# One run's record --------------------------------------------------------------------------------------------------

class RunRecord:
    """The files of one run, in ``run_dir``: each written and read by the methods below."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = Path(run_dir)
        self.config_path = self.dir / CONFIG_FILE
        self.metrics_path = self.dir / METRICS_FILE
        self.checkpoint_path = self.dir / CHECKPOINT_FILE
        self.metrics, self.checkpoint = MetricsFile(self.metrics_path), Checkpoint(self.checkpoint_path)
        self.folder = RunFolder(self.dir, RECORD_FILES)
        self.summary_path = self.dir / SUMMARY_FILE
        self.failure_path = self.dir / FAILURE_FILE
        self.wandb_id_path = self.dir / WANDB_ID_FILE
        self.pruned_path = self.dir / PRUNED_FILE

    def __repr__(self) -> str:
        return f"RunRecord({str(self.dir)!r})"

    @classmethod
    def under(cls, study_dir: Path, ended: str) -> list[RunRecord]:
        """The records under ``study_dir`` that ``ended`` "finished" (a summary), "failed" (a failure file) or
        "pruned" (a pruned file), readable or not, by run name."""
        holding = {"finished": SUMMARY_FILE, "failed": FAILURE_FILE, "pruned": PRUNED_FILE}[ended]
        return [cls(p.parent) for p in sorted(Path(study_dir).glob(f"*/{holding}"))]

    # config.yaml

    def write_config(self, config: Config) -> None:
        write_atomic(self.config_path, yaml.safe_dump(config.to_dict(), sort_keys=False))

    def read_config(self) -> dict[str, Any]:
        """The recorded config as written (a mapping), read by lab's hardened YAML loader (``lab.config.read_yaml``:
        sizes, nesting and aliases bounded); raises ``ConfigError`` naming the file."""
        return read_yaml(self.config_path, example="the config.yaml lab writes into a run folder")

    # wandb-id

    def new_wandb_id(self) -> str:
        """A new W&B run id for this run (a fresh start: a new W&B run)."""
        run_id = uuid.uuid4().hex[:12]
        write_atomic(self.wandb_id_path, run_id)
        return run_id

    def wandb_id(self) -> str:
        """This run's W&B run id; a new one if it is lost (the W&B mirror then goes on in a new run)."""
        if self.wandb_id_path.is_file():
            try:
                run_id = read_text(self.wandb_id_path, 1000).strip()
            except (OSError, ValueError):
                run_id = ""
            if run_id.isalnum() and run_id.isascii():  # W&B's ids: anything else is not one lab wrote
                return run_id
        return self.new_wandb_id()

    def resume_point(self, config: Config, name: str) -> tuple[int, list[dict[str, Any]]] | None:
        """(iteration, metrics rows up to it) of an unfinished attempt of exactly this config to resume from, if any.

        A damaged checkpoint or metrics file is set aside (``NAME.damaged``), saying so in one line, and the run
        starts again from iteration 0: never a failure that repeats on every rerun. A run that failed
        (``failure.json``) starts again too.
        """
        ckpt, metrics = self.checkpoint_path, self.metrics_path
        if self.failure_path.exists() or not (ckpt.is_file() and self.config_path.is_file()):
            return None
        try:
            if not same_config(self.read_config(), config):
                return None  # another config: replaced
        except ConfigError:
            return None  # unreadable: not known to be this config
        try:
            resume_at = self.checkpoint.step()
        except Exception as e:  # torch raises many kinds for a torn file; UnsafeCheckpoint for a hostile one
            damaged = set_aside(ckpt)
            reason = " ".join(str(e).split())[:120] or type(e).__name__
            said = str(e) if isinstance(e, UnsafeCheckpoint) else f"{ckpt}: unreadable ({reason})"
            note(f"{said}; set aside as {damaged.name}; {name} starts again from iteration 0")
            return None
        if not metrics.is_file():
            if resume_at == 0:
                return resume_at, []
            note(f"{metrics}: missing, with a checkpoint of iteration {resume_at}; {name} starts again from iteration 0")
            return None
        rows = self.metrics.rows_until(resume_at, name)
        return None if rows is None else (resume_at, rows)

    # summary.json

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Written last and atomically: the run is finished once this file exists."""
        write_json_atomic(self.summary_path, summary)

    def has_summary(self) -> bool:
        return self.summary_path.exists()

    def summary(self) -> dict[str, Any] | None:
        """The summary; None if it is missing or damaged (not JSON, not a summary with its config)."""
        return read_summary(self.summary_path)

    def finished(self, config: Config) -> dict[str, Any] | None:
        """The summary of a finished run of exactly this config, if there is one.

        Never raises for a damaged summary (None: not finished; ``train`` sets it aside and trains the run again).
        """
        summary = self.summary()
        return summary if summary is not None and same_config(summary["config"], config) else None

    def other_config(self, config: Config) -> dict[str, tuple[Any, Any]] | None:
        """The fields (dotted: (recorded, ``config``'s)) in which the run recorded here differs from ``config``; None
        when the folder holds no readable record of another config (none, this config's, or only damaged files)."""
        recorded = None
        for read in (lambda: self.summary()["config"], lambda: read_json(self.failure_path)["config"], self.read_config):
            try:
                recorded = read()
            except (OSError, ValueError, TypeError, KeyError):  # missing or damaged (ConfigError too): the next one
                continue
            if isinstance(recorded, dict):
                break
        if not isinstance(recorded, dict) or same_config(recorded, config):
            return None
        try:
            there = flat(canonical(make_config(recorded)))
        except (ConfigError, TypeError):  # written by a lab that allowed what this one refuses: compared as written
            there = {k: v for k, v in flat(recorded).items() if not k.startswith("track.")}
        here = flat(canonical(config))
        return {k: (there.get(k), here.get(k)) for k in {**there, **here} if there.get(k) != here.get(k)}

    def set_aside_damaged_summary(self) -> str | None:
        """Set a damaged ``summary.json`` aside; the line to say so (how the run goes on is added), or None."""
        path = self.summary_path
        if not path.is_file() or read_summary(path) is not None:
            return None
        damaged = set_aside(path)
        return f"{path}: damaged (not a run summary); set aside as {damaged.name}"

    def summary_problem(self) -> str | None:
        """What is wrong with a finished run's record, if anything: a missing folder or an unreadable summary."""
        summary = self.summary_path
        if not self.dir.is_dir():
            return f"its run folder {self.dir} is gone"
        try:
            data = read_json(summary)
        except FileNotFoundError:
            return f"{summary} is missing"
        except (OSError, ValueError) as e:
            return f"{summary} is not readable ({quote(str(e), 60)})"
        return None if isinstance(data, dict) and "config" in data else f"{summary} is not a run summary"

    def checked_summary(self) -> tuple[dict[str, Any] | None, str | None]:
        """(the summary, None), or (None, what is wrong with it): ``lab.records.metrics.check_summary``."""
        return check_summary(self.summary_path, self.dir.name)

    # failure.json

    def write_failure(self, run: str, reason: str, iteration: Any, config: Config) -> None:
        write_json_atomic(self.failure_path, {
            "run": run,
            "reason": reason,
            "iteration": iteration,
            "config": config.to_dict(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        })

    # pruned.json

    def write_pruned(self, run: str, iteration: int, metric: str, value: float, pruner: str, config: Config) -> None:
        write_json_atomic(self.pruned_path, {
            "run": run,
            "iteration": iteration,
            "metric": metric,
            "value": value,
            "pruner": pruner,
            "config": config.to_dict(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        })

    def pruned(self) -> dict[str, Any] | None:
        """What ``pruned.json`` says (iteration, metric, value, pruner); None without one or with an unreadable one."""
        try:
            data = read_json(self.pruned_path)
        except (OSError, ValueError):
            return None
        if not (isinstance(data, dict) and is_number(data.get("iteration")) and is_number(data.get("value"))
                and isinstance(data.get("metric"), str) and isinstance(data.get("pruner"), str)):
            return None
        return data

    def failure(self) -> str | None:
        """Why the run failed (``failure.json``'s reason, e.g. "diverged at iteration 37"); None if it did not
        say (no failure file, or an unreadable one)."""
        try:
            reason = read_json(self.failure_path).get("reason")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            return None
        return reason if isinstance(reason, str) else None


def finished_summary(run_dir: Path, config: Config) -> dict[str, Any] | None:
    """The summary of a finished run of exactly this config in ``run_dir``, if there is one (``RunRecord.finished``)."""
    return RunRecord(run_dir).finished(config)


def read_failure(run_dir: Path) -> str | None:
    """Why the run in ``run_dir`` failed (``RunRecord.failure``)."""
    return RunRecord(run_dir).failure()
