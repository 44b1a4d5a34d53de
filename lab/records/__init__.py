"""The run record on disk: ``lab.records.run`` (``RunRecord``: one run's files, the metrics it records, its
lifecycle: running, finished, failed, pruned, damaged) and ``lab.records.files`` (every file written and read safely).
No torch, but to read a checkpoint; no Lightning, no W&B. The names of both are here: ``from lab.records import ...``.
"""
from __future__ import annotations

from lab.records.files import (  # noqa: F401
    DAMAGED_SUFFIX, MAX_JSON_BYTES, MAX_RECORD_BYTES, append_line, check_folder, is_number, loads_json, note, read_json, read_text,
    set_aside, why, write_atomic, write_atomic_with, write_json_atomic,
)
from lab.records.run import (  # noqa: F401
    BEST_VAL_ERR, CHECKPOINT_FILE, CHECKPOINT_KEYS, CONFIG_FILE, ERRORS, FAILURE_FILE, FINAL_METRICS, LOSSES, METRICS_FILE,
    PRUNED_FILE, RECORD_FILES, SUMMARY_FILE, SUMMARY_KEYS, SUMMARY_METRICS, SUMMARY_NUMBERS, WANDB_ID_FILE, RunFailed,
    RunRecord, UnsafeCheckpoint, finished_summary, read_failure, read_summary, run_dir_for, same_config,
)
