"""Checkpoint labels on the thesis's log grid (thesis §2.3.1) and their positions in training.

A label is ``0`` (before any update), ``<k>b`` (after k batches) or ``<k>e`` (after k epochs).
One epoch is ``ceil(n_train / batch_size)`` batches; the last batch of an epoch may be smaller.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

#: The thesis's 12 checkpoints (batch 64 ≈ 1/1000 epoch of MNIST, so 1b … 300b fill the decade
#: below one epoch).
THESIS_CHECKPOINTS: tuple[str, ...] = (
    "0",
    "1b",
    "3b",
    "10b",
    "30b",
    "100b",
    "300b",
    "1e",
    "3e",
    "10e",
    "30e",
    "100e",
)

LABEL_PATTERN = re.compile(r"^(0|[1-9][0-9]*[be])$")


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint label resolved for one dataset size and batch size."""

    label: str
    batches: int  # optimizer steps taken before this checkpoint
    samples: int  # training samples seen before this checkpoint
    epochs: float  # samples / n_train


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    if n_train < 1 or batch_size < 1:
        raise ValueError(f"n_train and batch_size must be >= 1, got {n_train}, {batch_size}")
    return math.ceil(n_train / batch_size)


def samples_after(batches: int, n_train: int, batch_size: int) -> int:
    """Training samples seen after ``batches`` optimizer steps (partial last batch per epoch)."""
    per_epoch = steps_per_epoch(n_train, batch_size)
    full_epochs, rest = divmod(batches, per_epoch)
    return full_epochs * n_train + min(rest * batch_size, n_train)


def parse_label(label: str) -> tuple[int, str]:
    """``"30b"`` → ``(30, "b")``; ``"0"`` → ``(0, "b")``. Raises ``ValueError`` on bad labels."""
    if not isinstance(label, str) or not LABEL_PATTERN.match(label):
        raise ValueError(
            f"invalid checkpoint label {label!r}: expected '0', '<k>b' (batches) or '<k>e' (epochs)"
        )
    if label == "0":
        return 0, "b"
    return int(label[:-1]), label[-1]


def resolve_checkpoints(
    labels: list[str], n_train: int, batch_size: int, *, context: str = ""
) -> list[Checkpoint]:
    """Resolve labels to optimizer-step counts, sorted by training progress.

    Raises ``ValueError`` when two labels land on the same step (e.g. ``1e`` and ``938b`` for
    MNIST at batch 64), since they would be the same checkpoint under two names; the message
    starts with ``context`` (e.g. which target's grid it is).
    """
    per_epoch = steps_per_epoch(n_train, batch_size)
    resolved = []
    for label in labels:
        count, unit = parse_label(label)
        batches = count * per_epoch if unit == "e" else count
        samples = samples_after(batches, n_train, batch_size)
        resolved.append(Checkpoint(label, batches, samples, samples / n_train))
    resolved.sort(key=lambda c: c.batches)
    for a, b in zip(resolved, resolved[1:], strict=False):
        if a.batches == b.batches:
            raise ValueError(
                f"{context}{': ' if context else ''}checkpoints {a.label!r} and {b.label!r} "
                f"are the same step ({a.batches} batches: {n_train} training samples at batch "
                f"size {batch_size} make {per_epoch} batches per epoch); drop one of them"
            )
    return resolved


#: The step label of a model loaded from weights (VGG track): after every training label.
FINAL = "final"


def sort_labels(labels: list[str]) -> list[str]:
    """Labels in training order without knowing the dataset size (epochs after batches;
    ``final``, the label of loaded models, last)."""

    def key(label: str) -> tuple[int, int]:
        if label == FINAL:
            return (2, 0)
        count, unit = parse_label(label)
        return (0 if unit == "b" else 1, count) if count else (-1, 0)

    return sorted(labels, key=key)
