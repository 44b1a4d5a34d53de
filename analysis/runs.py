"""Load run records (``runs/STUDY/*/summary.json`` and ``metrics.jsonl``) into pandas."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from lab.config import ConfigError
from lab.records import METRICS_FILE, SUMMARY_FILE

NET_KEYS = ["arch", "depth", "shortcut"]  # one net of a study; its runs differ only by seed
COLUMNS = [
    "run", *NET_KEYS, "seed", "params", "train_err", "val_err", "test_err", "steps", "wall_s", "best_val_err", "style",
    "dataset", "images_per_s", "code_version", "device_name", "torch", "finished", "run_dir",
]


def _row(path: Path) -> dict:
    summary = json.loads(path.read_text())
    hardware = summary.get("hardware", {})
    # Records written before summaries carried their time: summary.json is written last and once (lab.records).
    mtime = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    extra = {"device_name": hardware.get("device_name"), "torch": hardware.get("torch"),
             "finished": summary.get("finished", mtime),
             "run_dir": str(path.parent)}
    return {k: {**summary, **extra}.get(k) for k in COLUMNS}


def _history(path: Path, run: str) -> list[dict]:
    with open(path) as f:
        return [{"run": run, **json.loads(line)} for line in f if line.strip()]


def load_runs(runs_dir: Path, study: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per finished run, one row per evaluation of every run). Unfinished runs are left out.

    ``runs`` carries ``run_dir`` (where the record lies, for checkpoints) and ``finished`` (UTC); in
    ``curves`` the ``iteration`` column is an integer.
    """
    study_dir = Path(runs_dir) / study
    summaries = sorted(study_dir.glob(f"*/{SUMMARY_FILE}"))
    if not summaries:
        raise ConfigError(
            f"no finished runs under {study_dir}: run `lab sweep {study}` first, or pass --runs-dir"
        )
    rows = [_row(path) for path in summaries]
    history = [h for path, row in zip(summaries, rows) for h in _history(path.parent / METRICS_FILE, row["run"])]
    runs = pd.DataFrame(rows, columns=COLUMNS).sort_values([*NET_KEYS, "seed"], ignore_index=True)
    curves = pd.DataFrame(history).merge(runs[["run", *NET_KEYS, "seed"]], on="run")
    curves["iteration"] = curves["iteration"].round().astype(int)  # logged as a float by Lightning
    return runs, curves.sort_values(["run", "iteration"], ignore_index=True)
