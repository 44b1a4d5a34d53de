"""Load run records (``runs/STUDY/*/summary.json`` and ``metrics.jsonl``) into pandas."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from lab.config import ConfigError
from lab.records import METRICS_FILE, SUMMARY_FILE

COLUMNS = [
    "run", "arch", "depth", "shortcut", "seed", "params", "train_err", "val_err", "test_err",
    "steps", "wall_s", "best_val_err", "dataset", "images_per_s", "code_version", "device_name", "torch",
]


def load_runs(runs_dir: Path, study: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per finished run, one row per evaluation of every run). Unfinished runs are left out."""
    study_dir = Path(runs_dir) / study
    summaries = sorted(study_dir.glob(f"*/{SUMMARY_FILE}"))
    if not summaries:
        raise ConfigError(
            f"no finished runs under {study_dir}: run `lab sweep {study}` first, or pass --runs-dir"
        )
    rows, history = [], []
    for path in summaries:
        summary = json.loads(path.read_text())
        summary["device_name"] = summary.get("hardware", {}).get("device_name")
        summary["torch"] = summary.get("hardware", {}).get("torch")
        rows.append({k: summary.get(k) for k in COLUMNS})
        with open(path.parent / METRICS_FILE) as f:
            history.extend({"run": summary["run"], **json.loads(line)} for line in f if line.strip())
    runs = pd.DataFrame(rows, columns=COLUMNS).sort_values(["arch", "depth", "shortcut", "seed"], ignore_index=True)
    curves = pd.DataFrame(history).merge(runs[["run", "arch", "depth", "shortcut", "seed"]], on="run")
    return runs, curves


def means(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds for every arch x depth x shortcut."""
    grouped = runs.groupby(["arch", "depth", "shortcut"])
    table = grouped[["train_err", "val_err", "test_err"]].agg(["mean", "std"])
    table.columns = [f"{metric}_{stat}" for metric, stat in table.columns]
    table.insert(0, "params", grouped["params"].first())
    table.insert(0, "seeds", grouped["seed"].nunique())
    return table.reset_index()
