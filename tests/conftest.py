"""Fixtures shared by the workflow tests: one tiny end-to-end run per track and test session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_workflow import DATA_DIR, snakemake, tiny_config
from test_workflow_vgg import tiny_vgg_config


def _run(tmp_path_factory, name: str, config: dict) -> Path:
    for dataset in ("mnist", "fashion_mnist"):
        assert (DATA_DIR / dataset / "data.npz").is_file(), f"run `make data` first ({dataset})"
    workdir = tmp_path_factory.mktemp(name)
    snakemake(workdir, config, "--cores", "2")
    return workdir


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    return _run(tmp_path_factory, "tiny", tiny_config())


@pytest.fixture(scope="session")
def vgg_run(tmp_path_factory) -> Path:
    return _run(tmp_path_factory, "tiny_vgg", tiny_vgg_config())


@pytest.fixture(scope="session")
def float64_runs(tmp_path_factory) -> dict[str, Path]:
    """The tiny CNN and VGG runs trained in float64 (the golden tables' runs,
    tests/goldens.py): ``{track: its results/{track}/tables folder}``."""
    from goldens import TRACKS, run_float64

    root = tmp_path_factory.mktemp("float64")
    return {track: run_float64(root / track, track) / "tables" for track in TRACKS}


@pytest.fixture
def tiny_copy(tiny_run, tmp_path) -> Path:
    """A private copy of the completed run (with Snakemake's metadata) for destructive tests."""
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy, symlinks=True)
    return copy
