"""How a claimed trial ended: ``say_ended`` writes it at the end of the trial's log (pruned, stalled, a signal, an
exit code) and ``settle`` tells the study (complete with the summary's metrics, pruned, failed, or queued again
after a stall). The summary, written last and atomically by the trial process, is what makes a run finished."""
from __future__ import annotations

import errno
import os
import signal
from pathlib import Path
from typing import Any

from lab.records import append_line
from lab.sweep.ledger import Claim, Ledger
from lab.sweep.protocol import EXIT_DISK_FULL, FAILURE, MAX_STALLS, N_PARAMS, PRUNED_AT, STALLED, WARNINGS
from lab.sweep.spec import METRICS, SweepSpec
from lab.sweep.storage import disk_full


def say_ended(log: Path, claim: Claim, exitcode: int | None, summary: dict[str, Any] | None, spec: SweepSpec) -> None:
    """End the trial's log with why its process ended, unless it finished; raise ENOSPC where it could not write
    its record (the disk is full: the sweep stops)."""
    from lab.records import run_dir_for

    if claim.pruned is not None and summary is None:
        step, value = claim.pruned
        append_line(log, f"\n[lab sweep] pruned at iteration {step} ({spec.metric} {value:.2f}) by the "
                         f"{spec.pruner_name} pruner\n")
    elif claim.stalled is not None and summary is None:
        append_line(log, f"\n[lab sweep] no progress for {claim.stalled:.0f}s (its stall timeout): the trial "
                         f"process was killed; its run resumes from its checkpoint in a new trial\n")
    elif exitcode != 0:
        from lab.train import EXIT_INTERRUPTED

        ended = ("was interrupted (SIGINT)" if exitcode == EXIT_INTERRUPTED else
                 f"was ended by {signal.Signals(-exitcode).name}" if exitcode < 0 and
                 -exitcode in signal.valid_signals() else f"ended with exit code {exitcode}")
        try:
            append_line(log, f"\n[lab sweep] trial process {ended}{' after writing its summary' if summary else ''}\n")
        except OSError as e:  # a full disk: the sweep stops, saying so once
            if not disk_full(e):
                raise
    if summary is None and exitcode in (EXIT_DISK_FULL, -signal.SIGXFSZ):
        strerror = "a file-size limit" if exitcode == -signal.SIGXFSZ else os.strerror(errno.ENOSPC)
        raise OSError(errno.ENOSPC, strerror, str(run_dir_for(claim.config, claim.run_name)))


def settle(ledger: Ledger, claim: Claim, summary: dict[str, Any] | None, log_dir: Path) -> str | None:
    """Tell the study how ``claim``'s trial ended (``summary``: its run's, None if it did not finish); the line
    for the sweep's progress, or None where the trial's point was queued again (``Ledger.requeue`` says so)."""
    from optuna.trial import TrialState

    from lab.records import RunRecord, read_failure, run_dir_for

    trial, spec, log = claim.trial, ledger.spec, log_dir / f"{claim.run_name}.log"
    if summary is None and claim.pruned is not None:
        step, value = claim.pruned
        RunRecord(run_dir_for(claim.config, claim.run_name)).write_pruned(
            claim.run_name, step, spec.metric, value, spec.pruner_name, claim.config)
        trial.set_user_attr(PRUNED_AT, step)
        ledger.study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
        return f"{claim.run_name} pruned at iteration {step}: {spec.metric} {value:.2f} ({spec.pruner_name} pruner)"
    if summary is None and claim.stalled is not None:
        stalls = trial.user_attrs.get(STALLED, 0) + 1
        reason = f"stalled: no progress for {claim.stalled:.0f}s, killed"
        trial.set_user_attr(FAILURE, reason)
        ledger.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        if stalls < MAX_STALLS:
            ledger.requeue(trial, reason, {STALLED: stalls})
            return None
        ledger.failed += 1
        return f"{claim.run_name} FAILED: {reason} ({stalls} trials in a row); its log: {log}"
    if summary is None:
        ledger.failed += 1
        reason = read_failure(run_dir_for(claim.config, claim.run_name))  # e.g. "diverged at iteration 37"
        trial.set_user_attr(FAILURE, reason or f"see {log}")
        ledger.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        return f"{claim.run_name} FAILED{': ' + reason if reason else ''}; its log: {log}"
    for key in (*METRICS, "wall_s", "steps"):
        if key in summary:
            trial.set_user_attr(key, summary[key])
    trial.set_user_attr(N_PARAMS, summary["params"])
    warnings = summary.get(WARNINGS) or []
    if warnings:
        trial.set_user_attr(WARNINGS, warnings)
    ledger.study.tell(trial, summary[spec.metric], skip_if_finished=True)
    return (f"{claim.run_name} done in {summary['wall_s']:.0f}s: {spec.metric} {summary[spec.metric]:.2f}, "
            f"train_err {summary['train_err']:.2f}" + "".join(f"; WARNING: {w}" for w in warnings))
