"""The run record on disk: every file of a run, written and read here only. No Lightning, no W&B.

``runs_dir/study/run-name/`` holds ``config.yaml`` (resolved), ``metrics.jsonl`` (every evaluation),
``last.ckpt`` (after every evaluation, then at the end), ``wandb-id`` (a resumed run continues its W&B run) and,
written last and atomically, ``summary.json``: a run is finished exactly when its summary exists. A run that failed
for a reason of its own (it diverged) has ``failure.json`` instead, and no summary; one that a sweep's pruner
stopped early has ``pruned.json``, and no summary.
A damaged file found when a run is trained again is renamed ``NAME.damaged`` (kept for inspection) and not read again.

``RunRecord(run_dir)`` reads and writes one run's files; training (``lab.train``, ``lab.train.tracking``), sweeps and
analysis go through it, and the metrics a run records are named here once (``FINAL_METRICS``, ``SUMMARY_METRICS``).
torch is imported only to read a checkpoint.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from lab.config import Config, ConfigError, canonical, flat, make_config, quote, read_yaml
from lab.records.files import (
    DAMAGED_SUFFIX, append_line, check_folder, is_number, loads_json, note, read_json, read_text, set_aside, why,
    write_atomic, write_json_atomic,
)


CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, CHECKPOINT_FILE = "config.yaml", "metrics.jsonl", "summary.json", "last.ckpt"
FAILURE_FILE = "failure.json"  # {"run", "reason", "iteration", "config", "finished"}: why a run stopped without a result
WANDB_ID_FILE = "wandb-id"  # a resumed run continues the same W&B run
# {"run", "iteration", "metric", "value", "pruner", "config", "finished"}: a sweep's pruner stopped the run there;
# its checkpoint and metrics up to then are kept (``lab train`` with its config finishes it, and removes this file)
PRUNED_FILE = "pruned.json"
RECORD_FILES = {CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, CHECKPOINT_FILE, FAILURE_FILE, WANDB_ID_FILE, PRUNED_FILE, "wandb"}

# The metrics of a run, named once. Errors are percentages; each is the last evaluation's in the summary.
ERRORS = ("train_err", "val_err", "test_err")
LOSSES = ("train_loss", "val_loss", "test_loss")
FINAL_METRICS = (*ERRORS, *LOSSES)  # the summary's final metrics
BEST_VAL_ERR = "best_val_err"  # the lowest val_err of any evaluation
SUMMARY_METRICS = (*ERRORS, BEST_VAL_ERR, *LOSSES)  # every metric of a summary: what a sweep can select
# What readers (tables, figures) take from every summary, and its config (without which `lab sweep` runs it again).
SUMMARY_KEYS = ("run", "arch", "depth", "shortcut", "seed", "dataset", "params", *ERRORS, "steps", "config")
SUMMARY_NUMBERS = ("depth", "seed", "params", *ERRORS, "steps")

CHECKPOINT_KEYS = ("global_step", "state_dict", "optimizer_states", "lr_schedulers", "loops", "callbacks")


class UnsafeCheckpoint(ValueError):
    """A checkpoint that ``torch.load(weights_only=True)`` refuses: it holds objects that would run code when read."""


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
        self.summary_path = self.dir / SUMMARY_FILE
        self.failure_path = self.dir / FAILURE_FILE
        self.wandb_id_path = self.dir / WANDB_ID_FILE
        self.pruned_path = self.dir / PRUNED_FILE

    def __repr__(self) -> str:
        return f"RunRecord({str(self.dir)!r})"

    @classmethod
    def finished_under(cls, study_dir: Path) -> list[RunRecord]:
        """The records under ``study_dir`` that have a summary (readable or not), by run name."""
        return [cls(p.parent) for p in sorted(Path(study_dir).glob(f"*/{SUMMARY_FILE}"))]

    @classmethod
    def pruned_under(cls, study_dir: Path) -> list[RunRecord]:
        """The records under ``study_dir`` that a sweep's pruner stopped (a pruned file), by run name."""
        return [cls(p.parent) for p in sorted(Path(study_dir).glob(f"*/{PRUNED_FILE}"))]

    @classmethod
    def failed_under(cls, study_dir: Path) -> list[RunRecord]:
        """The records under ``study_dir`` that have a failure file, by run name."""
        return [cls(p.parent) for p in sorted(Path(study_dir).glob(f"*/{FAILURE_FILE}"))]

    # The folder

    def check_folders(self, follow_symlinks: bool = False) -> None:
        """Refuse (``ConfigError``, one line) a run folder, or its study folder, that is a symbolic link (training would
        write and delete where it points: unless ``follow_symlinks``, ``track.follow_symlinks``) or is not a folder."""
        check_folder(self.dir.parent, "study folder", follow_symlinks)
        check_folder(self.dir, "run folder", follow_symlinks)

    def set_aside_links(self) -> None:
        """Set aside (``NAME.damaged``, one line each) every symbolic link directly in the run folder: lab writes
        none, and writing through one (``metrics.jsonl`` appended to, ``wandb/`` filled) would write outside it."""
        if not self.dir.is_dir():
            return
        for path in sorted(self.dir.iterdir()):
            if path.is_symlink() and not path.name.endswith(DAMAGED_SUFFIX):
                target = os.readlink(path)
                damaged = set_aside(path)
                note(f"{path}: a symbolic link (to {target}), which lab never writes; set aside as {damaged.name}")

    def clear(self) -> None:
        """Empty the run folder for a fresh start, keeping set-aside damaged files (for inspection; never read again)."""
        if not self.dir.exists():
            self.dir.mkdir(parents=True)
            return
        for path in self.dir.iterdir():
            if path.name.endswith(DAMAGED_SUFFIX):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()

    def not_a_run(self) -> bool:
        """Whether ``dir`` is something else than a run folder (a file, or a folder such as a study's ``analysis/``
        holding none of a run record's files), which training there would wipe."""
        if not self.dir.exists():
            return False
        if not self.dir.is_dir():
            return True
        names = {p.name for p in self.dir.iterdir()}
        return bool(names) and not any(n in RECORD_FILES or n.endswith(DAMAGED_SUFFIX) for n in names)

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

    # metrics.jsonl

    def write_rows(self, rows: list[dict[str, Any]]) -> None:
        """Replace the metrics with ``rows`` (those of an earlier attempt kept up to its checkpoint), atomically."""
        write_atomic(self.metrics_path, "".join(json.dumps(r) + "\n" for r in rows))

    def append_row(self, row: dict[str, Any]) -> None:
        """Append one row (one line, one write; a failed write leaves no torn line)."""
        append_line(self.metrics_path, json.dumps(row) + "\n")

    def rows_until(self, resume_at: int, name: str) -> list[dict[str, Any]] | None:
        """The rows of ``metrics.jsonl`` up to iteration ``resume_at``; None when one of them is unreadable.

        Rows are appended in iteration order, so an unreadable line that comes after the row of ``resume_at``
        (a torn last line: a crash mid-write) is past the checkpoint, and is dropped: training logs it again.
        One before it is needed, and lost: the file is set aside and the run starts again (None).
        """
        path = self.metrics_path
        rows: list[dict[str, Any]] = []
        last = None  # the iteration of the last readable row
        for number, line in enumerate(read_text(path).splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = loads_json(line)
                if not isinstance(row, dict) or not isinstance(row.get("iteration", 0), (int, float)):
                    raise ValueError("not a row")
            except ValueError:
                if last is not None and last >= resume_at:
                    note(f"{path}: line {number} is unreadable (torn by a crash?); it comes after the checkpoint of "
                         f"iteration {resume_at}, so it is dropped and {name} resumes")
                    break
                damaged = set_aside(path)
                note(f"{path}: line {number} is unreadable; set aside as {damaged.name}; "
                     f"{name} starts again from iteration 0")
                return None
            last = row.get("iteration", 0)
            if last <= resume_at:
                rows.append(row)
        return rows

    def history(self) -> tuple[list[dict[str, Any]], list[str]]:
        """(every readable row of ``metrics.jsonl``, what is wrong with the others): a line that is not a row
        (torn by a crash, say) is a problem, and so is a missing or unreadable file."""
        path = self.metrics_path
        try:
            text = read_text(path)
        except FileNotFoundError:
            return [], [f"{path} is missing"]
        except (OSError, ValueError) as e:
            return [], [f"{path} is not readable ({why(e)})"]
        rows, problems = [], []
        for number, line in enumerate(text.split("\n"), start=1):  # numbered as editors and `sed -n` count lines
            if not line.strip():
                continue
            try:
                row = loads_json(line)
            except ValueError as e:
                problem = f"{e.msg}: column {e.colno}" if isinstance(e, json.JSONDecodeError) else why(e)
                problems.append(f"{path} line {number} is not readable ({problem})")
                continue
            if not (isinstance(row, dict) and "iteration" in row and all(is_number(v) for v in row.values())
                    and math.isfinite(row["iteration"])):
                problems.append(f"{path} line {number} is not a metrics row (a JSON object of numbers with an iteration)")
                continue
            rows.append(row)
        return rows, problems

    # last.ckpt

    def load_checkpoint(self, map_location: Any = "cpu") -> Any:
        """The checkpoint, as ``torch.load(weights_only=True)`` reads it (imports torch): tensors, containers and
        numbers only, never code. A checkpoint that holds anything else (a pickled object, which would run code as
        it is read) raises ``UnsafeCheckpoint``; a torn one raises what torch raises."""
        import pickle

        import torch

        try:
            return torch.load(self.checkpoint_path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as e:  # what torch raises for a global outside the allow-list
            if "weights only" not in str(e).lower():
                raise
            found = re.search(r"GLOBAL (\S+)", str(e))
            what = f"a pickled {found.group(1)}" if found else "pickled objects"
            raise UnsafeCheckpoint(f"{self.checkpoint_path}: holds {what}, which would run code as it is read, "
                                   f"not only weights; refused unread") from None

    def checkpoint_step(self) -> int:
        """The iteration of the checkpoint, read whole (a torn file fails here, and not halfway into a resume)."""
        state = self.load_checkpoint("cpu")
        if not isinstance(state, dict) or not all(k in state for k in CHECKPOINT_KEYS):
            raise ValueError("not a complete Lightning checkpoint")
        return int(state["global_step"])

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
            resume_at = self.checkpoint_step()
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
        rows = self.rows_until(resume_at, name)
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
        """(the summary, None), or (None, what is wrong with it): every key of ``SUMMARY_KEYS`` there, the
        numbers numbers, and the run this folder's."""
        path = self.summary_path
        try:
            summary = read_json(path)
        except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            return None, f"{path} is not readable ({why(e)})"
        if not isinstance(summary, dict):
            return None, f"{path} is not a summary (a JSON {type(summary).__name__}, not an object)"
        missing = [k for k in SUMMARY_KEYS if k not in summary]
        if missing:
            return None, f"{path} is not a summary (no {', '.join(missing)})"
        wrong = [k for k in SUMMARY_NUMBERS if not is_number(summary[k])]
        if wrong:
            return None, f"{path} is not a summary ({', '.join(f'{k} is {summary[k]!r}' for k in wrong)}, not a number)"
        if not isinstance(summary["config"], dict):
            return None, f"{path} is not a summary (its config is not an object)"
        if summary["run"] != self.dir.name:  # a copied folder would count its run twice
            return None, f"{path} is the summary of run {summary['run']!r}, not of {self.dir.name} (a copied folder?)"
        return summary, None

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
