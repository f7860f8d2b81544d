"""The tiny CNN and tiny VGG runs give the same tables as before the model-family refactor
(issue 16): the golden files under tests/golden/ were written by the code of commit ef01834
(`snakemake --cores 2` on tests/config/tiny.yaml and tiny_vgg.yaml), before
transferability.families replaced the CNN/VGG code paths.

Every value must be identical except the evaluation losses (``*_loss`` columns other than
``train_loss``): since issue 17 CPU evaluation runs in smaller batches (faster, see
``training.EVAL_RUN_SAMPLES``), which sums the same per-sample losses in another order, so
they may differ by float rounding (≤ 1.3e-7 relative when changed); accuracies, λ and training
losses stay byte-identical.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"
#: Relative tolerance of the evaluation-loss columns (float32 losses summed in another order).
EVAL_LOSS_RTOL = 1e-6


def _is_eval_loss(column: str) -> bool:
    return column.endswith("_loss") and column != "train_loss"


def _differences(golden: Path, produced: Path) -> list[str]:
    if produced.read_bytes() == golden.read_bytes():
        return []
    want, got = pd.read_csv(golden), pd.read_csv(produced)
    if list(want.columns) != list(got.columns) or want.shape != got.shape:
        return [f"{golden.name}: columns/shape {list(got.columns)} {got.shape}"]
    bad = []
    for column in want.columns:
        a, b = want[column], got[column]
        if _is_eval_loss(column):
            same = np.allclose(a, b, rtol=EVAL_LOSS_RTOL, atol=0.0, equal_nan=True)
        else:
            same = a.equals(b)
        if not same:
            bad.append(f"{golden.name}:{column}")
    return bad


def _compare(run: Path, track: str) -> None:
    expected = sorted((GOLDEN / track).glob("*.csv"))
    assert expected, f"no golden tables under {GOLDEN / track}"
    different = []
    for golden in expected:
        different += _differences(golden, run / "results" / track / "tables" / golden.name)
    assert not different, f"{track} tables differ from tests/golden/{track}: {different}"


def test_eval_loss_tolerance_is_narrow(tmp_path):
    """The comparison itself: a loss off by 1e-7 relative passes, one off by 1e-5 or any change
    in an accuracy fails."""
    golden, produced = tmp_path / "golden.csv", tmp_path / "produced.csv"
    table = pd.DataFrame({"test_loss": [2.0, 0.5], "test_accuracy": [0.1, 0.9]})
    table.to_csv(golden, index=False)
    table.assign(test_loss=table["test_loss"] * (1 + 1e-7)).to_csv(produced, index=False)
    assert _differences(golden, produced) == []
    table.assign(test_loss=table["test_loss"] * (1 + 1e-5)).to_csv(produced, index=False)
    assert _differences(golden, produced) == ["golden.csv:test_loss"]
    table.assign(test_accuracy=[0.1, 0.902]).to_csv(produced, index=False)
    assert _differences(golden, produced) == ["golden.csv:test_accuracy"]


@pytest.mark.parametrize("track", ["cnn"])
def test_tiny_cnn_tables_are_unchanged(tiny_run, track):
    _compare(tiny_run, track)


def test_tiny_vgg_tables_are_unchanged(vgg_run):
    _compare(vgg_run, "vgg")
