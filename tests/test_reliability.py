"""Reliability (SPEC §10): resume after SIGKILL, bit-identical reruns on CPU, bad inputs
answered with the file named and nothing else lost, provenance in every artifact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from test_workflow import SNAKEMAKE, planned_jobs, snakemake, tiny_config

from transferability.artifacts import (
    atomic_path,
    code_version,
    load_checkpoint,
    read_activations,
    read_attrs,
    write_activations,
)
from transferability.jobs.metric_jobs import metric_table

RESULTS = Path("results") / "cnn"


def _start(workdir: Path, config: dict, *args: str) -> subprocess.Popen:
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    cmd = [*SNAKEMAKE, "-d", str(workdir), "--configfile", str(path), *args]
    # a session of its own: the kill reaches Snakemake and every job it started
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip


def _files(root: Path, pattern: str) -> list[Path]:
    return sorted(p.relative_to(root) for p in (root / RESULTS).rglob(pattern))


def test_resume_after_sigkill_gives_the_uninterrupted_results(tiny_run, tmp_path):
    """Kill the whole run (SIGKILL, process group) while a training job runs, resume with
    --unlock and --rerun-incomplete: every table, checkpoint tensor and activation array equals
    those of the uninterrupted run (which also proves two runs from scratch bit-identical on
    CPU), and no partial or temporary file survives."""
    process = _start(tmp_path, tiny_config(), "--cores", "2")
    training_logs = [tmp_path / RESULTS / "logs" / stage for stage in ("finetune", "quanta")]
    deadline = time.monotonic() + 300
    try:
        while not any(d.is_dir() and any(d.rglob("*.log")) for d in training_logs):
            assert process.poll() is None, "the run ended before any training job started"
            assert time.monotonic() < deadline, "no training job started within 300 s"
            time.sleep(0.2)
        time.sleep(1.0)  # inside the training job
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert not (tmp_path / RESULTS / "tables" / "correlations.csv").exists(), "killed too late"
    # what the kill left: complete files under final names only (atomic writes)
    for path in _files(tmp_path, "*.pt"):
        load_checkpoint(tmp_path / path)
    for path in _files(tmp_path, "*.h5"):
        read_activations(tmp_path / path)

    # what a user does after a kill: release Snakemake's lock, then resume
    snakemake(tmp_path, tiny_config(), "--unlock")
    snakemake(tmp_path, tiny_config(), "--cores", "2", "--rerun-incomplete")
    assert planned_jobs(tmp_path, tiny_config()) == []
    assert _files(tmp_path, "*.tmp") == [] and _files(tmp_path, ".*") == []
    tables = _files(tiny_run, "tables/*.csv")
    assert len(tables) >= 12 and tables == _files(tmp_path, "tables/*.csv")
    for path in tables:
        assert (tmp_path / path).read_bytes() == (tiny_run / path).read_bytes(), path
    checkpoints = _files(tiny_run, "*.pt")
    assert checkpoints == _files(tmp_path, "*.pt")
    for path in checkpoints:
        state, _ = load_checkpoint(tmp_path / path)
        reference, _ = load_checkpoint(tiny_run / path)
        assert all(torch.equal(state[k], reference[k]) for k in reference), path
    activations = _files(tiny_run, "*.h5")
    assert activations == _files(tmp_path, "*.h5")
    for path in activations:
        x, labels, _ = read_activations(tmp_path / path)
        y, reference_labels, _ = read_activations(tiny_run / path)
        assert np.array_equal(x, y) and np.array_equal(labels, reference_labels), path


def test_stale_temporary_files_are_removed_by_the_next_write(tmp_path):
    target = tmp_path / "table.csv"
    stale = tmp_path / ".table.csv.abc123.tmp"
    stale.write_text("half a file")
    other = tmp_path / ".other.csv.abc123.tmp"
    other.write_text("another output's")
    with atomic_path(target) as tmp:
        tmp.write_text("complete")
    assert target.read_text() == "complete" and not stale.exists() and other.exists()


def test_corrupted_activation_file_fails_naming_it_and_keeps_other_outputs(tiny_copy):
    path = tiny_copy / RESULTS / "activations/mnist/fashion_mnist/seed0/step3b/pool2.h5"
    path.write_bytes(path.read_bytes()[:200])
    metric_csv = tiny_copy / RESULTS / "metrics/mnist/fashion_mnist/seed0/step3b.csv"
    metric_csv.unlink()  # the metrics job runs again and reads the broken file
    kept = {p: p.read_bytes() for p in (tiny_copy / RESULTS / "tables").glob("*.csv")}
    result = snakemake(tiny_copy, tiny_config(), "--cores", "1", check=False)
    assert result.returncode != 0
    log = (tiny_copy / RESULTS / "logs/metrics/mnist/fashion_mnist/seed0.log").read_text()
    output = result.stdout + result.stderr + log  # the traceback goes to the job's stderr
    assert "cannot read activations file" in output and "step3b/pool2.h5" in output, output[-3000:]
    for table, content in kept.items():
        assert table.read_bytes() == content  # nothing already computed is lost
    assert (tiny_copy / RESULTS / "activations/mnist/fashion_mnist/seed0/step3b/fc1.h5").is_file()


def test_dead_layer_and_one_class_subset_give_nan_with_reasons(tmp_path):
    """A dead layer (all zeros) and a single-class subset: NaN with a note per metric, and the
    rest of the table filled (SPEC §10)."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 10)
    dead = tmp_path / "dead.h5"
    write_activations(dead, np.zeros((40, 8, 3, 3)), labels, np.arange(40), {"layer": "conv2"})
    alive = tmp_path / "alive.h5"
    write_activations(alive, rng.random((40, 16)), labels, np.arange(40), {"layer": "fc1"})
    metrics = ["id", "ss", "rsa", "hscore", "logme", "s3", "s5"]
    table = metric_table([dead, alive], metrics)
    assert len(table) == 2 * len(metrics)
    on_dead = table[table.layer == "conv2"].set_index("metric")
    for name in ("id", "ss", "rsa", "s3"):
        assert np.isnan(on_dead.loc[name, "value"]) and on_dead.loc[name, "note"], name
    assert np.isfinite(table[table.layer == "fc1"]["value"]).all()

    one_class = tmp_path / "one_class.h5"
    write_activations(one_class, rng.random((20, 16)), np.zeros(20, int), np.arange(20),
                      {"layer": "fc1"})  # fmt: skip
    single = metric_table([one_class], ["ss", "rsa", "hscore", "logme", "id"]).set_index("metric")
    for name in ("ss", "rsa", "hscore", "logme"):
        assert np.isnan(single.loc[name, "value"]) and "class" in single.loc[name, "note"], name
    assert np.isfinite(single.loc["id", "value"])  # needs no labels


@pytest.mark.parametrize(
    "target",
    [
        "results/cnn/checkpoints/../../../escaped/seed0/step0.pt",
        "results/cnn/metrics/mnist/../../../../escaped/seed0/step0.csv",
        "results/cnn/checkpoints/mnist/seed0/step../../x.pt",
        "/tmp/escaped/results/cnn/tables/metrics.csv",
    ],
)
def test_wildcards_cannot_escape_results(tiny_run, tmp_path, target):
    result = snakemake(tmp_path, tiny_config(), "-n", target, check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "MissingRuleException" in output or "No rule to produce" in output
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "results").exists()


def test_every_artifact_records_its_provenance(tiny_run):
    _, meta = load_checkpoint(tiny_run / RESULTS / "checkpoints/mnist/seed0/step10b.pt")
    assert meta["code_version"] == code_version()
    protocol = json.loads(meta["protocol"])
    assert protocol["lr"] == tiny_config()["tracks"]["cnn"]["pretrain"]["lr"]
    assert protocol["checkpoints"] == ["0", "3b", "10b"]
    attrs = read_attrs(tiny_run / RESULTS / "activations/fashion_mnist/mnist/seed0/step3b/fc1.h5")
    assert attrs["code_version"] == code_version() and json.loads(attrs["protocol"]) == protocol
    assert json.loads(attrs["extraction"])["compression"] == "lzf"
    with h5py.File(
        tiny_run / RESULTS / "activations/mnist/initial/classes10/seed0/step0/logits.h5"
    ) as f:
        assert f.attrs["code_version"] == code_version()
    assert pd.read_csv(tiny_run / RESULTS / "tables/metrics.csv").shape[0] > 0
