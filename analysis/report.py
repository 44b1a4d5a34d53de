"""``lab analyze``: a study's tables (CSV, Markdown, LaTeX) and figures (PDF, PNG at two widths), with provenance.

Provenance (study, runs, seeds, hardware, code version, dates) is kept out of the figures: it goes into a
caption file beside each figure, into comment lines of each ``.tex`` table and into the ``README.md``
of the analysis folder, which lists every file written. Runs left out (failed ones, and with ``--partial`` the
records that could not be read) are named there and counted in the provenance.
"""
from __future__ import annotations

import functools
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from analysis import figures, tables
from analysis.responses import layer_responses
from analysis.runs import NET_KEYS, RecordProblems, no_runs, read_study, unanalysed_families
from lab.config import ConfigError
from lab.records import write_atomic

SUMMARY_DROP = ["run_dir"]  # where records lay on the machine that analysed them: not a result


def provenance(study: str, runs: pd.DataFrame, analysed: str | None = None) -> str:
    """What was run, how many seeds, on what hardware, at which code version, and when."""
    analysed = analysed or f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ}"
    seeds = runs.groupby(NET_KEYS)["seed"].nunique()
    seed_text = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"
    nets = "; ".join(
        f"{tables.net_label(a, d, s)} (seeds {', '.join(map(str, sorted(g['seed'])))})"
        for (a, d, s), g in runs.groupby(NET_KEYS)
    )
    steps = ", ".join(map(str, sorted(runs["steps"].astype(int).unique())))
    return "\n".join([
        f"study: {study}; {len(runs)} runs on {', '.join(sorted(set(runs['dataset'])))}, "
        f"{seed_text} seeds per net, {steps} iterations",
        f"nets: {nets}",
        f"hardware: {_joined(runs['device_name'])}; torch {_joined(runs['torch'])}",
        f"code version: {_joined(runs['code_version'])}",
        f"runs finished {runs['finished'].min()} to {runs['finished'].max()}; "
        f"analysed {analysed} by `lab analyze {study}`",
    ])


def _quote_first(notes: list[str], shown: int = 2) -> str:
    return "; ".join(notes[:shown]) + (f"; and {len(notes) - shown} more" if len(notes) > shown else "")


def _joined(column: pd.Series) -> str:
    return ", ".join(sorted(set(column.astype(str))))


def _write_table(out: Path, stem: str, table: pd.DataFrame, md: tuple, tex: tuple, note: str) -> list[Path]:
    """``stem.csv`` at full precision; ``stem.md`` and ``stem.tex`` from (cells, notes) as a reader sees them."""
    paths = [out / f"{stem}.csv", out / f"{stem}.md", out / f"{stem}.tex"]
    write_atomic(paths[0], table.to_csv(index=False))
    write_atomic(paths[1], tables.markdown(*md))
    write_atomic(paths[2], tables.latex(tex[0], note, tex[1]))
    return paths


def _write_figure(out: Path, stem: str, draw, data: pd.DataFrame, caption: str, note: str) -> list[Path]:
    """``stem-1col`` and ``stem-2col`` (PDF and PNG) and ``stem.caption.txt`` (caption, then provenance)."""
    paths = []
    for columns in (1, 2):
        paths += figures.save(draw(data, columns), out / f"{stem}-{columns}col")
    text = out / f"{stem}.caption.txt"
    write_atomic(text, f"{caption}\n\nProvenance:\n{note}\n")
    return paths + [text]


def _captions(runs: pd.DataFrame) -> dict[str, str]:
    seeds = runs.groupby(NET_KEYS)["seed"].nunique()
    over = f"mean over {seeds.min()} seeds" if seeds.min() == seeds.max() else f"mean over {seeds.min()}-{seeds.max()} seeds"
    data = runs["dataset"].iloc[0]
    paper = " Dotted lines with crosses: He 2015 (Table 6; plain nets read off Figure 6)." if data == "cifar10" else ""
    return {
        "degradation": f"Training on {data} (cf. He 2015, Figure 6): dashed lines are training error (over the training "
                       f"batches since the previous evaluation), bold lines test error; lines are the {over}, shaded "
                       f"bands span the minimum to the maximum over seeds.",
        "error_vs_depth": f"Final training (left/top) and test (right/bottom) error vs depth on {data}: {over}, error "
                          f"bars from the minimum to the maximum over seeds.{paper}",
        "layer_responses": f"Standard deviations of layer responses on the {data} test set (cf. He 2015, Figure 7): "
                           f"the output of each 3x3 layer after BN and before the addition and ReLU, over all test "
                           f"images, channels and positions, from each run's final checkpoint. Top: layers in the "
                           f"net's order; bottom: sorted in descending order. Dashed: plain nets; solid: ResNets (option A "
                           f"where the study has it; every option is in layer_responses.csv); "
                           f"{over} (sorted per seed, then averaged by rank).",
    }


DESCRIPTIONS = {
    "summary": "one row per finished run: final errors, parameters, iterations, wall time, hardware, code version, "
               "`warnings` of unstable runs (full precision)",
    "curves": "one row per evaluation of every run: train/val/test error and loss, lr; `iteration` is an integer",
    "means": "mean ± std (ddof=1) and the mean's 95% CI (t-based) over seeds per net",
    "shortcuts": "He 2015 Table 3-style ablation: every net against the ResNet with option-A shortcuts at the same "
                 "depth: difference of mean test error with its 95% CI and p (Welch's t-test), and a verdict: better, "
                 "worse, no detectable difference, or too few seeds (under 3 on either side: no test)",
    "table6": "He 2015 Table 6: our CIFAR-10 test error (mean ± std) next to the paper's, the difference with its 95% CI",
    "degradation": "He 2015 Figure 6: training (dashed) and test (bold) error vs iterations, min..max band over seeds",
    "error_vs_depth": "final training and test error vs depth, bars min..max over seeds",
    "layer_responses": "He 2015 Figure 7: std of every 3x3 layer's response on the test set, original order and sorted "
                       "(`.csv`: per run and layer)",
}


def _stem(path: Path) -> str:
    return path.name.split(".")[0].removesuffix("-1col").removesuffix("-2col")


def _failed_line(failed: list[tuple[str, str]], shown: int | None = None, kind: str = "failed") -> str:
    """``left out 2 failed runs: RUN (diverged at iteration 37), ...``: every one of them, or the first ``shown``
    (``kind``: failed, or pruned: stopped early by a sweep's pruner)."""
    named = ", ".join(f"{r} ({why})" for r, why in failed[:shown])
    more = f", and {len(failed) - shown} more" if shown is not None and len(failed) > shown else ""
    return f"left out {len(failed)} {kind} run{'s' * (len(failed) != 1)}: {named}{more}"


def marked_runs(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """(run, its warnings) for every run that ``lab.health`` marked (a loss spike, an end near chance)."""
    marked = runs[runs["warnings"].fillna("").astype(str) != ""]
    return list(zip(marked["run"], marked["warnings"]))


def _marked_sentence(marked: list[tuple[str, str]]) -> str:
    """The captions' line on marked runs: they are drawn (they are results), and named."""
    if not marked:
        return ""
    runs = ", ".join(run for run, _ in marked)
    return (f" Marked as unstable and drawn all the same ({len(marked)} run{'s' * (len(marked) != 1)}, listed with "
            f"why in the analysis README): {runs}.")


def _readme(study: str, written: list[Path], notes: dict[str, str], left_out: list[str] = (),
            marked: list[tuple[str, str]] = ()) -> str:
    """The analysis folder's front door: every file, what it holds, and its provenance."""
    lines = [f"# Analysis of `{study}`", "", "Written by `lab analyze`; regenerate rather than edit.", "",
             "| files | what they hold |", "| --- | --- |"]
    for stem in dict.fromkeys(_stem(p) for p in written):
        names = ", ".join(f"`{p.name}`" for p in written if _stem(p) == stem)
        lines.append(f"| {names} | {DESCRIPTIONS.get(stem, '')} |")
    lines += [
        "",
        "Figures come at two widths, drawn at that size (text >= 7 pt, TrueType fonts): `-1col` is 3.3 in wide "
        "for `\\columnwidth`, `-2col` 6.9 in for `\\textwidth` of a two-column paper; `NAME.caption.txt` holds "
        "each figure's caption and provenance. Tables are booktabs `tabular`s: `\\usepackage{booktabs}`, then "
        "`\\input{shortcuts.tex}` inside a `table`; their provenance is in their first (comment) lines.",
        "",
    ]
    if marked:
        lines += ["## Marked runs", "",
                  "Still results (drawn and counted), but their training was unstable or they ended near chance "
                  "(lab/health.py says how this is measured); look at their curves before drawing a conclusion:", "",
                  *[f"- {run}: {warnings}" for run, warnings in marked], ""]
    if left_out:
        lines += ["## Left out", "", *[f"- {line}" for line in left_out], ""]
    for title, note in notes.items():
        lines += [f"## Provenance: {title}", "", *[f"- {line}" for line in note.splitlines()], ""]
    return "\n".join(lines)


def write_report(runs_dir: Path, study: str, out: Path, storage: str | None = None, partial: bool = False,
                 responses_log_y: bool | None = None) -> list[Path]:
    """Write every table and figure of ``study`` into ``out``; returns the paths written.

    Failed runs (``failure.json``, no summary) and runs a sweep's pruner stopped (``pruned.json``) are left out
    and counted in the README and provenance. A record
    that cannot be read, or a complete trial of the study (``storage``, see ``read_study``) without its run,
    raises ``RecordProblems`` before anything is written; with ``partial`` the report is written from the
    runs that are there, and the README says what was left out.
    """
    found = read_study(runs_dir, study, storage)
    if found.problems and not partial:
        raise RecordProblems(study, found.problems)
    if found.others and not partial:
        raise ConfigError(f"{unanalysed_families(found.others)}; pass --partial to analyse the other runs")
    if found.others:
        found.problems.append(unanalysed_families(found.others))
    runs, curves = found.runs, found.curves
    for problem in found.problems:  # --partial: said, then left out
        print(f"lab analyze: {problem}", file=sys.stderr)
    if runs.empty:
        raise no_runs(runs_dir, study, found.failed)
    left_out, extra = [], ""  # lines of the README's "Left out"; lines added to every provenance note
    if found.failed:
        left_out.append(_failed_line(found.failed))
        extra += "\n" + _failed_line(found.failed)
        print(f"lab analyze: {_failed_line(found.failed, shown=3)}", file=sys.stderr)  # one line, however many
    if found.pruned:  # stopped early on purpose: not results, and not failures either
        left_out.append(_failed_line(found.pruned, kind="pruned"))
        extra += "\n" + _failed_line(found.pruned, kind="pruned")
        print(f"lab analyze: {_failed_line(found.pruned, shown=3, kind='pruned')}", file=sys.stderr)
    if found.problems:
        left_out += [f"left out (--partial): {p}" for p in found.problems]
        extra += (f"\nanalysed with --partial: left out {len(found.problems)} problem"
                  f"{'s' * (len(found.problems) != 1)} with run records ({_quote_first(found.problems)})")
        print(f"lab analyze: --partial: analysed the {len(runs)} runs that are there, leaving out what is named "
              f"above (listed in {out / 'README.md'})", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    analysed = f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ}"
    note = provenance(study, runs, analysed) + extra
    notes = {"all files unless stated below": note}
    written = [out / "summary.csv", out / "curves.csv"]
    write_atomic(written[0], runs.drop(columns=SUMMARY_DROP).to_csv(index=False))  # full precision: no float_format
    write_atomic(written[1], curves.to_csv(index=False))
    table = tables.means(runs)
    written += _write_table(out, "means", table, tables.display_means(table), tables.display_means(table, tex=True), note)
    if tables.wants_shortcuts(runs):
        table = tables.shortcuts(runs)
        md, tex = tables.display_shortcuts(table), tables.display_shortcuts(table, tex=True)
        written += _write_table(out, "shortcuts", table, md, tex, note)
    if set(runs["dataset"]) == {"cifar10"}:
        table = tables.table6(runs)
        cells = tables.display_table6(table)
        written += _write_table(out, "table6", table, cells, cells, note)
    marked = marked_runs(runs)
    if marked:
        print(f"lab analyze: {len(marked)} run{'s' * (len(marked) != 1)} marked as unstable, kept and named in "
              f"{out / 'README.md'}: {_quote_first([f'{r}: {w}' for r, w in marked], 3)}", file=sys.stderr)
    captions = {stem: caption + _marked_sentence(marked) for stem, caption in _captions(runs).items()}
    written += _write_figure(out, "degradation", figures.degradation, curves, captions["degradation"], note)
    written += _write_figure(out, "error_vs_depth", figures.error_vs_depth, runs, captions["error_vs_depth"], note)
    responses, skipped = layer_responses(runs)
    if skipped:  # one line, not one per run: a study of 27 ImageFolder runs would print 27
        print(f"layer responses: left out {len(skipped)} of {len(runs)} runs ({_quote_first(skipped)})")
    if not responses.empty:
        used = provenance(study, runs[runs["run"].isin(set(responses["run"]))], analysed) + extra
        write_atomic(out / "layer_responses.csv", responses.to_csv(index=False))
        written += [out / "layer_responses.csv"]
        draw = functools.partial(figures.layer_responses, log_y=responses_log_y)  # None: log when they span > 10x
        written += _write_figure(out, "layer_responses", draw, responses,
                                 captions["layer_responses"], used)
        if used != note:
            notes["layer_responses"] = used
    readme = out / "README.md"
    write_atomic(readme, _readme(study, written, notes, left_out, marked))
    return written + [readme]
