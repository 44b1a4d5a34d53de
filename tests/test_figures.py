"""Figures 6 and 7 and error vs depth, checked on the matplotlib objects; layer responses (He 2015, Figure 7)."""

from __future__ import annotations

import matplotlib.colors
import matplotlib.text
import numpy as np
import pandas as pd
import pytest

from analysis import figures
from analysis.responses import layer_responses, response_layers
from analysis.runs import load_runs
from lab import nets
from lab.config import make_config
from tests.conftest import TINY_RECIPE
from tests.studies import one_torch_thread, write_study  # noqa: F401 (a fixture)


# --- figures, checked on the matplotlib objects ---


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    root = tmp_path_factory.mktemp("frames")
    write_study(root, {"name": "digits"}, checkpoint=True)
    runs, curves = load_runs(root, "ablation")
    return runs, curves, layer_responses(runs, "cpu")[0]


def _figures(frames):
    runs, curves, responses = frames
    for columns in (1, 2):
        yield columns, figures.degradation(curves, columns)
        yield columns, figures.error_vs_depth(runs, columns)
        yield columns, figures.layer_responses(responses, columns)


def test_figures_are_drawn_at_column_widths_with_text_of_at_least_7pt(frames):
    for columns, fig in _figures(frames):
        fig.canvas.draw()  # ticks and their labels exist once drawn
        assert fig.get_size_inches()[0] == pytest.approx({1: 3.3, 2: 6.9}[columns])
        texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()]
        assert texts and min(t.get_fontsize() for t in texts) >= 7
        assert not any("0123456789ab" in t.get_text() or "CPU" in t.get_text() for t in texts), "provenance: caption"
        drawn = fig.get_tightbbox()  # inches, around everything drawn: nothing sticks out of the figure
        width, height = fig.get_size_inches()
        assert drawn.x0 >= -0.01 and drawn.y0 >= -0.01 and drawn.x1 <= width + 0.01 and drawn.y1 <= height + 0.01
        figures.plt.close(fig)


def test_degradation_draws_train_dashed_test_bold_with_a_band_and_the_legend_outside(frames):
    _, curves, _ = frames
    fig = figures.degradation(curves, 2)
    fig.canvas.draw()
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["plain", "ResNet, option A", "ResNet, option B", "ResNet, option C"]
    resnet_a = axes[1]
    train = [line for line in resnet_a.lines if line.get_gid() == "train_err"]
    test = [line for line in resnet_a.lines if line.get_gid() == "test_err"]
    assert len(train) == len(test) == 2  # depths 20 and 56
    assert all(line.get_linestyle() == "--" for line in train) and all(line.get_linestyle() == "-" for line in test)
    assert min(line.get_linewidth() for line in test) > max(line.get_linewidth() for line in train)
    g = curves[(curves["arch"] == "resnet") & (curves["depth"] == 20) & (curves["shortcut"] == "A")]
    mean = g.groupby("iteration")["test_err"].mean()
    (line,) = [t for t in test if np.allclose(t.get_xdata(), mean.index)
               and np.allclose(t.get_ydata(), mean.to_numpy())]
    assert len(resnet_a.collections) == 4  # a min..max band for each line
    legend = fig.legends[0].get_window_extent()
    assert all(not legend.overlaps(ax.get_window_extent()) for ax in axes), "the legend covers no axes"
    figures.plt.close(fig)


def test_degradation_series_are_styled_by_what_they_show_and_the_legend_says_so():
    """He 2015, Figure 6: "dashed lines denote training error, and bold lines denote testing error". Each line is
    told by its data (hand-made curves, every series at its own level), not by how it was drawn or tagged."""
    nets_ = [("plain", 20), ("plain", 56), ("resnet", 20), ("resnet", 56)]
    rows = [{"arch": arch, "depth": depth, "shortcut": "A", "seed": seed, "iteration": it,
             "train_err": 10.0 * k + seed + it / 1000, "test_err": 50.0 + 10 * k + seed + it / 1000}
            for k, (arch, depth) in enumerate(nets_) for seed in (0, 1) for it in (100, 200, 300)]
    curves = pd.DataFrame(rows)
    series = {(arch, depth, metric): g.groupby("iteration")[metric].mean()
              for (arch, depth), g in curves.groupby(["arch", "depth"]) for metric in ("train_err", "test_err")}
    for columns in (1, 2):
        fig = figures.degradation(curves, columns)
        axes = [ax for ax in fig.axes if ax.get_visible()]
        assert [ax.get_title() for ax in axes] == ["plain", "ResNet"]
        lines = {}  # (arch, depth, metric) -> the line drawing that mean over seeds
        for ax, arch in zip(axes, ("plain", "resnet")):
            assert len(ax.lines) == 4  # train and test error of depths 20 and 56
            for line in ax.lines:
                (key,) = [k for k, mean in series.items()
                          if np.allclose(line.get_xdata(), mean.index) and np.allclose(line.get_ydata(), mean.to_numpy())]
                assert key[0] == arch, f"{key} drawn in the {arch} panel"
                lines[key] = line
        assert set(lines) == set(series)
        assert all(line.get_linestyle() == ("--" if metric == "train_err" else "-")
                   for (_, _, metric), line in lines.items()), "training error dashed, test error solid"
        for arch in ("plain", "resnet"):
            for depth in (20, 56):
                train, test = lines[(arch, depth, "train_err")], lines[(arch, depth, "test_err")]
                assert test.get_linewidth() >= 1.5 * train.get_linewidth(), "test error bold"
                assert test.get_color() == train.get_color()
            shallow, deep = lines[(arch, 20, "test_err")], lines[(arch, 56, "test_err")]
            assert deep.get_linewidth() > shallow.get_linewidth(), "the deepest net thickest"
            assert sum(matplotlib.colors.to_rgb(deep.get_color())) < sum(matplotlib.colors.to_rgb(shallow.get_color())), \
                "the deepest net darkest"
        keys = {h.get_label(): h for h in fig.legends[0].legend_handles}
        assert keys["train"].get_linestyle() == "--" and keys["test"].get_linestyle() == "-"
        for (arch, depth), label in {("plain", 20): "plain-20", ("plain", 56): "plain-56", ("resnet", 20): "ResNet-20",
                                     ("resnet", 56): "ResNet-56"}.items():  # named as in the paper's Figure 6
            key, line = keys[label], lines[(arch, depth, "test_err")]
            assert (key.get_linestyle(), key.get_linewidth(), key.get_color()) == ("-", line.get_linewidth(), line.get_color())
        figures.plt.close(fig)


def test_degradation_y_axis_is_the_papers_on_cifar_and_symlog_elsewhere():
    """Figure 6's 0-20% on CIFAR-10; on digits (plain-56 near 50%, ResNets near 0.1%) a symlog axis that reads both."""
    for dataset, scale, top in (("cifar10", "linear", 20), ("digits", "symlog", 61 * 1.15)):
        curves = pd.DataFrame([{"arch": arch, "depth": 20, "shortcut": "A", "seed": 0, "iteration": it, "dataset": dataset,
                                "train_err": err / it, "test_err": err / it + 1} for arch, err in (("plain", 6000), ("resnet", 20))
                               for it in (100, 200)])
        fig = figures.degradation(curves, 2)
        ax = fig.axes[0]
        assert ax.get_yscale() == scale and ax.get_ylim() == (0, pytest.approx(top))
        figures.plt.close(fig)


# --- layer responses (He 2015, Figure 7) ---


def test_response_layers_are_the_bns_after_every_3x3_conv():
    cifar = nets.build_net(nets.NetConfig("resnet", 20, "B"))
    names = [name for name, _ in response_layers(cifar)]
    assert len(names) == 19 and names[0] == "bn1" and names[1] == "stages.0.0.bn1"  # stem + 18 (He 2015, Fig. 7)
    bottleneck = nets.build_net(nets.NetConfig("resnet", 50, "B", style="imagenet"))
    names = [name for name, _ in response_layers(bottleneck)]
    assert len(names) == 16 and all(n.endswith("bn2") for n in names)  # one 3x3 per bottleneck; no 7x7 stem


# He 2015, Figure 7 (Section 4.2): "ResNets have generally smaller responses than their plain counterparts".
# Measured on digits (batch 32, lr 0.1 / 10 for the last quarter): plain-20 and resnet-20 differ by only
# ~5% after 300 iterations (mean std 1.03 vs 0.97 over 3 seeds), too close for a cheap test; plain-56
# responds 3-9x more than resnet-56 after 60-100 iterations, in every one of 7 seeds tried, every sorted
# layer. Untrained (eval-mode BN at its initial statistics) it is the other way round: training does this.
PAIR_DEPTH, PAIR_STEPS = 56, 80


def test_residual_nets_respond_less_than_plain_nets_once_trained(tmp_path):
    from lab.train import train

    for arch in ("plain", "resnet"):
        train(make_config(TINY_RECIPE, {
            "model.arch": arch, "model.depth": PAIR_DEPTH, "optim.max_steps": PAIR_STEPS,
            "optim.milestones": [PAIR_STEPS * 3 // 4], "train.eval_every": PAIR_STEPS,
            "track.runs_dir": str(tmp_path), "track.study": "pair", "track.wandb": "disabled"}))
    runs, _ = load_runs(tmp_path, "pair")
    responses, skipped = layer_responses(runs, "cpu")
    assert not skipped
    std = {arch: g.sort_values("layer")["std"].to_numpy() for arch, g in responses.groupby("arch")}
    assert len(std["plain"]) == len(std["resnet"]) == PAIR_DEPTH - 1  # every 3x3 layer: all but the classifier
    assert std["resnet"].mean() < 0.5 * std["plain"].mean()
    ranked = {arch: np.sort(s)[::-1] for arch, s in std.items()}
    assert (ranked["resnet"] < ranked["plain"]).mean() >= 0.9  # Figure 7 (bottom): sorted, resnet below plain


def test_layer_responses_go_on_a_log_axis_when_they_span_more_than_10x_and_read_like_the_paper():
    def responses(top: float) -> pd.DataFrame:
        return pd.DataFrame([{"run": f"{arch}-{depth}-s0", "arch": arch, "depth": depth, "shortcut": "A", "seed": 0,
                              "layer": i, "std": (top if arch == "plain" else 1.0) / (i + 1)}
                             for arch, depth in (("plain", 56), ("resnet", 20)) for i in range(3)])

    for top, scale, forced in ((30.0, "log", "linear"), (2.0, "linear", "log")):
        fig = figures.layer_responses(responses(top), 2)
        assert fig.axes[0].get_yscale() == fig.axes[1].get_yscale() == scale
        assert [line.get_label() for line in fig.axes[0].lines] == ["plain-56", "ResNet-20"]
        figures.plt.close(fig)
        fig = figures.layer_responses(responses(top), 2, log_y=(forced == "log"))  # lab analyze --responses-axis
        assert fig.axes[0].get_yscale() == forced
        figures.plt.close(fig)
