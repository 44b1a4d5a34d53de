"""Analysis: tables recomputed from hand-made run records (means, CIs, the shortcut ablation, Table 6), and outputs
that drop into a paper (LaTeX, PDF fonts)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import figures, tables
from analysis.report import write_report
from analysis.runs import load_runs
from lab.reference import CIFAR10_PLAIN_TEST_ERR, CIFAR10_RESNET_TEST_ERR
from tests.conftest import write_cifar10
from tests.studies import ABLATION, one_torch_thread, write_study  # noqa: F401 (a fixture)


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

