"""The paper's figures from run records, drawn at the size they are printed.

Degradation curves (He 2015, Figure 6), error vs depth (Table 6 / Figure 6) and layer responses
(Figure 7). Every figure comes in two widths, one column (3.3 in) and two columns (6.9 in) of a
two-column paper, with no text under 7 pt at that size; legends sit outside the axes, and the
provenance goes into a caption file beside the figure, not into it (``analysis.report``).
"""
from __future__ import annotations

import io
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import matplotlib

matplotlib.use("Agg")  # figures go to files; no screen needed
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from analysis.runs import NET_KEYS
from analysis.tables import plain_first
from lab.records import write_atomic
from lab.reference import paper_test_err

WIDTHS_IN = {1: 3.3, 2: 6.9}  # one and two columns of a two-column paper (IEEE/ACM/CVPR: 3.3 and 6.9 in)
FONT_PT, SMALL_PT = 8, 7  # 7 pt is the smallest text a journal accepts
PAPER_RC = {
    # TrueType (Type 42) fonts, embedded: publishers' checkers reject Type 3.
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "font.size": FONT_PT,
    "axes.titlesize": FONT_PT,
    "axes.labelsize": FONT_PT,
    "xtick.labelsize": SMALL_PT,
    "ytick.labelsize": SMALL_PT,
    "legend.fontsize": SMALL_PT,
    "legend.title_fontsize": SMALL_PT,
    "axes.linewidth": 0.6,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "grid.linewidth": 0.4,
    "grid.alpha": 0.35,
    "legend.frameon": False,
    "savefig.dpi": 300,
}
TRAIN_LW, TEST_LW = 0.9, 1.8  # Figure 6: "dashed lines denote training error, and bold lines denote testing error"
DEPTH_LW = (0.7, 1.3)  # line widths are scaled by this from the shallowest net of a panel to the deepest
# Figure 6's y-range for CIFAR-10 is 0-20%; elsewhere (digits: plain nets near 50%, ResNets near 0.1%) a symlog
# axis, linear below 1% and logarithmic above, shows the plain nets' gap and the ResNets' differences at once.
PAPER_YLIM = {"cifar10": (0, 20)}
SYMLOG_BELOW = 1.0  # %
FAMILY_CMAPS = {("plain", "A"): "Oranges", ("resnet", "A"): "Blues", ("resnet", "B"): "Greens", ("resnet", "C"): "Purples",
                # He 2016's shortcut variants (Table 1)
                ("resnet", "gated"): "Reds", ("resnet", "shortcut_gated"): "PuRd", ("resnet", "scaled"): "YlOrBr",
                ("resnet", "dropout"): "Greys"}
# how a panel names a shortcut: He 2015's options by letter, He 2016's variants by what they do
SHORTCUT_TITLES = {"gated": "exclusive gating", "shortcut_gated": "shortcut-only gating", "scaled": "scaled by 0.5",
                   "dropout": "dropout on the shortcut"}


@contextmanager
def paper_style() -> Iterator[None]:
    """Font sizes and Type 42 fonts; also needed around ``savefig``, where the font type is read."""
    with plt.rc_context(PAPER_RC):
        yield


def save(fig: plt.Figure, stem: Path) -> list[Path]:
    """``stem.pdf`` (vector, TrueType fonts) and ``stem.png`` (300 dpi), at the figure's own size."""
    paths = [stem.with_suffix(".pdf"), stem.with_suffix(".png")]
    with paper_style():
        for path in paths:
            data = io.BytesIO()
            fig.savefig(data, format=path.suffix[1:])
            write_atomic(path, data.getvalue())  # never through a link planted in the folder (lab.records)
    plt.close(fig)
    return paths


def _family(arch: str, shortcut: str) -> tuple[str, str]:
    """Plain nets are one family whatever shortcut their config names (they have none)."""
    return (arch, "A") if arch == "plain" else (arch, shortcut)


def family_title(arch: str, shortcut: str, shortcuts: int) -> str:
    if arch == "plain":
        return "plain"
    if shortcut in SHORTCUT_TITLES:
        return f"ResNet, {SHORTCUT_TITLES[shortcut]}"
    return "ResNet" if shortcuts == 1 else f"ResNet, option {shortcut}"


def family_colour(arch: str, shortcut: str, shade: float = 0.75) -> tuple:
    """Plain in oranges, ResNets in blues (A), greens (B), purples (C), He 2016's variants in reds, pinks, browns and
    greys; darker is deeper."""
    return plt.get_cmap(FAMILY_CMAPS.get(_family(arch, shortcut), "Greys"))(shade)


def paper_label(arch: str, depth: int, shortcut: str, shortcuts: int = 1) -> str:
    """Names as the paper's figures print them: ``plain-20``, ``ResNet-20``; ``ResNet-20-B`` where a study has
    several shortcut options."""
    if arch == "plain":
        return f"plain-{depth}"
    return f"ResNet-{depth}" + (f"-{shortcut}" if shortcuts > 1 else "")


def _depth_rank(depth: int, depths: list[int]) -> float:
    """0 for the shallowest net of a family, 1 for the deepest: the deepest is drawn darkest and thickest."""
    depths = sorted(set(depths))
    return depths.index(depth) / (len(depths) - 1) if len(depths) > 1 else 1.0


def _grid(panels: int, columns: int) -> tuple[int, int]:
    """(rows, cols) of panels: side by side at two columns, stacked (or 2 across) at one."""
    across = min(panels, 4) if columns == 2 else (1 if panels <= 2 else 2)
    return -(-panels // across), across


def _figure(panels: int, columns: int, panel_height_in: float, legend_in: float, **kw) -> tuple[plt.Figure, np.ndarray]:
    rows, cols = _grid(panels, columns)
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTHS_IN[columns], rows * panel_height_in + legend_in),
                             squeeze=False, layout="constrained", **kw)
    for ax in axes.flat[panels:]:
        ax.set_visible(False)
    for ax in axes.flat:
        ax.tick_params(labelsize=SMALL_PT)  # stored on the axis: ticks made at draw time keep 7 pt
        ax.grid(True)
    return fig, axes.flat[:panels]


def _legend_below(fig: plt.Figure, handles: list, ncol: int) -> None:
    """Outside every axes, under them: a legend never covers a curve; in as many columns as fit the figure's width
    (a character about 0.6 of the font size wide, a handle and its spacing about 4 characters)."""
    longest = max((len(h.get_label()) for h in handles), default=0)
    while ncol > 1 and ncol * (0.6 * longest + 4) * SMALL_PT / 72 > fig.get_figwidth():
        ncol -= 1
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, fontsize=SMALL_PT, handlelength=2.0,
               columnspacing=1.2)


def _families(frame: pd.DataFrame) -> list[tuple[str, str]]:
    keys = {_family(a, s) for a, s in zip(frame["arch"], frame["shortcut"])}
    return sorted(keys, key=lambda k: (k[0] != "plain", k[1]))


def degradation(curves: pd.DataFrame, columns: int = 2) -> plt.Figure:
    """He 2015, Figure 6: training error (dashed) and test error (bold) vs iterations.

    A panel per family (plain, ResNet A/B/C), a shade per depth (darker and thicker for deeper nets), each net
    named as in the paper (``plain-20``, ``ResNet-20``); lines are means over seeds, the shaded bands span
    min..max over seeds. The y-range is the paper's 0-20% on CIFAR-10; elsewhere a symlog axis (``error_axis``).
    """
    families = _families(curves)
    n_short = curves.loc[curves["arch"] == "resnet", "shortcut"].nunique() or 1
    dataset = curves["dataset"].iloc[0] if "dataset" in curves else None
    keys = []
    with paper_style():
        fig, axes = _figure(len(families), columns, 1.55 if columns == 1 else 2.0, 0.6, sharey=True, sharex=True)
        for ax, (arch, shortcut) in zip(axes, families):
            part = curves[(curves["arch"] == arch) & ((curves["shortcut"] == shortcut) | (arch == "plain"))]
            depths = part["depth"].unique().tolist()
            for depth, g in part.groupby("depth"):
                rank = _depth_rank(depth, depths)
                colour = family_colour(arch, shortcut, 0.45 + 0.5 * rank)
                scale = DEPTH_LW[0] + (DEPTH_LW[1] - DEPTH_LW[0]) * rank
                _seed_band(ax, g, colour, scale)
                keys.append(Line2D([], [], color=colour, lw=TEST_LW * scale, label=paper_label(arch, depth, shortcut, n_short)))
            ax.set_title(family_title(arch, shortcut, n_short))
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
        error_axis(axes[0], dataset, curves[["train_err", "test_err"]].to_numpy())
        _label_outer(axes, _grid(len(families), columns), "iterations", "error (%)")
        keys += [Line2D([], [], color="black", lw=TRAIN_LW, ls="--", label="train"),
                 Line2D([], [], color="black", lw=TEST_LW, label="test"),
                 Patch(color="black", alpha=0.2, lw=0, label="min–max over seeds")]
        narrow = max(len(k.get_label()) for k in keys) <= 10  # "ResNet-110-B" needs more room at one column
        _legend_below(fig, keys, ncol=min(len(keys), 6 if columns == 2 else (3 if narrow else 2)))
    return fig


def error_axis(ax: plt.Axes, dataset: str | None, values: np.ndarray) -> None:
    """The y-axis of error curves (shared by the panels): Figure 6's 0-20% on CIFAR-10; elsewhere symlog from 0 to
    the largest error drawn, so 50% and 0.1% both read."""
    if dataset in PAPER_YLIM:
        ax.set_ylim(*PAPER_YLIM[dataset])
        return
    top = float(np.nanmax(values)) if np.isfinite(values).any() else 100.0
    ax.set_yscale("symlog", linthresh=SYMLOG_BELOW, linscale=0.6)
    ax.set_ylim(0, min(100.0, max(2.0, top * 1.15)))
    ticks = [t for t in (0, 0.5, 1, 2, 5, 10, 20, 50, 100) if t <= ax.get_ylim()[1]]
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    ax.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def _label_outer(axes: np.ndarray, grid: tuple[int, int], xlabel: str, ylabel: str) -> None:
    """Axis labels on the bottom row and the left column only (the panels share their axes)."""
    rows, cols = grid
    for i, ax in enumerate(axes):
        if i + cols >= len(axes):
            ax.set_xlabel(xlabel)
            ax.tick_params(labelbottom=True)  # nothing below it: its shared ticks need labels
        if i % cols == 0:
            ax.set_ylabel(ylabel)


def _seed_band(ax: plt.Axes, g: pd.DataFrame, colour: tuple, scale: float = 1.0) -> None:
    """Mean over seeds as a line, min..max over seeds as a band: train dashed and thin, test bold (widths x ``scale``)."""
    for metric, lw, ls, alpha in (("train_err", TRAIN_LW, "--", 0.12), ("test_err", TEST_LW, "-", 0.22)):
        s = g.groupby("iteration")[metric].agg(["mean", "min", "max"])
        ax.fill_between(s.index, s["min"], s["max"], color=colour, alpha=alpha, lw=0)
        ax.plot(s.index, s["mean"], color=colour, lw=lw * scale, ls=ls, gid=metric)


def error_vs_depth(runs: pd.DataFrame, columns: int = 2) -> plt.Figure:
    """Final training and test error vs depth per family: mean over seeds, bars min..max; He 2015 overlaid on CIFAR-10."""
    dataset = runs["dataset"].iloc[0]
    families = _families(runs)
    n_short = runs.loc[runs["arch"] == "resnet", "shortcut"].nunique() or 1
    handles = []
    depths = runs["depth"].unique()
    dodge = 0.012 * max(depths.max() - depths.min(), 40)  # side by side at one depth: bars never hide each other
    with paper_style():
        fig, axes = _figure(2, columns, 1.7 if columns == 1 else 2.1, 0.4)
        for ax, metric in zip(axes, ("train_err", "test_err")):
            for i, (arch, shortcut) in enumerate(families):
                part = runs[(runs["arch"] == arch) & ((runs["shortcut"] == shortcut) | (arch == "plain"))]
                s = part.groupby("depth")[metric].agg(["mean", "min", "max"])
                colour = family_colour(arch, shortcut)
                line = ax.errorbar(s.index + dodge * (i - (len(families) - 1) / 2), s["mean"], yerr=[s["mean"] - s["min"], s["max"] - s["mean"]], color=colour,
                                   marker="o", ms=3, lw=1.2, capsize=2, label=family_title(arch, shortcut, n_short))
                ref = paper_test_err(arch, dataset) if metric == "test_err" and shortcut == "A" else {}
                ref = {d: e for d, e in ref.items() if depths.min() <= d <= depths.max()}  # the depths we ran
                if ref:
                    ax.plot(list(ref), list(ref.values()), ls=":", marker="x", ms=3, lw=1, color=colour,
                            label=f"{family_title(arch, shortcut, n_short)}, He 2015")
                if metric == "train_err":
                    handles.append(line)
            ax.set_xlabel("depth (weighted layers)")
            ax.set_ylabel(f"final {metric.removesuffix('_err')} error (%)")
            ax.set_xticks(sorted(runs["depth"].unique()))
            ax.set_ylim(bottom=0)
        handles += [h for h in axes[1].get_legend_handles_labels()[0] if "He 2015" in h.get_label()]
        _legend_below(fig, handles, ncol=min(len(handles), 4 if columns == 2 else 2))
    return fig


LOG_SPAN = 10.0  # Figure 7 on a log axis when the responses drawn span more than this factor


def layer_responses(responses: pd.DataFrame, columns: int = 2, log_y: bool | None = None) -> plt.Figure:
    """He 2015, Figure 7: std of each 3x3 layer's response, in the nets' order (top) and sorted (bottom).

    A line per net (mean over its seeds; sorted per seed, then averaged by rank), named as in the paper
    (``plain-20``, ``ResNet-20``); plain nets dashed in oranges, ResNets in blues, darker for deeper nets. As in
    Figure 7, the ResNets are those with option-A shortcuts when the study has them (options B and C stay in the
    data; greens and purples otherwise). ``log_y``: a log std axis; by default when the stds drawn span more
    than ``LOG_SPAN``x (a plain-56 next to a ResNet-20, say), where a linear axis flattens the small ones.
    """
    if ((responses["arch"] == "resnet") & (responses["shortcut"] == "A")).any():
        responses = responses[(responses["arch"] == "plain") | (responses["shortcut"] == "A")]
    nets = responses[NET_KEYS].drop_duplicates().sort_values(NET_KEYS, key=plain_first).itertuples(index=False)
    nets = list(nets)
    n_short = responses.loc[responses["arch"] == "resnet", "shortcut"].nunique() or 1
    positive = responses.loc[responses["std"] > 0, "std"]
    if log_y is None:
        log_y = len(positive) > 0 and positive.max() > LOG_SPAN * positive.min()
    with paper_style():
        fig, axes = _figure(2, 1, 1.45 if columns == 1 else 1.5, 0.6 if columns == 1 else 0.0)
        fig.set_size_inches(WIDTHS_IN[columns], fig.get_size_inches()[1])
        for arch, depth, shortcut in nets:
            g = responses[(responses["arch"] == arch) & (responses["depth"] == depth) & (responses["shortcut"] == shortcut)]
            style = dict(color=_shade(arch, shortcut, depth, responses), lw=1.0, ls="--" if arch == "plain" else "-",
                         label=paper_label(arch, depth, shortcut, n_short))
            axes[0].plot(g.groupby("layer")["std"].mean(), **style)
            ranked = g.sort_values("std", ascending=False).assign(rank=lambda d: d.groupby("run").cumcount())
            axes[1].plot(ranked.groupby("rank")["std"].mean(), **style)
        axes[0].set_xlabel("layer index (original)")
        axes[1].set_xlabel("layer index (sorted by magnitude)")
        for ax in axes:
            ax.set_ylabel("std")
            if log_y:
                ax.set_yscale("log")
            else:
                ax.set_ylim(bottom=0)
        handles = axes[0].get_legend_handles_labels()[0]
        if columns == 2:
            fig.legend(handles=handles, loc="outside right upper", fontsize=SMALL_PT)
        else:
            _legend_below(fig, handles, ncol=2 if len(handles) <= 4 else 3)
    return fig


def _shade(arch: str, shortcut: str, depth: int, frame: pd.DataFrame) -> tuple:
    """Lighter for shallower nets of a family, darker for deeper ones."""
    same = frame.loc[(frame["arch"] == arch) & ((frame["shortcut"] == shortcut) | (arch == "plain")), "depth"]
    depths = sorted(same.unique())
    if len(depths) == 1:
        return family_colour(arch, shortcut)
    return family_colour(arch, shortcut, 0.45 + 0.5 * depths.index(depth) / (len(depths) - 1))
