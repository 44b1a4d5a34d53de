"""Records of the previous main (``tests/previous-main``, README there: a sweep's journal and runs, its analysis,
a killed run) resume and analyse unchanged under today's code."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import lab

PREVIOUS = Path(__file__).resolve().parent / "previous-main"
MADE_IN = "/tmp/compat/project"  # where make.py's project was: the journal names its run folders there


def previous_project(tmp_path: Path) -> Path:
    """The previous main's project, with its runs folder under ``tmp_path``, as a user would have it."""
    root = tmp_path / "project"
    for folder in ("experiments", "sweeps"):
        shutil.copytree(PREVIOUS / folder, root / folder)
    shutil.copytree(PREVIOUS / "records", root / "runs")
    journal = root / "runs" / "tiny" / "optuna.journal"
    journal.write_text(journal.read_text().replace(MADE_IN, str(root)))
    return root


def undated(text: str) -> str:
    """An analysis file less the time it was written (``analysed 2026-12-05T10:33:38Z by``)."""
    return re.sub(r"analysed \S+ by", "analysed ... by", text)


def rounded(text: str) -> str:
    """``text`` with every number written with 9 or more decimals at 9 significant digits (float sums' last bits
    depend on the thread count)."""
    return re.sub(r"-?\d+\.\d{9,}(?:e-?\d+)?", lambda m: f"{float(m.group(0)):.9g}", text)


def test_its_study_analyses_to_the_same_tables_captions_and_readme(tmp_path, lab_here):
    root = previous_project(tmp_path)
    result = lab_here("analyze", "tiny", cwd=root)
    assert result.returncode == 0, result.stderr
    new = root / "runs" / "tiny" / "analysis"
    text = {p.name for p in new.iterdir() if p.suffix in (".csv", ".md", ".tex", ".txt")}
    assert text == {p.name for p in (PREVIOUS / "analysis").iterdir()}
    for name in sorted(text):
        now, then = undated((new / name).read_text()), undated((PREVIOUS / "analysis" / name).read_text())
        if name.startswith("layer_responses"):  # forward passes at analysis time: the last bits vary with threads
            now, then = rounded(now), rounded(then)
        assert now == then, name
    assert {p.stem for p in new.glob("*.pdf")} == {p.stem for p in new.glob("*.png")} == {
        f"{figure}-{width}" for figure in ("degradation", "error_vs_depth", "layer_responses") for width in ("1col", "2col")}


def test_its_journal_is_continued_and_nothing_finished_runs_again(lab_here, tmp_path):
    root = previous_project(tmp_path)
    before = {p: p.read_bytes() for p in (root / "runs" / "tiny").rglob("*") if p.is_file() and p.name != "optuna.journal"}
    result = lab_here("sweep", "tiny", cwd=root)
    assert result.returncode == 0, result.stderr
    assert "already finished" in result.stdout + result.stderr, result.stdout + result.stderr
    assert {p: p.read_bytes() for p in before} == before  # no record rewritten


def test_its_killed_run_resumes_and_ends_as_the_run_never_killed(tmp_path):
    root = previous_project(tmp_path)
    run = root / "runs" / "killed" / "plain-8-s0"
    assert [json.loads(line)["iteration"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [5]
    result = lab("train", "experiments/tiny.yaml", "model.arch=plain", "track.study=killed", cwd=root, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    whole = [json.loads(line) for line in (PREVIOUS / "whole-metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [5, 10]
    for resumed, never_killed in zip(rows, whole):  # the same CPU code path: equal but for the last bits of a sum
        assert resumed == pytest.approx(never_killed, rel=1e-5)
    assert json.loads((run / "summary.json").read_text())["steps"] == 10
