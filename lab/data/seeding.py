"""The seeds of a run's random draws, as a function of (run seed, stream, index): the same batches and augmentations
on any machine, after any resume, for the tensor datasets (``lab.data.tensors``) and ImageFolder (``lab.data.imagefolder``).
"""
from __future__ import annotations


NET_DRAWS = 2  # the stream of a net's own random draws (dropout), one seed per iteration (lab.train.classifier)


def seed_for(seed: int, stream: int, index: int) -> int:
    """A seed for draw ``index`` of ``stream`` (0: permutations, 1: augmentation, ``NET_DRAWS``) of a run seeded
    ``seed``."""
    return (seed * 1_000_003 + stream * 998_244_353 + index) % (2**63)
