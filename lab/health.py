"""Warnings on a finished run's curves: a training loss that spiked, or a run that ended near chance.

A marked run is still a result (a run whose loss became NaN is a failure instead, ``lab.train.classifier.Diverged``);
``summary.json`` lists its warnings, the sweep's progress line and ``lab sweep --status`` show them, and
``lab analyze`` names the marked runs in its README and captions. Read from the rows of ``metrics.jsonl``
only, so a record written before these checks existed is checked the same way (where its rows allow).

Why the training loss and not the evaluation loss: measured on the digits recipe without a warm-up (resnet-56,
lr 0.1 from the first iteration, seeds 0-5 at 1 and 2 threads), every run's single-batch training loss climbed
to 2.3-6.5x its first one (7.2-19.1, from 2.9-3.5) and its training error ended at 3-47% where stable runs end
at 0-0.4%; with the recipe's warm-up no run's loss went above 1.1x its first (20 runs of plain/resnet-20/56).
Evaluation losses are no such signal: in evaluation mode BN uses running averages that trail weights moving
fast at lr 0.1, so a healthy plain-20 evaluates at val_loss 26 (chance 2.30) now and then, and a healthy
resnet-56 at 233 where the same weights with BN statistics recomputed on 10 training batches give 0.78.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

SPIKE_FACTOR = 2.0  # a single-batch training loss above this x max(chance, the run's first loss) is a spike
NEAR_CHANCE_POINTS = 10.0  # a final training error within this many points of chance's is "near chance"


def chance_loss(num_classes: int) -> float:
    """Cross-entropy of a uniform guess: ln(classes) (2.30 for 10)."""
    return math.log(num_classes)


def chance_err(num_classes: int) -> float:
    """Error (%) of a guess: 100 (1 - 1/classes) (90 for 10)."""
    return 100.0 * (1.0 - 1.0 / num_classes)


def run_warnings(rows: Iterable[dict[str, Any]], num_classes: int) -> list[str]:
    """The warnings of a run from its metrics rows (in iteration order); empty for a healthy run.

    - the training loss spiked: the largest single-batch loss between two evaluations (``train_loss_max``)
      above ``SPIKE_FACTOR`` times the larger of chance (ln classes) and the run's first loss; the first such
      interval is named;
    - it ended near chance: the last training error within ``NEAR_CHANCE_POINTS`` of a guess's.
    """
    rows = list(rows)
    if not rows or num_classes < 2:
        return []
    chance = chance_loss(num_classes)
    initial = next((r["train_loss_initial"] for r in rows if "train_loss_initial" in r), None)
    start = max(chance, initial if initial is not None else chance)
    warnings, previous = [], 0
    for row in rows:
        peak = row.get("train_loss_max")
        if peak is not None and peak > SPIKE_FACTOR * start:
            began = f"started at {initial:.2f}; " if initial is not None else ""
            warnings.append(f"train loss {_num(peak)} between iterations {previous + 1} and {int(row['iteration'])} "
                            f"({began}chance {chance:.2f})")
            break
        previous = int(row["iteration"])
    last = next((r["train_err"] for r in reversed(rows) if "train_err" in r), None)
    if last is not None and last >= chance_err(num_classes) - NEAR_CHANCE_POINTS:
        warnings.append(f"ended near chance: train_err {last:.1f}% (chance {chance_err(num_classes):.1f}%)")
    return warnings


def _num(value: float) -> str:
    """3 significant digits, in exponent form when large: 16.2, 8.4e+07."""
    return f"{value:.3g}"
