"""Analysis: tables recomputed from hand-made run records, outputs that drop into a paper, Figure 7 on trained nets."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.colors
import matplotlib.text
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from scipy import stats

from analysis import figures, tables
from analysis.report import write_report
from analysis.responses import layer_responses, response_layers
from analysis.runs import load_runs
from lab import nets
from lab.config import make_config
from lab.reference import CIFAR10_PLAIN_TEST_ERR, CIFAR10_RESNET_TEST_ERR
from tests.conftest import TINY_RECIPE, write_cifar10

# Test errors (%) of hand-made runs, seeds 0, 1, 2: known means, stds and Welch p-values.
ABLATION = {
    ("plain", 20, "A"): [10.0],  # one seed: no t-test
    ("resnet", 20, "A"): [8.0, 9.0, 10.0],  # mean 9, std 1: the reference
    ("resnet", 20, "B"): [8.5, 9.5, 9.0],  # mean 9: no detectable difference
    ("resnet", 20, "C"): [12.0, 13.0, 14.0],  # mean 13: p about 0.008, worse
    ("resnet", 56, "A"): [7.0, 7.5],
    ("plain", 56, "A"): [13.0, 14.0],  # 6.25 points worse, but two seeds a side: too few seeds
}


def write_record(study_dir: Path, arch: str, depth: int, shortcut: str, seed: int, test_err: float,
                 data: dict, checkpoint: bool = False, steps: int = 40) -> Path:
    """A finished run record as lab.train writes it: config.yaml, metrics.jsonl, summary.json (and last.ckpt)."""
    config = make_config(TINY_RECIPE, {"model.arch": arch, "model.depth": depth, "model.shortcut": shortcut,
                                       "train.seed": seed, "optim.max_steps": steps, "optim.milestones": [],
                                       "train.eval_every": steps // 4, "track.study": study_dir.name,
                                       **{f"data.{k}": v for k, v in data.items()}})
    run = nets.run_name(arch, depth, shortcut, seed)
    run_dir = study_dir / run
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    train_err = test_err / 2
    rows = [{"iteration": float(i), "train_err": train_err + 40 / i * 10, "val_err": test_err + 1,
             "test_err": test_err + 40 / i * 5, "train_loss": 1.0, "lr": 0.1, "epoch": 0.0}
            for i in range(steps // 4, steps + 1, steps // 4)]
    rows[-1].update(train_err=train_err, test_err=test_err)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    net = nets.build_net(nets.NetConfig(arch, depth, shortcut, 3 if data["name"] == "cifar10" else 1, 10))
    if checkpoint:
        torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}, "global_step": steps},
                   run_dir / "last.ckpt")
    summary = {"run": run, "study": study_dir.name, "arch": arch, "depth": depth, "shortcut": shortcut, "seed": seed,
               "dataset": data["name"], "params": nets.count_params(net), "train_err": train_err,
               "val_err": test_err + 1, "test_err": test_err, "best_val_err": test_err + 0.5, "steps": steps,
               "wall_s": 1.5, "images_per_s": 1000.0, "code_version": "0123456789ab",
               "hardware": {"device_name": "Test CPU (2 cores)", "torch": torch.__version__, "device": "cpu"},
               "config": config.to_dict()}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


def write_study(root: Path, data: dict, checkpoint: bool = False, nets_errs: dict = ABLATION) -> Path:
    """Records of every net and seed; ``checkpoint``: untrained ``last.ckpt`` for seed 0 (layer responses)."""
    for (arch, depth, shortcut), errs in nets_errs.items():
        for seed, err in enumerate(errs):
            write_record(root / "ablation", arch, depth, shortcut, seed, err, data, checkpoint and seed == 0)
    return root


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Small convs on 2 shared cores: a second OpenMP thread makes them several times slower, not faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cifar_report(tmp_path_factory) -> Path:
    """``lab analyze`` of a CIFAR-10 ablation (plain + ResNet A/B/C, untrained checkpoints on a generated archive)."""
    root = tmp_path_factory.mktemp("cifar")
    data = {"name": "cifar10", "data_dir": str(write_cifar10(root / "data")), "verify_md5": False, "val_size": 20}
    # resnet-110-B: the widest cells (7 digits of parameters, two-digit mean and std) must fit \\textwidth too
    nets_errs = {**ABLATION, ("resnet", 110, "A"): [6.5, 6.7], ("resnet", 110, "B"): [23.87, 69.84]}
    write_study(root / "runs", data, checkpoint=True, nets_errs=nets_errs)
    write_report(root / "runs", "ablation", root / "analysis")
    return root / "analysis"


# --- tables ---


def test_shortcut_table_is_recomputed_from_run_records(tmp_path):
    write_study(tmp_path, {"name": "digits"})
    runs, _ = load_runs(tmp_path, "ablation")
    table = tables.shortcuts(runs).set_index("net")
    assert list(table.index) == ["plain-20", "resnet-20-A", "resnet-20-B", "resnet-20-C",
                                 "plain-56", "resnet-56-A"]  # Table 3's order: plain, then A, B, C
    ref = ABLATION[("resnet", 20, "A")]
    for (arch, depth, shortcut), errs in ABLATION.items():
        row = table.loc[tables.net_label(arch, depth, shortcut, explicit_a=True)]
        assert row["seeds"] == len(errs)
        assert row["test_err_mean"] == pytest.approx(np.mean(errs), abs=1e-12)
        assert row["train_err_mean"] == pytest.approx(np.mean(errs) / 2, abs=1e-12)
        if len(errs) > 1:
            assert row["test_err_std"] == pytest.approx(np.std(errs, ddof=1), abs=1e-12)
        else:
            assert np.isnan(row["test_err_std"])
    assert table.loc["resnet-20-B", "diff"] == pytest.approx(0.0, abs=1e-12)
    assert table.loc["resnet-20-C", "diff"] == pytest.approx(4.0)
    assert table.loc["plain-56", "diff"] == pytest.approx(13.5 - 7.25)
    for net, errs in (("resnet-20-B", ABLATION[("resnet", 20, "B")]), ("resnet-20-C", ABLATION[("resnet", 20, "C")])):
        test = stats.ttest_ind(errs, ref, equal_var=False)
        ci = test.confidence_interval(0.95)
        assert table.loc[net, "p"] == test.pvalue
        assert (table.loc[net, "ci_low"], table.loc[net, "ci_high"]) == (ci.low, ci.high)
        assert table.loc[net, "ci_low"] < table.loc[net, "diff"] < table.loc[net, "ci_high"]
        assert table.loc[net, "compared_with"] == "resnet-20-A"
    assert table.loc["resnet-20-B", "verdict"] == "no detectable difference" and table.loc["resnet-20-B", "p"] == 1.0
    assert table.loc["resnet-20-C", "verdict"] == "worse" and table.loc["resnet-20-C", "p"] < 0.05
    for net in ("plain-20", "plain-56"):  # one or two seeds on a side: no test, whatever the gap
        assert table.loc[net, "verdict"] == "too few seeds"
        assert np.isnan(table.loc[net, "p"]) and np.isnan(table.loc[net, "ci_low"]) and np.isnan(table.loc[net, "ci_high"])
    assert table.loc["resnet-20-A", "verdict"] == "reference" and table.loc["resnet-56-A", "verdict"] == "reference"


def test_a_55_point_gap_is_too_few_seeds_on_two_seeds_and_worse_on_three(tmp_path):
    """The depth study's plain-44 vs resnet-44 (+55.4 points): two seeds give p = 0.17, which is no evidence of
    "no difference"; on three seeds Welch's test separates it, and its CI says by how much."""
    two = {("plain", 44, "A"): [61.0, 47.0], ("resnet", 44, "A"): [2.0, 3.0]}
    three = {("plain", 44, "A"): [61.0, 47.0, 58.0], ("resnet", 44, "A"): [2.0, 3.0, 2.5]}
    for name, errs in (("two", two), ("three", three)):
        write_study(tmp_path / name, {"name": "digits"}, nets_errs=errs)
    table = tables.shortcuts(load_runs(tmp_path / "two", "ablation")[0]).set_index("net")
    assert table.loc["plain-44", "diff"] == pytest.approx(51.5) and table.loc["plain-44", "verdict"] == "too few seeds"
    table = tables.shortcuts(load_runs(tmp_path / "three", "ablation")[0]).set_index("net")
    row = table.loc["plain-44"]
    assert row["verdict"] == "worse" and row["p"] < 0.05 and 0 < row["ci_low"] < row["diff"] < row["ci_high"]
    swapped = tables.compare(pd.Series(three[("resnet", 44, "A")]), pd.Series(three[("plain", 44, "A")]))
    assert swapped.verdict == "better" and swapped.ci_high < 0
    md = tables.markdown(*tables.display_shortcuts(table.reset_index()))
    assert "within seed noise" not in md and "| worse |" in md


def test_means_carry_the_t_based_95_percent_ci_of_the_mean(tmp_path):
    write_study(tmp_path, {"name": "digits"})
    table = tables.means(load_runs(tmp_path, "ablation")[0]).set_index(["arch", "depth", "shortcut"])
    errs = ABLATION[("resnet", 20, "C")]
    low, high = stats.t.interval(0.95, len(errs) - 1, loc=np.mean(errs), scale=stats.sem(errs))
    row = table.loc[("resnet", 20, "C")]
    assert (row["test_err_ci_low"], row["test_err_ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert np.isnan(table.loc[("plain", 20, "A"), "test_err_ci_low"])  # one seed: no interval


def test_means_are_over_seeds_per_net_with_the_sample_std():
    """Hand-made runs with known answers: every metric in its own column, std with ddof=1 (not the variance)."""
    rows = [("resnet", 20, "A", seed, 270, train, val, test)
            for seed, train, val, test in ((0, 1.0, 10.0, 20.0), (1, 3.0, 13.0, 24.0), (2, 5.0, 16.0, 28.0))]
    rows += [("plain", 20, "A", 0, 270, 7.0, 17.0, 27.0), ("plain", 56, "A", 0, 850, 9.0, 30.0, 40.0),
             ("plain", 56, "A", 1, 850, 9.5, 31.5, 41.0)]
    runs = pd.DataFrame(rows, columns=["arch", "depth", "shortcut", "seed", "params", "train_err", "val_err", "test_err"])
    expected = pd.DataFrame(
        [("plain", 20, "A", 1, 270, 7.0, np.nan, 17.0, np.nan, 27.0, np.nan),
         ("plain", 56, "A", 2, 850, 9.25, 0.5 / 2 ** 0.5, 30.75, 1.5 / 2 ** 0.5, 40.5, 1 / 2 ** 0.5),  # |a - b| / sqrt 2
         ("resnet", 20, "A", 3, 270, 3.0, 2.0, 13.0, 3.0, 24.0, 4.0)],
        columns=["arch", "depth", "shortcut", "seeds", "params", "train_err_mean", "train_err_std", "val_err_mean",
                 "val_err_std", "test_err_mean", "test_err_std"])
    pd.testing.assert_frame_equal(tables.means(runs)[expected.columns], expected, check_dtype=False, rtol=1e-12)

    def ci(values):  # the t-based 95% CI of a mean, as a reader sees it
        low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
        return f"[{low:.2f}, {high:.2f}]"

    assert tables.markdown(*tables.display_means(tables.means(runs))) == (  # means.md, as a reader sees it
        "| net | params | seeds | train err (%) | train 95% CI | val err (%) | test err (%) | test 95% CI |\n"
        "|---|---|---|---|---|---|---|---|\n"
        "| plain-20 | 270 | 1 | 7.00 | – | 17.00 | 27.00 | – |\n"
        f"| plain-56 | 850 | 2 | 9.25 ± 0.35 | {ci([9.0, 9.5])} | 30.75 ± 1.06 | 40.50 ± 0.71 | {ci([40.0, 41.0])} |\n"
        f"| resnet-20 | 270 | 3 | 3.00 ± 2.00 | {ci([1.0, 3.0, 5.0])} | 13.00 ± 3.00 | 24.00 ± 4.00 | {ci([20.0, 24.0, 28.0])} |\n"
        "\nmean ± std (ddof=1) over seeds; 95% CI: of the mean (t-based), none under 2 seeds.\n"
    )


def test_shortcut_table_is_written_when_there_is_something_to_compare(tmp_path):
    depth_study = {("plain", 20, "A"): [5.0, 6.0], ("resnet", 20, "A"): [4.0, 4.5]}
    one_family = {("resnet", 20, "A"): [5.0, 6.0], ("resnet", 56, "A"): [4.0, 4.5]}
    for name, errs in (("depth", depth_study), ("family", one_family)):
        write_study(tmp_path / name, {"name": "digits"}, nets_errs=errs)
    assert tables.wants_shortcuts(load_runs(tmp_path / "depth", "ablation")[0])
    assert not tables.wants_shortcuts(load_runs(tmp_path / "family", "ablation")[0])


def test_table6_puts_the_papers_numbers_beside_ours(tmp_path):
    nets_errs = {("plain", 56, "A"): [13.0, 14.0], ("resnet", 56, "A"): [7.0, 7.5], ("resnet", 56, "B"): [7.1, 7.2],
                 ("resnet", 110, "A"): [7.0, 7.1, 7.2]}
    write_study(tmp_path, {"name": "cifar10"}, nets_errs=nets_errs)
    table = tables.table6(load_runs(tmp_path, "ablation")[0]).set_index("net")
    assert list(table.index) == ["plain-56", "resnet-56", "resnet-110"]  # Table 6 is option A only
    assert table.loc["resnet-56", "paper_test_err"] == CIFAR10_RESNET_TEST_ERR[56] == 6.97
    assert table.loc["plain-56", "paper_test_err"] == CIFAR10_PLAIN_TEST_ERR[56]
    assert table.loc["resnet-56", "diff"] == pytest.approx(7.25 - 6.97)
    assert table.loc["resnet-56", "verdict"] == "too few seeds" and np.isnan(table.loc["resnet-56", "ci_low"])
    ours = [7.0, 7.1, 7.2]  # three seeds: a one-sample t-test against the paper's 6.43
    ci = stats.ttest_1samp(ours, 6.43).confidence_interval(0.95)
    row = table.loc["resnet-110"]
    assert row["ci_low"] == pytest.approx(ci.low - 6.43) and row["ci_high"] == pytest.approx(ci.high - 6.43)
    assert row["p"] == pytest.approx(stats.ttest_1samp(ours, 6.43).pvalue) and row["verdict"] == "worse"
    assert table.loc["resnet-56", "test_err_std"] == pytest.approx(np.std([7.0, 7.5], ddof=1))
    assert table.loc["resnet-110", "paper_params"] == 1_727_962
    assert "Figure 6" in table.loc["plain-56", "paper_source"] and "6.61" in table.loc["resnet-110", "paper_source"]


def test_report_files_precision_and_provenance(cifar_report):
    names = {p.name for p in cifar_report.iterdir()}
    for stem in ("means", "shortcuts", "table6"):
        assert {f"{stem}.csv", f"{stem}.md", f"{stem}.tex"} <= names
    for stem in ("degradation", "error_vs_depth", "layer_responses"):
        assert {f"{stem}-{c}col.{ext}" for c in (1, 2) for ext in ("pdf", "png")} | {f"{stem}.caption.txt"} <= names
    readme = (cifar_report / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in names - {"README.md"}), "the README lists every file"
    for text in [readme, (cifar_report / "degradation.caption.txt").read_text()]:
        assert "0123456789ab" in text and "Test CPU" in text and "seeds" in text and "ablation" in text
    summary = pd.read_csv(cifar_report / "summary.csv")
    raw = json.loads(next((cifar_report.parent / "runs" / "ablation").glob("*/summary.json")).read_text())
    assert summary.set_index("run").loc[raw["run"], "wall_s"] == raw["wall_s"]
    assert pd.read_csv(cifar_report / "curves.csv")["iteration"].dtype.kind == "i"
    shortcuts_md = (cifar_report / "shortcuts.md").read_text()
    assert "no detectable difference" in shortcuts_md and "too few seeds" in shortcuts_md
    assert "within seed noise" not in shortcuts_md
    assert "± " in (cifar_report / "means.md").read_text()


def test_figure_files_are_pages_and_images_of_the_printed_size_with_something_drawn(cifar_report):
    """What ``lab analyze`` writes for each figure: a one-page PDF as wide as a column (3.3 in) or two (6.9 in),
    and a 300 dpi PNG of the same size that is not blank (the objects drawn are checked on the figures above)."""
    from PIL import Image

    for stem in ("degradation", "error_vs_depth", "layer_responses"):
        for columns, width_in in figures.WIDTHS_IN.items():
            pdf = (cifar_report / f"{stem}-{columns}col.pdf").read_bytes()
            (box,) = re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf)  # one page
            assert float(box[0]) == pytest.approx(72 * width_in, abs=0.1) and 72 < float(box[1]) < 72 * 9, (stem, box)
            with Image.open(cifar_report / f"{stem}-{columns}col.png") as png:
                assert png.format == "PNG" and png.size[0] == pytest.approx(300 * width_in, abs=1), (stem, png.size)
                assert png.size[1] == pytest.approx(300 / 72 * float(box[1]), abs=1)  # the PDF's page, at 300 dpi
                pixels = np.asarray(png.convert("RGB")).astype(np.uint32)
            ink = (pixels < 200).any(axis=2)  # anything darker than a light grid line
            assert 0.01 < ink.mean() < 0.5, f"{stem}-{columns}col.png: {ink.mean():.1%} of the pixels drawn"
            colours = np.unique(pixels[..., 0] << 16 | pixels[..., 1] << 8 | pixels[..., 2])
            assert len(colours) > 50, f"{stem}-{columns}col.png: {len(colours)} colours; the curves have their own"


def test_summary_csv_keeps_full_precision(tmp_path):
    write_study(tmp_path / "runs", {"name": "digits"}, nets_errs={("resnet", 20, "A"): [8.123456789012345]})
    write_report(tmp_path / "runs", "ablation", tmp_path / "out")
    assert pd.read_csv(tmp_path / "out" / "summary.csv")["test_err"][0] == 8.123456789012345


# --- outputs that drop into a paper: LaTeX and PDF fonts ---


def need(tool: str) -> str:
    """The path of a system tool; a skip without it, but a failure in CI (tests/system-deps.sh installs it)."""
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed: run tests/system-deps.sh (Debian: texlive-latex-base, poppler-utils)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_every_table_compiles_with_pdflatex_and_fits_the_text_width(cifar_report, tmp_path):
    pdflatex = need("pdflatex")
    texs = sorted(cifar_report.glob("*.tex"))
    assert {p.stem for p in texs} == {"means", "shortcuts", "table6"}
    for tex in texs:
        body = tex.read_text()
        assert r"\pm" in body, f"{tex.name}: mean ± std in one cell"
        doc = tmp_path / f"doc-{tex.stem}.tex"
        doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
                       f"\\input{{{tex}}}\n\\end{{document}}\n")
        result = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)
        log = doc.with_suffix(".log").read_text(errors="replace")
        assert result.returncode == 0, f"{tex.name} does not compile:\n{result.stdout[-2000:]}"
        assert "Overfull \\hbox" not in log, f"{tex.name} is wider than \\textwidth:\n" + "\n".join(
            line for line in log.splitlines() if "Overfull" in line)
        # Type 1 or TrueType only: a dagger set as \textsuperscript{\dag} brought a Type 3 font into the PDF
        fonts = pdf_fonts(need("pdffonts"), doc.with_suffix(".pdf"))
        assert fonts and all("Type 3" not in f["type"] and f["emb"] == "yes" for f in fonts), f"{tex.name}: {fonts}"
    assert "dagger" in (cifar_report / "table6.tex").read_text()  # the marks are there, as math


def pdf_fonts(pdffonts: str, pdf: Path) -> list[dict[str, str]]:
    """``pdffonts``' table as dicts (name, type, encoding, emb, ...); its columns are as wide as the dashes under them."""
    header, rule, *rows = subprocess.run([pdffonts, str(pdf)], capture_output=True, text=True, check=True).stdout.splitlines()
    spans = [m.span() for m in re.finditer(r"-+", rule)]
    keys = [header[a:b].strip() for a, b in spans]
    return [{k: row[a:b].strip() for k, (a, b) in zip(keys, spans)} for row in rows]


def test_pdfs_embed_truetype_fonts_and_no_type3(cifar_report):
    pdffonts = need("pdffonts")
    pdfs = sorted(cifar_report.glob("*.pdf"))
    assert len(pdfs) == 6
    for pdf in pdfs:
        fonts = pdf_fonts(pdffonts, pdf)
        assert fonts, f"{pdf.name}: no fonts"
        for font in fonts:
            assert "Type 3" not in font["type"] and "TrueType" in font["type"], f"{pdf.name}: {font}"
            assert font["emb"] == "yes", f"{pdf.name}: font not embedded: {font}"


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
