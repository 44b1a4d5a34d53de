"""The run record on disk: ``lab.records.run`` (``RunRecord``: one run's files and its lifecycle: running, finished,
failed, pruned, damaged), ``lab.records.metrics`` (the metrics a run records, and ``metrics.jsonl``),
``lab.records.checkpoint`` (``last.ckpt``, read without running code), ``lab.records.folder`` (the run folder as a
place: no link out, holds a run, emptied for a fresh start) and ``lab.records.files`` (every file written and read
safely).
No torch, but to read a checkpoint; no Lightning, no W&B. Their names are all here: ``from lab.records import ...``.
"""
from __future__ import annotations

from lab.records.files import (  # noqa: F401
    DAMAGED_SUFFIX, MAX_JSON_BYTES, MAX_RECORD_BYTES, append_line, check_folder, is_number, loads_json, note, read_json, read_text,
    set_aside, why, write_atomic, write_atomic_with, write_json_atomic,
)
from lab.records.checkpoint import CHECKPOINT_KEYS, Checkpoint, UnsafeCheckpoint  # noqa: F401
from lab.records.metrics import (  # noqa: F401
    BEST_VAL_ERR, ERRORS, FINAL_METRICS, LOSSES, SUMMARY_KEYS, SUMMARY_METRICS, SUMMARY_NUMBERS, MetricsFile,
)
from lab.records.run import (  # noqa: F401
    CHECKPOINT_FILE, CONFIG_FILE, FAILURE_FILE, METRICS_FILE, PRUNED_FILE, RECORD_FILES, SUMMARY_FILE, WANDB_ID_FILE, RunFailed,
    RunRecord, finished_summary, read_failure, read_summary, run_dir_for, same_config,
)
