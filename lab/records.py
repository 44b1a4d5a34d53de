"""The run record on disk: where a run's files live and how they are written. No Lightning, no W&B.

``runs_dir/study/run-name/`` holds ``config.yaml`` (resolved), ``metrics.jsonl`` (every evaluation),
``last.ckpt`` (after every evaluation, then at the end) and, written last and atomically, ``summary.json``: a run is finished exactly when its
summary exists.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lab.config import Config

CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, CHECKPOINT_FILE = "config.yaml", "metrics.jsonl", "summary.json", "last.ckpt"
WANDB_ID_FILE = "wandb-id"  # a resumed run continues the same W&B run


def run_dir_for(config: Config, name: str | None = None) -> Path:
    return Path(config.track.runs_dir) / config.track.study / (name or config.run_name)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write, then rename: a reader (or a crash) never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def finished_summary(run_dir: Path, config: Config) -> dict[str, Any] | None:
    """The summary of a finished run of exactly this config in ``run_dir``, if there is one."""
    path = run_dir / SUMMARY_FILE
    if not path.is_file():
        return None
    summary = read_json(path)
    return summary if summary.get("config") == config.to_dict() else None
