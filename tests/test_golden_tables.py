"""The tiny CNN and tiny VGG runs give the same tables as before the model-family refactor
(issue 16): the golden files under tests/golden/ were written by the code of commit ef01834
(`snakemake --cores 2` on tests/config/tiny.yaml and tiny_vgg.yaml), before
transferability.families replaced the CNN/VGG code paths."""

from __future__ import annotations

from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"


def _compare(run: Path, track: str) -> None:
    expected = sorted((GOLDEN / track).glob("*.csv"))
    assert expected, f"no golden tables under {GOLDEN / track}"
    different = []
    for golden in expected:
        produced = run / "results" / track / "tables" / golden.name
        if produced.read_bytes() != golden.read_bytes():
            different.append(golden.name)
    assert not different, f"{track} tables differ from tests/golden/{track}: {different}"


@pytest.mark.parametrize("track", ["cnn"])
def test_tiny_cnn_tables_are_unchanged(tiny_run, track):
    _compare(tiny_run, track)


def test_tiny_vgg_tables_are_unchanged(vgg_run):
    _compare(vgg_run, "vgg")
