"""The learning-rate schedule of a run (``LrSchedule``): warm-up, steps at milestones or on a plateau, in iterations."""
from __future__ import annotations

from lab.config import OptimConfig


WARMUP_WINDOW = 10  # training batches averaged to decide the end of a warm-up (LrSchedule.observe_train_err)


class LrSchedule:
    """Multiplier of ``optim.lr`` at an iteration: an optional warm-up, then step decays at milestones or on plateaus.

    LambdaLR calls it after every optimizer step and puts its ``__dict__`` into checkpoints (and back on
    resume), so all of its state lives there, as plain numbers: the plateau counters and the end of the
    warm-up survive an interrupted run exactly.
    """

    def __init__(self, optim: OptimConfig) -> None:
        self.schedule, self.gamma, self.milestones = optim.schedule, optim.gamma, optim.milestone_steps
        self.warmup_steps, self.warmup_until_err = optim.warmup_steps, optim.warmup_until_err
        self.warmup_factor = (optim.warmup_lr or optim.lr) / optim.lr
        self.min_factor = (optim.min_lr or 0.0) / optim.lr
        self.patience, self.threshold = optim.plateau_patience, optim.plateau_threshold
        # A fixed warm-up ends at warmup_steps; one until an error ends when observe_train_err says so.
        fixed = optim.warmup_until_err is None and optim.warmup_steps > 0
        self.warmup_ended: int | None = optim.warmup_steps if fixed else None
        self.recent_errs: list[float] = []
        self.best_val_err: float | None = None
        self.bad_evals = 0
        self.drops = 0

    def __call__(self, step: int) -> float:
        if step < (self.warmup_ended if self.warmup_ended is not None else self.warmup_steps):
            return self.warmup_factor
        if self.schedule == "plateau":
            return max(self.gamma**self.drops, self.min_factor)
        return self.gamma ** sum(step >= m for m in self.milestones)

    def warming_up_until_err(self) -> bool:
        """Whether training errors are still wanted (each one costs a device sync)."""
        return self.warmup_until_err is not None and self.warmup_ended is None

    def observe_train_err(self, step: int, err: float) -> None:
        """The training error (%) of iteration ``step``'s batch; ends the warm-up from iteration ``step + 1`` on.

        He 2015, Section 4.2 (ResNet-110): "0.01 to warm up the training until the training error is below
        80% (about 400 iterations), and then go back to 0.1". The error is the mean over the last
        ``WARMUP_WINDOW`` batches: one batch of 128 at 80% error has a standard error of 3.5 points, so a
        single lucky batch would end the warm-up early; ten (1.1 points) cost a few iterations of delay at
        most. ``warmup_steps`` caps the warm-up whatever the error.
        """
        self.recent_errs = (self.recent_errs + [err])[-WARMUP_WINDOW:]
        mean = sum(self.recent_errs) / len(self.recent_errs)
        if mean < self.warmup_until_err or step + 1 >= self.warmup_steps:
            self.warmup_ended = step + 1

    def observe_val_err(self, err: float) -> bool:
        """One evaluation's val error (%); True when it divides lr by 10 (``gamma``): a plateau.

        He 2015, Section 3.4 (ImageNet): "The learning rate starts from 0.1 and is divided by 10 when the
        error plateaus": ``patience`` evaluations in a row without beating the best val error by more
        than ``threshold`` points.
        """
        if self.schedule != "plateau":
            return False
        if self.best_val_err is None or err < self.best_val_err - self.threshold:
            self.best_val_err, self.bad_evals = err, 0
            return False
        self.bad_evals += 1
        if self.bad_evals < self.patience or self.gamma**self.drops <= self.min_factor * (1 + 1e-9):  # at min_lr
            return False
        self.drops, self.bad_evals = self.drops + 1, 0
        return True
