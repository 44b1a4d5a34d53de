"""The paper's figures from run records: degradation curves (He 2015, Figure 6) and error vs depth."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # figures go to files; no screen needed
import matplotlib.pyplot as plt
import pandas as pd

from lab.nets import run_name
from lab.reference import paper_test_err

ARCH_TITLES = {"plain": "plain", "resnet": "ResNet"}


def _colours(depths: list[int]) -> dict[int, tuple]:
    cmap = plt.get_cmap("viridis")
    return {d: cmap(i / max(1, len(depths) - 1) * 0.85) for i, d in enumerate(sorted(depths))}


def degradation(curves: pd.DataFrame, provenance: str) -> plt.Figure:
    """Training error (thin, dashed) and test error (bold) vs iterations; a panel per arch, a colour per depth.

    Curves are means over seeds at each evaluation.
    """
    archs = [a for a in ARCH_TITLES if a in set(curves["arch"])]
    colours = _colours(curves["depth"].unique().tolist())
    fig, axes = plt.subplots(1, len(archs), figsize=(5.2 * len(archs), 4), sharey=True, squeeze=False)
    for ax, arch in zip(axes[0], archs):
        part = curves[curves["arch"] == arch]
        for (depth, shortcut), g in part.groupby(["depth", "shortcut"]):
            mean = g.groupby("iteration")[["train_err", "test_err"]].mean()
            c = colours[depth]
            ax.plot(mean.index, mean["train_err"], color=c, lw=1, ls="--")
            ax.plot(mean.index, mean["test_err"], color=c, lw=2.2, label=run_name(arch, depth, shortcut))
        ax.set_title(ARCH_TITLES[arch])
        ax.set_xlabel("iterations")
        ax.grid(alpha=0.3)
        ax.legend(title="dashed: train, bold: test", fontsize=8, title_fontsize=8)
    axes[0][0].set_ylabel("error (%)")
    axes[0][0].set_ylim(bottom=0)
    _footer(fig, provenance)
    return fig


def error_vs_depth(runs: pd.DataFrame, provenance: str) -> plt.Figure:
    """Final training and test error vs depth, plain vs residual: mean over seeds, bars for min..max."""
    dataset = runs["dataset"].iloc[0]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), squeeze=False)
    for ax, metric in zip(axes[0], ("train_err", "test_err")):
        for (arch, shortcut), g in runs.groupby(["arch", "shortcut"]):
            stats = g.groupby("depth")[metric].agg(["mean", "min", "max"])
            err = [stats["mean"] - stats["min"], stats["max"] - stats["mean"]]
            label = ARCH_TITLES.get(arch, arch) + (f" ({shortcut})" if arch == "resnet" and shortcut != "A" else "")
            ax.errorbar(stats.index, stats["mean"], yerr=err, marker="o", capsize=3, label=label)
            ref = paper_test_err(arch, dataset) if metric == "test_err" else {}
            if ref:
                ax.plot(list(ref), list(ref.values()), ls=":", marker="x", color="grey", label=f"{label}, He 2015")
        ax.set_xlabel("depth (weighted layers)")
        ax.set_ylabel(f"final {metric.replace('_err', '')} error (%)")
        ax.set_xticks(sorted(runs["depth"].unique()))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(title="mean over seeds, bars: min to max", fontsize=8, title_fontsize=8)
    _footer(fig, provenance)
    return fig


def _footer(fig: plt.Figure, provenance: str) -> None:
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.text(0.01, 0.01, provenance, fontsize=7, color="dimgray")
