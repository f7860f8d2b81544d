"""Target jobs: the CNN track's fixed extraction subset of an array target
(:func:`target_subset`) and an image target's fixed 80/20 split index and extraction subset
(:func:`split_target`)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from transferability.artifacts import write_csv
from transferability.data.arrays import balanced_subset
from transferability.data.targets import ArrayTarget

log = logging.getLogger(__name__)


def target_subset(
    dataset_path: str | Path, out_csv: str | Path, *, per_class: int, seed: int
) -> pd.DataFrame:
    """The fixed, class-balanced target test samples fed to every model (SPEC §6.1)."""
    labels = ArrayTarget(dataset_path).labels("test")
    index = balanced_subset(labels, per_class=per_class, seed=seed)
    table = pd.DataFrame({"sample_index": index, "label": labels[index]})
    write_csv(table, out_csv)
    return table


def split_target(
    root: str | Path,
    index_csv: str | Path,
    subset_csv: str | Path,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    per_class: int = 30,
    subset_seed: int = 0,
    subset_split: str = "test",
    target_format: str = "imagefolder",
    allow_download: bool = False,
) -> pd.DataFrame:
    """The target's fixed 80/20 class-stratified split (``index_csv``: every model is fine-tuned
    and evaluated on the same images) and its extraction subset (``subset_csv``: ``per_class``
    images per class of ``subset_split``, with ``sample_index`` = their row in the split
    index)."""
    from transferability.data.folders import extraction_subset, write_split_index

    index = write_split_index(
        root,
        index_csv,
        test_fraction=test_fraction,
        seed=seed,
        format=target_format,
        allow_download=allow_download,
    )
    subset = extraction_subset(index, per_class=per_class, seed=subset_seed, split=subset_split)
    subset = subset.rename_axis("sample_index").reset_index()
    write_csv(subset, subset_csv)
    log.info(
        "target %s: %d images, %d test, %d for extraction",
        root,
        len(index),
        int((index["split"] == "test").sum()),
        len(subset),
    )
    return subset
