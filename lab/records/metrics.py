"""A run's metrics: their names (errors in percent, losses; what a summary holds, ``check_summary``) and
``metrics.jsonl`` (``MetricsFile``: one JSON row per evaluation, appended one line per write, read back without
trusting it)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from lab.records.files import append_line, is_number, loads_json, note, read_json, read_text, set_aside, why, write_atomic

# The metrics of a run, named once. Errors are percentages; each is the last evaluation's in the summary.
ERRORS = ("train_err", "val_err", "test_err")
LOSSES = ("train_loss", "val_loss", "test_loss")
FINAL_METRICS = (*ERRORS, *LOSSES)  # the summary's final metrics
BEST_VAL_ERR = "best_val_err"  # the lowest val_err of any evaluation
SUMMARY_METRICS = (*ERRORS, BEST_VAL_ERR, *LOSSES)  # every metric of a summary: what a sweep can select
# What readers (tables, figures) take from every summary, and its config (without which `lab sweep` runs it again).
SUMMARY_KEYS = ("run", "arch", "depth", "shortcut", "seed", "dataset", "params", *ERRORS, "steps", "config")
SUMMARY_NUMBERS = ("depth", "seed", "params", *ERRORS, "steps")


class MetricsFile:
    """A run's ``metrics.jsonl`` at ``path``: one row (a JSON object of numbers with an ``iteration``) per line."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def write_rows(self, rows: list[dict[str, Any]]) -> None:
        """Replace the metrics with ``rows`` (those of an earlier attempt kept up to its checkpoint), atomically."""
        write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in rows))

    def append_row(self, row: dict[str, Any]) -> None:
        """Append one row (one line, one write; a failed write leaves no torn line)."""
        append_line(self.path, json.dumps(row) + "\n")

    def rows_until(self, resume_at: int, name: str) -> list[dict[str, Any]] | None:
        """The rows of ``metrics.jsonl`` up to iteration ``resume_at``; None when one of them is unreadable.

        Rows are appended in iteration order, so an unreadable line that comes after the row of ``resume_at``
        (a torn last line: a crash mid-write) is past the checkpoint, and is dropped: training logs it again.
        One before it is needed, and lost: the file is set aside and the run starts again (None).
        """
        path = self.path
        rows: list[dict[str, Any]] = []
        last = None  # the iteration of the last readable row
        for number, line in enumerate(read_text(path).splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = loads_json(line)
                if not isinstance(row, dict) or not isinstance(row.get("iteration", 0), (int, float)):
                    raise ValueError("not a row")
            except ValueError:
                if last is not None and last >= resume_at:
                    note(f"{path}: line {number} is unreadable (torn by a crash?); it comes after the checkpoint of "
                         f"iteration {resume_at}, so it is dropped and {name} resumes")
                    break
                damaged = set_aside(path)
                note(f"{path}: line {number} is unreadable; set aside as {damaged.name}; "
                     f"{name} starts again from iteration 0")
                return None
            last = row.get("iteration", 0)
            if last <= resume_at:
                rows.append(row)
        return rows

    def history(self) -> tuple[list[dict[str, Any]], list[str]]:
        """(every readable row of ``metrics.jsonl``, what is wrong with the others): a line that is not a row
        (torn by a crash, say) is a problem, and so is a missing or unreadable file."""
        path = self.path
        try:
            text = read_text(path)
        except FileNotFoundError:
            return [], [f"{path} is missing"]
        except (OSError, ValueError) as e:
            return [], [f"{path} is not readable ({why(e)})"]
        rows, problems = [], []
        for number, line in enumerate(text.split("\n"), start=1):  # numbered as editors and `sed -n` count lines
            if not line.strip():
                continue
            try:
                row = loads_json(line)
            except ValueError as e:
                problem = f"{e.msg}: column {e.colno}" if isinstance(e, json.JSONDecodeError) else why(e)
                problems.append(f"{path} line {number} is not readable ({problem})")
                continue
            if not (isinstance(row, dict) and "iteration" in row and all(is_number(v) for v in row.values())
                    and math.isfinite(row["iteration"])):
                problems.append(f"{path} line {number} is not a metrics row (a JSON object of numbers with an iteration)")
                continue
            rows.append(row)
        return rows, problems


def check_summary(path: Path, run: str) -> tuple[dict[str, Any] | None, str | None]:
    """(the summary, None), or (None, what is wrong with it): every key of ``SUMMARY_KEYS`` there, the
    numbers numbers, and the run ``run`` (its folder's name)."""
    try:
        summary = read_json(path)
    except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None, f"{path} is not readable ({why(e)})"
    if not isinstance(summary, dict):
        return None, f"{path} is not a summary (a JSON {type(summary).__name__}, not an object)"
    missing = [k for k in SUMMARY_KEYS if k not in summary]
    if missing:
        return None, f"{path} is not a summary (no {', '.join(missing)})"
    wrong = [k for k in SUMMARY_NUMBERS if not is_number(summary[k])]
    if wrong:
        return None, f"{path} is not a summary ({', '.join(f'{k} is {summary[k]!r}' for k in wrong)}, not a number)"
    if not isinstance(summary["config"], dict):
        return None, f"{path} is not a summary (its config is not an object)"
    if summary["run"] != run:  # a copied folder would count its run twice
        return None, f"{path} is the summary of run {summary['run']!r}, not of {run} (a copied folder?)"
    return summary, None
