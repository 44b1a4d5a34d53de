"""``lab analyze``: summary and means tables (CSV, Markdown, LaTeX) and figures (PDF, PNG) of one study."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from analysis import figures
from analysis.runs import load_runs, means


def provenance(study: str, runs: pd.DataFrame) -> str:
    """What was run, how many seeds, on what hardware, at which code version: printed under every figure."""
    seeds = runs.groupby(["arch", "depth", "shortcut"])["seed"].nunique()
    seed_text = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"
    codes = ", ".join(sorted(set(runs["code_version"].astype(str))))
    devices = ", ".join(sorted(set(runs["device_name"].astype(str))))
    torches = ", ".join(sorted(set(runs["torch"].astype(str))))
    return (
        f"{study}: {len(runs)} runs on {runs['dataset'].iloc[0]}, {seed_text} seeds per net, "
        f"{int(runs['steps'].max())} iterations; {devices}; torch {torches}; code {codes}"
    )


def _markdown(table: pd.DataFrame) -> str:
    cells = [[f"{v:.2f}" if isinstance(v, float) else str(v) for v in row] for row in table.itertuples(index=False)]
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells]) + "\n"


def _save(fig: plt.Figure, out: Path, stem: str) -> list[Path]:
    paths = [out / f"{stem}.pdf", out / f"{stem}.png"]
    for path in paths:
        fig.savefig(path, dpi=150)
    plt.close(fig)
    return paths


def write_report(runs_dir: Path, study: str, out: Path) -> list[Path]:
    """Write every table and figure of ``study`` into ``out``; returns the paths written."""
    runs, curves = load_runs(runs_dir, study)
    out.mkdir(parents=True, exist_ok=True)
    table = means(runs)
    written = [out / "summary.csv", out / "means.csv", out / "means.md", out / "means.tex"]
    runs.to_csv(written[0], index=False, float_format="%.4g")
    table.to_csv(written[1], index=False, float_format="%.4g")
    written[2].write_text(_markdown(table))
    written[3].write_text(table.to_latex(index=False, float_format="%.2f", na_rep="--"))
    note = provenance(study, runs)
    written += _save(figures.degradation(curves, note), out, "degradation")
    written += _save(figures.error_vs_depth(runs, note), out, "error_vs_depth")
    return written
