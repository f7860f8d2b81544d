import pytest

from transferability.training.schedule import (
    THESIS_CHECKPOINTS,
    parse_label,
    resolve_checkpoints,
    samples_after,
    sort_labels,
    steps_per_epoch,
)


def test_thesis_grid_batch_64_mnist():
    grid = resolve_checkpoints(list(THESIS_CHECKPOINTS), n_train=60_000, batch_size=64)
    assert [c.label for c in grid] == list(THESIS_CHECKPOINTS)
    per_epoch = 938  # ceil(60000 / 64)
    expected = [
        0,
        1,
        3,
        10,
        30,
        100,
        300,
        per_epoch,
        3 * per_epoch,
        10 * per_epoch,
        30 * per_epoch,
        100 * per_epoch,
    ]
    assert [c.batches for c in grid] == expected
    assert grid[5].samples == 6400
    assert grid[7].samples == 60_000 and grid[7].epochs == 1.0
    assert grid[-1].epochs == 100.0


def test_thesis_grid_batch_32_splits():
    # MNIST split 1 has 30 596 training images in real MNIST: 957 batches of 32 per epoch.
    grid = resolve_checkpoints(list(THESIS_CHECKPOINTS), n_train=30_596, batch_size=32)
    assert grid[6].batches == 300 and grid[6].samples == 9600
    assert grid[7].batches == 957 and grid[7].samples == 30_596
    assert grid[8].samples == 3 * 30_596


def test_partial_last_batch_counts_only_real_samples():
    assert steps_per_epoch(100, 32) == 4
    assert samples_after(4, 100, 32) == 100
    assert samples_after(5, 100, 32) == 132


def test_labels_sort_and_parse():
    assert sort_labels(["1e", "0", "30b", "3b", "100e"]) == ["0", "3b", "30b", "1e", "100e"]
    assert parse_label("300b") == (300, "b")
    for bad in ["", "b", "01b", "3x", "-1b", "1.5e", 3]:
        with pytest.raises(ValueError, match="invalid checkpoint label"):
            parse_label(bad)


def test_colliding_labels_rejected():
    with pytest.raises(ValueError, match="same step"):
        resolve_checkpoints(["0", "938b", "1e"], n_train=60_000, batch_size=64)
