"""The run record on disk: where a run's files live and how they are written. No Lightning, no W&B.

``runs_dir/study/run-name/`` holds ``config.yaml`` (resolved), ``metrics.jsonl`` (every evaluation),
``last.ckpt`` (after every evaluation, then at the end) and, written last and atomically, ``summary.json``: a run is finished exactly when its
summary exists. A run that failed for a reason of its own (it diverged) has ``failure.json`` instead, and no summary.
A damaged file found when a run is trained again is renamed ``NAME.damaged`` (kept for inspection) and not read again.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lab.config import Config

CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, CHECKPOINT_FILE = "config.yaml", "metrics.jsonl", "summary.json", "last.ckpt"
FAILURE_FILE = "failure.json"  # {"run", "reason", "iteration", "config", "finished"}: why a run stopped without a result
DAMAGED_SUFFIX = ".damaged"  # a damaged record file set aside: last.ckpt.damaged, summary.json.damaged, ...
WANDB_ID_FILE = "wandb-id"  # a resumed run continues the same W&B run


class RunFailed(RuntimeError):
    """A run that stopped without a result for a reason of its own (``failure.json`` says why); str: "RUN REASON"."""

    def __init__(self, run: str, reason: str, run_dir: Path) -> None:
        super().__init__(f"{run} {reason}")
        self.run, self.reason, self.run_dir = run, reason, Path(run_dir)


def run_dir_for(config: Config, name: str | None = None) -> Path:
    return Path(config.track.runs_dir) / config.track.study / (name or config.run_name)


def write_atomic(path: Path, text: str) -> None:
    """Write, then rename: a reader (or a crash) never sees half a file; a failed write (a full disk) leaves no ``.tmp``.

    A ``.tmp`` left by a killed process is simply overwritten.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the name points at it (a power cut, not only a crash)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    """Write, then rename: a reader (or a crash) never sees half a file."""
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def read_summary(path: Path) -> dict[str, Any] | None:
    """A summary file's content; None if it is missing or damaged (not JSON, not a summary with its config)."""
    try:
        summary = read_json(path)
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return summary if isinstance(summary, dict) and isinstance(summary.get("config"), dict) else None


def finished_summary(run_dir: Path, config: Config) -> dict[str, Any] | None:
    """The summary of a finished run of exactly this config in ``run_dir``, if there is one.

    Never raises for a damaged summary (None: not finished; ``train`` sets it aside and trains the run again).
    """
    summary = read_summary(Path(run_dir) / SUMMARY_FILE)
    return summary if summary is not None and same_config(summary["config"], config) else None


def same_config(recorded: Any, config: Config) -> bool:
    """Whether a recorded config is ``config``. A field added to lab after the record was written counts at its
    default there (a run finished before ``train.precision`` existed ran at 32 bits): it is not run again."""
    from lab.config import ConfigError, make_config

    if recorded == config.to_dict():
        return True
    try:
        return isinstance(recorded, dict) and make_config(recorded).to_dict() == config.to_dict()
    except (ConfigError, TypeError):  # written by a lab that allowed what this one refuses: not this config
        return False


def read_failure(run_dir: Path) -> str | None:
    """Why the run in ``run_dir`` failed (``failure.json``'s reason, e.g. "diverged at iteration 37"); None if it did not
    say (no failure file, or an unreadable one)."""
    try:
        reason = read_json(Path(run_dir) / FAILURE_FILE).get("reason")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return None
    return reason if isinstance(reason, str) else None


def set_aside(path: Path) -> Path:
    """Rename a damaged record file to ``NAME.damaged`` (replacing an older one), kept for inspection."""
    target = path.with_name(path.name + DAMAGED_SUFFIX)
    os.replace(path, target)
    return target
