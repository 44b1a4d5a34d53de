"""The paper's tables from run records: means over seeds, the shortcut ablation (He 2015, Table 3), Table 6.

Each table is a function of the runs DataFrame (``analysis.load_runs``) returning a DataFrame at full
precision (written as CSV); ``display_*`` turn one into the cells a reader sees, which ``markdown``
and ``latex`` render (mean ± std in one cell, booktabs rules, escaped text).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
from scipy import stats

from analysis.runs import NET_KEYS
from lab.records import ERRORS
from lab.nets import resnet_name
from lab.reference import CIFAR10_PARAMS, CIFAR10_RESNET110_RUNS, CIFAR10_TEST_ERR_SOURCE, paper_test_err

ALPHA = 0.05  # two-sided level of the tests; the confidence intervals are 1 - ALPHA = 95%
MIN_SEEDS = 3  # fewer seeds than this on either side: no test is made ("too few seeds")
# The verdict of a comparison of two nets' test errors (Welch's t-test; lower error is better).
BETTER, WORSE, NO_DIFFERENCE, TOO_FEW, REFERENCE, NO_REFERENCE = (
    "better", "worse", "no detectable difference", "too few seeds", "reference", "no reference")


@dataclass(frozen=True)
class MeanStd:
    """A mean ± standard deviation cell; ``std`` is NaN with one seed."""

    mean: float
    std: float


def net_label(arch: str, depth: int, shortcut: str, explicit_a: bool = False) -> str:
    """``plain-56``, ``resnet-110-B``; ``explicit_a`` names option A too (``resnet-20-A``), as in an ablation."""
    if explicit_a and arch == "resnet" and shortcut == "A":
        return f"resnet-{depth}-A"
    return resnet_name(arch, depth, shortcut)


def mean_ci(values: pd.Series) -> tuple[float, float]:
    """The t-based 95% confidence interval of the mean over seeds (scipy); NaN with fewer than 2 seeds or no spread."""
    if len(values) < 2 or values.std() == 0:
        return math.nan, math.nan
    ci = stats.ttest_1samp(values, 0.0).confidence_interval(1 - ALPHA)
    return float(ci.low), float(ci.high)


def means(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation (ddof=1) and the mean's 95% confidence interval (t-based) over seeds for every
    arch x depth x shortcut."""
    grouped = runs.groupby(NET_KEYS)
    table = grouped[list(ERRORS)].agg(["mean", "std"])
    table.columns = [f"{metric}_{stat}" for metric, stat in table.columns]
    for metric in ERRORS:
        cis = grouped[metric].apply(mean_ci)
        table.insert(table.columns.get_loc(f"{metric}_std") + 1, f"{metric}_ci_low", cis.map(lambda c: c[0]))
        table.insert(table.columns.get_loc(f"{metric}_ci_low") + 1, f"{metric}_ci_high", cis.map(lambda c: c[1]))
    table.insert(0, "params", grouped["params"].first())
    table.insert(0, "seeds", grouped["seed"].nunique())
    return table.reset_index()


def wants_shortcuts(runs: pd.DataFrame) -> bool:
    """An ablation has something to compare: several shortcut options, or plain and residual at one depth."""
    resnets = runs[runs["arch"] == "resnet"]
    both = set(runs.loc[runs["arch"] == "plain", "depth"]) & set(resnets["depth"])
    return resnets["shortcut"].nunique() > 1 or bool(both)


@dataclass(frozen=True)
class Comparison:
    """One net's test errors against a reference net's: difference of means with its 95% CI, p, verdict."""

    diff: float  # mean(own) - mean(reference), points of test error; negative: fewer errors
    ci_low: float
    ci_high: float
    p: float
    verdict: str


def compare(own: pd.Series, reference: pd.Series) -> Comparison:
    """Welch's t-test (unequal variances, scipy) of two nets' errors over seeds, and its 95% CI of the difference.

    Under ``MIN_SEEDS`` seeds on either side no test is made (``too few seeds``): two seeds give a t-test with
    so few degrees of freedom that it cannot separate even a 55-point gap. Both sides without spread (every
    seed at 0.00, say): the difference is exact, and only a nonzero one is a verdict.
    """
    diff = float(own.mean() - reference.mean())
    if len(own) < MIN_SEEDS or len(reference) < MIN_SEEDS:
        return Comparison(diff, math.nan, math.nan, math.nan, TOO_FEW)
    if own.std() == 0 and reference.std() == 0:  # scipy's t is infinite (or NaN) here: no test to quote
        return _exact(diff)
    test = stats.ttest_ind(own, reference, equal_var=False)
    ci = test.confidence_interval(1 - ALPHA)
    p = float(test.pvalue)
    return Comparison(diff, float(ci.low), float(ci.high), p, _verdict(p, diff))


def compare_to_value(own: pd.Series, value: float) -> Comparison:
    """Our errors over seeds against one published number (a one-sample t-test, scipy): the same fields as ``compare``."""
    diff = float(own.mean() - value)
    if math.isnan(value) or len(own) < MIN_SEEDS:
        return Comparison(diff, math.nan, math.nan, math.nan, TOO_FEW if not math.isnan(value) else NO_REFERENCE)
    if own.std() == 0:
        return _exact(diff)
    test = stats.ttest_1samp(own, value)
    ci = test.confidence_interval(1 - ALPHA)  # of our mean: the difference's is shifted by the paper's number
    return Comparison(diff, float(ci.low) - value, float(ci.high) - value, float(test.pvalue), _verdict(test.pvalue, diff))


def _exact(diff: float) -> Comparison:
    """A difference without spread on either side: exact, so its CI is itself; no p-value to quote."""
    return Comparison(diff, diff, diff, math.nan, NO_DIFFERENCE if diff == 0 else (BETTER if diff < 0 else WORSE))


def _verdict(p: float, diff: float) -> str:
    return NO_DIFFERENCE if p >= ALPHA else (BETTER if diff < 0 else WORSE)


def shortcuts(runs: pd.DataFrame) -> pd.DataFrame:
    """He 2015, Table 3: every net against the ResNet with option-A shortcuts at the same depth.

    One row per (arch, depth, shortcut): parameters, seeds, train/test error mean, std and 95% CI over seeds, and
    the comparison of its test errors with option A's (``compare``: ``diff``, ``ci_low``, ``ci_high``, ``p``,
    ``verdict``; ``compared_with`` names the reference, whose own verdict is ``reference``). Plain rows are
    compared with option A too (plain vs residual, Table 2).
    """
    table = means(runs)
    table = table.drop(columns=[c for c in table.columns if c.startswith("val_err")])
    rows = []
    for row in table.itertuples():
        ref = runs[(runs["arch"] == "resnet") & (runs["depth"] == row.depth) & (runs["shortcut"] == "A")]
        own = runs[(runs["arch"] == row.arch) & (runs["depth"] == row.depth) & (runs["shortcut"] == row.shortcut)]
        if row.arch == "resnet" and row.shortcut == "A":
            rows.append((math.nan, math.nan, math.nan, math.nan, REFERENCE, ""))
        elif ref.empty:
            rows.append((math.nan, math.nan, math.nan, math.nan, NO_REFERENCE, ""))
        else:
            c = compare(own["test_err"], ref["test_err"])
            rows.append((c.diff, c.ci_low, c.ci_high, c.p, c.verdict, net_label("resnet", row.depth, "A", True)))
    table.insert(2, "net", [net_label(a, d, s, True) for a, d, s in zip(table["arch"], table["depth"], table["shortcut"])])
    for i, column in enumerate(("diff", "ci_low", "ci_high", "p", "verdict", "compared_with")):
        table[column] = [r[i] for r in rows]
    return table.sort_values(["depth", "arch", "shortcut"], key=plain_first, ignore_index=True)


def plain_first(column: pd.Series) -> pd.Series:
    """Sort key: within a depth, plain before resnet (Table 3's order: plain-34, ResNet-34 A, B, C)."""
    return column.map({"plain": 0, "resnet": 1}) if column.name == "arch" else column


def table6(runs: pd.DataFrame) -> pd.DataFrame:
    """He 2015, Table 6: our CIFAR-10 test error next to the paper's, per net with option A (the paper's).

    ResNet numbers are Table 6's; plain ones are read off Figure 6 (about ±0.3). ResNet-110's 6.43 is the
    best of 5 runs, so its row also gives the paper's mean and std over those runs.
    """
    table = means(runs[runs["shortcut"] == "A"])
    table.insert(2, "net", [resnet_name(a, d, "A") for a, d in zip(table["arch"], table["depth"])])
    table["paper_params"] = table["depth"].map(CIFAR10_PARAMS)
    table["paper_test_err"] = [paper_test_err(a, "cifar10").get(d, math.nan) for a, d in zip(table["arch"], table["depth"])]
    found = [compare_to_value(runs[(runs["arch"] == a) & (runs["depth"] == d) & (runs["shortcut"] == "A")]["test_err"], p)
             for a, d, p in zip(table["arch"], table["depth"], table["paper_test_err"])]
    for field in ("diff", "ci_low", "ci_high", "p", "verdict"):
        table[field] = [getattr(c, field) for c in found]
    table["paper_source"] = [CIFAR10_TEST_ERR_SOURCE.get(a, "") if not math.isnan(p) else ""
                             for a, p in zip(table["arch"], table["paper_test_err"])]
    is_110 = (table["arch"] == "resnet") & (table["depth"] == 110)
    r = CIFAR10_RESNET110_RUNS
    table.loc[is_110, "paper_source"] += f"; best of {r['runs']}, mean {r['mean']} ± {r['std']}"
    return table.drop(columns=[c for c in table.columns if c.startswith("val_err")])


# --- what a reader sees: one cell per value, mean ± std together ---


def display_means(table: pd.DataFrame, tex: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """Cells and notes of the means; in LaTeX only the test error has its CI, and the validation error is left to
    ``means.csv``, so that the table fits ``\\textwidth``."""
    cells = pd.DataFrame({
        "net": [resnet_name(a, d, s) for a, d, s in zip(table["arch"], table["depth"], table["shortcut"])],
        "params": table["params"],
        "seeds": table["seeds"],
        "train err (%)": _pm(table, "train_err"),
        "train 95% CI": _ci(table, "train_err_ci_low", "train_err_ci_high"),
        "val err (%)": _pm(table, "val_err"),
        "test err (%)": _pm(table, "test_err"),
        "test 95% CI": _ci(table, "test_err_ci_low", "test_err_ci_high"),
    })
    notes = ["mean ± std (ddof=1) over seeds; 95% CI: of the mean (t-based), none under 2 seeds."]
    if tex:
        return cells.drop(columns=["val err (%)", "train 95% CI"]), notes + ["Validation errors, CIs of all: means.csv."]
    return cells, notes


VERDICT_TEX = {NO_DIFFERENCE: "none found", TOO_FEW: "few seeds", NO_REFERENCE: "--"}  # the LaTeX cells, narrower


def display_shortcuts(table: pd.DataFrame, tex: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """Cells and notes of the ablation: each net's test error against option A's at its depth."""
    verdicts = [VERDICT_TEX.get(v, v) if tex else v for v in table["verdict"]]
    cells = pd.DataFrame({
        "net": table["net"],
        "params": table["params"],
        "seeds": table["seeds"],
        "train err (%)": _pm(table, "train_err"),
        "test err (%)": _pm(table, "test_err"),
        "Δ test": _as(Signed, table["diff"]),
        "95% CI": _ci(table, "ci_low", "ci_high"),
        "p": _as(PValue, table["p"]),
        "verdict": verdicts,
    })
    if tex:  # Table 3 compares test errors; training errors and parameters stay in shortcuts.csv and means.tex
        cells = cells.drop(columns=["train err (%)", "params"])
    if tex:  # lines short enough for the table's width
        return cells, ["Δ test: mean test error minus option A's at that depth;",
                       f"95% CI, p: Welch's t-test. none found: p ≥ {ALPHA}, no detectable",
                       f"difference. few seeds: under {MIN_SEEDS} a side, no test made.",
                       "Parameters and training errors: shortcuts.csv, means.tex."]
    return cells, [f"Δ test: mean test error minus option A's at the same depth; its 95% CI and p: Welch's t-test; "
                   f"no test under {MIN_SEEDS} seeds on either side (too few seeds). No detectable difference is not "
                   f"evidence of no difference."]


def display_table6(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Cells and notes: the paper's number marked with its source where it is not Table 6's ResNet column."""
    marks = {CIFAR10_TEST_ERR_SOURCE["plain"]: "†"}
    paper = [Marked(p, "‡") if "best of" in src else Marked(p, marks[src]) if src in marks else p
             for p, src in zip(table["paper_test_err"], table["paper_source"])]
    r = CIFAR10_RESNET110_RUNS
    cells = pd.DataFrame({
        "net": table["net"],
        "params": table["params"],
        "seeds": table["seeds"],
        "test err (%)": _pm(table, "test_err"),
        "He 2015": pd.Series(paper, index=table.index, dtype=object),
        "difference": _as(Signed, table["diff"]),
        "95% CI": _ci(table, "ci_low", "ci_high"),
    })
    notes = ["He 2015: Table 6 (ResNets); † plain nets, read off Figure 6 (±0.3);",
             f"‡ best of {r['runs']} runs (mean {r['mean']} ± {r['std']}). difference: ours − He 2015,",
             f"its 95% CI from a one-sample t-test over our seeds (-- under {MIN_SEEDS} seeds)."]
    return cells, notes


def _ci(table: pd.DataFrame, low: str, high: str) -> pd.Series:
    return pd.Series([Interval(a, b) for a, b in zip(table[low], table[high])], index=table.index, dtype=object)


def _pm(table: pd.DataFrame, metric: str) -> list[MeanStd]:
    return [MeanStd(m, s) for m, s in zip(table[f"{metric}_mean"], table[f"{metric}_std"])]


def _as(kind: type, column: pd.Series) -> pd.Series:
    """Values wrapped so the renderers know how to print them (object dtype: pandas would unwrap floats)."""
    return pd.Series([kind(v) for v in column], index=column.index, dtype=object)


@dataclass(frozen=True)
class Marked:
    """A cell with a footnote mark (†, ‡) explained in the table's notes."""

    value: object
    mark: str


@dataclass(frozen=True)
class Interval:
    """A confidence interval ``[low, high]``; NaN bounds: none (too few seeds)."""

    low: float
    high: float


class Signed(float):
    """A difference, printed with its sign."""


class PValue(float):
    """A p-value, printed to 3 decimals, or ``< 0.001``."""


def _text(value: object, tex: bool) -> str:
    """One cell as Markdown or LaTeX text; numbers in LaTeX go in math mode, for a true minus sign."""
    math_ = (lambda s: f"${s}$") if tex else (lambda s: s)
    if isinstance(value, Marked):
        inner = _text(value.value, tex)
        if not tex:
            return inner + value.mark
        mark = LATEX_SPECIAL[value.mark][1:-1]  # "^\dagger": inside the number's math, or in math of its own
        return inner[:-1] + mark + "$" if inner.endswith("$") else inner + f"${mark}$"
    if isinstance(value, MeanStd):
        if math.isnan(value.mean):
            return "--" if tex else "–"
        if math.isnan(value.std):
            return math_(f"{value.mean:.2f}")
        return math_(f"{value.mean:.2f} \\pm {value.std:.2f}") if tex else f"{value.mean:.2f} ± {value.std:.2f}"
    if isinstance(value, Interval):
        if math.isnan(value.low) or math.isnan(value.high):
            return "--" if tex else "–"
        bound = lambda v: f"{v:.2f}" if abs(v) < 100 else f"{v:.1f}"  # noqa: E731 (a 100-point-wide CI: 1 decimal)
        return math_(f"[{bound(value.low)}, {bound(value.high)}]")
    if isinstance(value, float) and math.isnan(value):
        return "--" if tex else "–"
    if isinstance(value, PValue):
        return math_("< 0.001") if value < 0.001 else f"{value:.3f}"
    if isinstance(value, Signed):
        return math_(f"{round(value, 2) + 0.0:+.2f}")  # + 0.0: no "-0.00"
    if isinstance(value, int) or (hasattr(value, "dtype") and getattr(value, "dtype").kind in "iu"):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:.2f}"
    return latex_escape(str(value)) if tex else str(value)


def markdown(display: pd.DataFrame, notes: list[str] = ()) -> str:
    """A GitHub Markdown table, its notes below it."""
    rows = [[_text(v, tex=False) for v in row] for row in display.itertuples(index=False)]
    lines = ["| " + " | ".join(display.columns) + " |", "|" + "".join("---|" for _ in display.columns)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines + ([""] + list(notes) if notes else [])) + "\n"


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                 "±": r"\ensuremath{\pm}", "Δ": r"\ensuremath{\Delta}", "≥": r"\ensuremath{\geq}",
                 "−": r"\ensuremath{-}",
                 # in math mode: \textsuperscript{\dag} sets the dagger in a Type 3 font in the compiled PDF
                 "†": r"$^\dagger$", "‡": r"$^\ddagger$"}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(c, c) for c in text)


def latex(display: pd.DataFrame, comment: str = "", notes: list[str] = ()) -> str:
    """A booktabs ``tabular`` to ``\\input`` into a paper (needs ``\\usepackage{booktabs}``).

    Set in ``\\small`` with narrower column gaps, so that every table here fits the 345 pt ``\\textwidth``
    of a 10 pt article; ``notes`` go under the bottom rule, ``comment`` (the provenance) in TeX comments.
    """
    align = "".join("l" if display[c].map(lambda v: isinstance(v, str)).all() else "r" for c in display.columns)
    header = " & ".join(latex_escape(c) for c in display.columns)
    body = [" & ".join(_text(v, tex=True) for v in row) + r" \\" for row in display.itertuples(index=False)]
    under = [rf"\multicolumn{{{len(display.columns)}}}{{@{{}}l}}{{\footnotesize {latex_escape(n)}}} \\" for n in notes]
    return "\n".join([
        *(f"% {line}" for line in comment.splitlines()), r"{\small\setlength{\tabcolsep}{4pt}%",
        rf"\begin{{tabular}}{{{align}}}", r"\toprule", header + r" \\", r"\midrule", *body, r"\bottomrule",
        *under, r"\end{tabular}}", "",
    ])
