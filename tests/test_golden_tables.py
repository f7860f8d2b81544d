"""Golden tables (tests/goldens.py says what they hold and why): the stages on fixed inputs and
the tiny runs trained in float64 agree with tests/golden/ on any supported x86-64 CPU, and a
real change in results makes them fail.

``make test`` runs the ``portability``-marked tests twice: with the machine's own kernels and with
every CPU-dispatching library capped at AVX2 (``make test-portability``; tests/goldens.py
``AVX2_CAPS``), so a portability break shows on an AVX-512 machine too.
"""

from __future__ import annotations

import functools
import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from goldens import (
    AVX2_CAPS,
    NOT_PORTABLE,
    PROVENANCE,
    STAGE_ATOL,
    STAGE_RTOL,
    STAGES,
    TRAINING,
    TRAINING_ATOL,
    TRAINING_RTOL,
    compare_folder,
    differences,
    float64_env,
    run_workflow,
    stage_metrics,
    stage_tables,
    tiny_config,
)

from transferability.artifacts import write_csv

# --- the goldens ---------------------------------------------------------------------------


@pytest.mark.portability
def test_golden_provenance_names_commit_and_settings():
    meta = json.loads(PROVENANCE.read_text())
    assert len(meta["commit"]) == 40 and meta["command"] == "make goldens"
    assert meta["dtype"].startswith("float64") and meta["versions"]["torch"]


@pytest.mark.portability
def test_golden_stage_metrics(tmp_path):
    """Every per-model metric on four committed activation files of one model."""
    write_csv(stage_metrics(), tmp_path / "metrics.csv")
    assert compare_folder(STAGES / "expected", tmp_path, STAGE_RTOL, STAGE_ATOL) == []


@pytest.mark.portability
def test_golden_stage_tables(tmp_path):
    """log-AUC, aggregate metrics (c56, QUANTA), correlations from committed per-run CSVs."""
    stage_tables(tmp_path)
    assert compare_folder(STAGES / "expected" / "tables", tmp_path, STAGE_RTOL, STAGE_ATOL) == []


@pytest.mark.portability
@pytest.mark.parametrize("track", ["cnn", "vgg"])
def test_golden_float64_training_tables(float64_runs, track):
    """Every table of the tiny runs (pre-training, extraction, metrics, fine-tuning, the three
    studies) trained in float64."""
    found = compare_folder(TRAINING / track, float64_runs[track], TRAINING_RTOL, TRAINING_ATOL)
    assert found == [], f"{track} tables differ from tests/golden/training/{track}: {found}"


@pytest.mark.portability
def test_golden_caps_take_effect():
    """Under ``make test-portability`` the caps really select the AVX2 kernels (a cap that a
    library ignored would make the second pass a copy of the first)."""
    if os.environ.get("ATEN_CPU_CAPABILITY") == AVX2_CAPS["ATEN_CPU_CAPABILITY"]:
        assert torch.backends.cpu.get_cpu_capability() == "AVX2"
    if os.environ.get("OPENBLAS_CORETYPE") == AVX2_CAPS["OPENBLAS_CORETYPE"]:
        from threadpoolctl import threadpool_info

        blas = [i for i in threadpool_info() if i["internal_api"] == "openblas"]
        assert blas and all(i["architecture"] == "Haswell" for i in blas), blas
    if os.environ.get("NPY_DISABLE_CPU_FEATURES"):
        from numpy._core._multiarray_umath import __cpu_features__

        assert not __cpu_features__["AVX512F"]


# --- the comparison ------------------------------------------------------------------------


def test_comparison_tolerance_and_not_portable_rows(tmp_path):
    golden, produced = tmp_path / "g" / "t.csv", tmp_path / "p" / "t.csv"
    table = pd.DataFrame({"metric": ["ss", "nleep"], "value": [2.0, 0.5], "note": ["", ""]})
    write_csv(table, golden)
    write_csv(table.assign(value=table["value"] * (1 + 1e-11)), produced)
    assert differences(golden, produced, STAGE_RTOL, STAGE_ATOL) == []
    write_csv(table.assign(value=[2.0 * (1 + 1e-8), 0.5]), produced)
    assert differences(golden, produced, STAGE_RTOL, STAGE_ATOL) != []
    assert differences(golden, produced, TRAINING_RTOL, TRAINING_ATOL) == []
    write_csv(table.assign(value=[2.0, 0.7]), produced)  # NLEEP: another local optimum
    assert "nleep" in NOT_PORTABLE and differences(golden, produced, STAGE_RTOL, 0.0) == []
    write_csv(table.assign(value=[2.0, np.nan]), produced)  # ...but never NaN where defined
    assert differences(golden, produced, STAGE_RTOL, 0.0) != []
    write_csv(table.assign(metric=["ss", "id"]), produced)
    assert differences(golden, produced, STAGE_RTOL, 0.0) == ["t.csv:metric"]
    write_csv(table.iloc[:1], produced)
    assert "columns/shape" in differences(golden, produced, STAGE_RTOL, 0.0)[0]


# --- a real change fails -------------------------------------------------------------------


def test_detects_a_metric_change(tmp_path, monkeypatch):
    """A one-line change to a metric (SS scaled by 1 + 1e-6) fails the stage golden."""
    from transferability.metrics import METRICS

    original = METRICS["ss"]
    changed = functools.wraps(original)(lambda *a, **k: original(*a, **k) * (1 + 1e-6))
    monkeypatch.setitem(METRICS, "ss", changed)
    write_csv(stage_metrics(), tmp_path / "metrics.csv")
    found = compare_folder(STAGES / "expected", tmp_path, STAGE_RTOL, STAGE_ATOL)
    assert found and all(f.startswith("metrics.csv:value") for f in found), found


def test_detects_a_log_auc_change(tmp_path, monkeypatch):
    """A one-line change to the log-AUC (checkpoint 0 placed a decade before the first non-zero
    checkpoint instead of half a decade) fails the stage golden."""
    import transferability.evaluation.analysis as analysis

    monkeypatch.setattr(analysis, "ZERO_OFFSET", 0.1)
    stage_tables(tmp_path)
    found = compare_folder(STAGES / "expected" / "tables", tmp_path, STAGE_RTOL, STAGE_ATOL)
    assert any(f.startswith("logauc.csv:logauc") for f in found), found


def test_detects_a_finetune_learning_rate_change(float64_runs, tmp_path):
    """The float64 run with the fine-tuning learning rate 1e-3 → 1.01e-3: Snakemake re-runs the
    fine-tuning jobs (their params changed) and the fine-tuning table leaves the golden."""
    run = tmp_path / "run"
    shutil.copytree(float64_runs["cnn"].parents[2], run, symlinks=True)
    config = tiny_config("cnn")
    config["tracks"]["cnn"]["finetune"]["lr"] = 1.01e-3
    run_workflow(run, config, float64_env())
    found = compare_folder(TRAINING / "cnn", run / "results" / "cnn" / "tables",
                           TRAINING_RTOL, TRAINING_ATOL)  # fmt: skip
    assert any(f.startswith("finetune.csv:train_loss") for f in found), found
    assert not any(f.startswith("pretrain.csv") for f in found), found
