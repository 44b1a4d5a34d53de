"""Turns a study's run records into the paper's tables and figures."""
from analysis.runs import RecordProblems, load_runs, read_study
from analysis.report import write_report

__all__ = ["RecordProblems", "load_runs", "read_study", "write_report"]
