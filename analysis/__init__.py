"""Turns a study's run records into the paper's tables and figures."""
from analysis.runs import load_runs
from analysis.report import write_report

__all__ = ["load_runs", "write_report"]
