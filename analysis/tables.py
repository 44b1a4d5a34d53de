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
from lab.nets import run_name
from lab.reference import CIFAR10_PARAMS, CIFAR10_RESNET110_RUNS, CIFAR10_TEST_ERR_SOURCE, paper_test_err

ALPHA = 0.05  # below this, a difference from option A is more than seed noise (Welch's t-test)
WITHIN_NOISE, NOT_TESTED = "within seed noise", "n/a"


@dataclass(frozen=True)
class MeanStd:
    """A mean ± standard deviation cell; ``std`` is NaN with one seed."""

    mean: float
    std: float


def net_label(arch: str, depth: int, shortcut: str, explicit_a: bool = False) -> str:
    """``plain-56``, ``resnet-110-B``; ``explicit_a`` names option A too (``resnet-20-A``), as in an ablation."""
    if explicit_a and arch == "resnet" and shortcut == "A":
        return f"resnet-{depth}-A"
    return run_name(arch, depth, shortcut)


def means(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation (ddof=1) over seeds for every arch x depth x shortcut."""
    grouped = runs.groupby(NET_KEYS)
    table = grouped[["train_err", "val_err", "test_err"]].agg(["mean", "std"])
    table.columns = [f"{metric}_{stat}" for metric, stat in table.columns]
    table.insert(0, "params", grouped["params"].first())
    table.insert(0, "seeds", grouped["seed"].nunique())
    return table.reset_index()


def wants_shortcuts(runs: pd.DataFrame) -> bool:
    """An ablation has something to compare: several shortcut options, or plain and residual at one depth."""
    resnets = runs[runs["arch"] == "resnet"]
    both = set(runs.loc[runs["arch"] == "plain", "depth"]) & set(resnets["depth"])
    return resnets["shortcut"].nunique() > 1 or bool(both)


def _welch(group: pd.Series, reference: pd.Series) -> float:
    """Welch's t-test p-value (unequal variances); NaN with fewer than 2 seeds on either side."""
    if len(group) < 2 or len(reference) < 2:
        return math.nan
    return float(stats.ttest_ind(group, reference, equal_var=False).pvalue)


def _note(p: float, is_reference: bool, has_reference: bool) -> str:
    if is_reference:
        return "reference"
    if not has_reference:
        return "no option A"
    if math.isnan(p):
        return NOT_TESTED
    return WITHIN_NOISE if p >= ALPHA else ""


def shortcuts(runs: pd.DataFrame) -> pd.DataFrame:
    """He 2015, Table 3: every net against the ResNet with option-A shortcuts at the same depth.

    One row per (arch, depth, shortcut): parameters, seeds, train/test error mean and std over seeds,
    the difference of mean test error from option A, and Welch's t-test p-value of the test errors
    against option A's. Plain rows are compared with option A too (plain vs residual, Table 2).
    """
    table = means(runs).drop(columns=["val_err_mean", "val_err_std"])
    diffs, pvalues, notes = [], [], []
    for row in table.itertuples():
        ref = runs[(runs["arch"] == "resnet") & (runs["depth"] == row.depth) & (runs["shortcut"] == "A")]
        own = runs[(runs["arch"] == row.arch) & (runs["depth"] == row.depth) & (runs["shortcut"] == row.shortcut)]
        is_ref = row.arch == "resnet" and row.shortcut == "A"
        p = math.nan if is_ref or ref.empty else _welch(own["test_err"], ref["test_err"])
        diffs.append(row.test_err_mean - ref["test_err"].mean() if len(ref) else math.nan)
        pvalues.append(p)
        notes.append(_note(p, is_ref, not ref.empty))
    table.insert(2, "net", [net_label(a, d, s, True) for a, d, s in zip(table["arch"], table["depth"], table["shortcut"])])
    table["test_err_diff_vs_A"], table["p_vs_A"], table["note"] = diffs, pvalues, notes
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
    table.insert(2, "net", [run_name(a, d, "A") for a, d in zip(table["arch"], table["depth"])])
    table["paper_params"] = table["depth"].map(CIFAR10_PARAMS)
    table["paper_test_err"] = [paper_test_err(a, "cifar10").get(d, math.nan) for a, d in zip(table["arch"], table["depth"])]
    table["test_err_diff"] = table["test_err_mean"] - table["paper_test_err"]
    table["paper_source"] = [CIFAR10_TEST_ERR_SOURCE.get(a, "") if not math.isnan(p) else ""
                             for a, p in zip(table["arch"], table["paper_test_err"])]
    is_110 = (table["arch"] == "resnet") & (table["depth"] == 110)
    r = CIFAR10_RESNET110_RUNS
    table.loc[is_110, "paper_source"] += f"; best of {r['runs']}, mean {r['mean']} ± {r['std']}"
    return table.drop(columns=["val_err_mean", "val_err_std"])


# --- what a reader sees: one cell per value, mean ± std together ---


def display_means(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "net": [run_name(a, d, s) for a, d, s in zip(table["arch"], table["depth"], table["shortcut"])],
        "params": table["params"],
        "seeds": table["seeds"],
        "train err (%)": _pm(table, "train_err"),
        "val err (%)": _pm(table, "val_err"),
        "test err (%)": _pm(table, "test_err"),
    })


def display_shortcuts(table: pd.DataFrame, tex: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """Cells and notes of the ablation; in LaTeX the note column becomes a mark on the p-value, so the table fits."""
    noisy = table["note"] == WITHIN_NOISE
    pvalues = [Marked(PValue(p), "†") if tex and n else PValue(p) for p, n in zip(table["p_vs_A"], noisy)]
    cells = pd.DataFrame({
        "net": table["net"],
        "params": table["params"],
        "seeds": table["seeds"],
        "train err (%)": _pm(table, "train_err"),
        "test err (%)": _pm(table, "test_err"),
        "Δ test": _as(Signed, table["test_err_diff_vs_A"]),
        "p": pd.Series(pvalues, index=table.index, dtype=object),
    })
    notes = ["Δ test, p: against option A at the same depth (Welch's t-test)."]
    if tex:
        return cells, notes + ["† p ≥ 0.05: within seed noise. --: under 2 seeds, or option A."]
    return cells.assign(note=table["note"]), notes


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
        "difference": _as(Signed, table["test_err_diff"]),
    })
    notes = ["He 2015: Table 6 (ResNets); † plain nets, read off Figure 6 (±0.3);",
             f"‡ best of {r['runs']} runs (mean {r['mean']} ± {r['std']}). difference: ours − He 2015."]
    return cells, notes


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


class Signed(float):
    """A difference, printed with its sign."""


class PValue(float):
    """A p-value, printed to 3 decimals, or ``< 0.001``."""


def _text(value: object, tex: bool) -> str:
    """One cell as Markdown or LaTeX text; numbers in LaTeX go in math mode, for a true minus sign."""
    math_ = (lambda s: f"${s}$") if tex else (lambda s: s)
    if isinstance(value, Marked):
        return _text(value.value, tex) + (latex_escape(value.mark) if tex else value.mark)
    if isinstance(value, MeanStd):
        if math.isnan(value.mean):
            return "--" if tex else "–"
        if math.isnan(value.std):
            return math_(f"{value.mean:.2f}")
        return math_(f"{value.mean:.2f} \\pm {value.std:.2f}") if tex else f"{value.mean:.2f} ± {value.std:.2f}"
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
                 "−": r"\ensuremath{-}", "†": r"\textsuperscript{\dag}", "‡": r"\textsuperscript{\ddag}"}


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
