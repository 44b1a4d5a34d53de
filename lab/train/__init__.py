"""Training one run: ``train(config)`` (``lab.train.run``), a pure function of its config, leaving a complete run
record. The rooms: ``classifier`` (the LightningModule), ``schedule`` (the lr schedule), ``datamodules`` (tensors on the
device, or ImageFolder), ``callbacks`` (the run's checkpoint), ``tracking`` (the record's logger and the W&B mirror), ``progress`` (where the
run is: to its coordinator, or as ``lab train``'s lines and bar).
"""
from __future__ import annotations

from lab.train.run import EXIT_INTERRUPTED, interrupt_note, train  # noqa: F401
