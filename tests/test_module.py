"""The workflow imported as a Snakemake module by a host workflow in another folder
(docs/module.md): the host's own config, its results under its own working directory, the same
results as the direct run, nothing written into this repository."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_workflow import REPO, tiny_config

from transferability.artifacts import load_checkpoint, read_activations

#: What a user writes (docs/module.md), pointing at this checkout's Snakefile.
HOST_SNAKEFILE = """\
configfile: "config.yaml"


module transferability:
    snakefile:
        {snakefile}
    config:
        config


use rule * from transferability as transferability_*
"""

#: Where a path resolved against the wrong folder would land in this repository.
REPO_OUTPUT_DIRS = ("results", "resources", ".snakemake")
#: The track's results (results/logs/dataset/… exist only where a run had to obtain the data).
TRACK = Path("results") / "cnn"


def make_host(folder: Path, config: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    snakefile = json.dumps(str(REPO / "Snakefile"))
    (folder / "Snakefile").write_text(HOST_SNAKEFILE.format(snakefile=snakefile))
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


def run_host(folder: Path, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    """`snakemake ARGS` inside the host's folder, as its user runs it (no -s, no -d)."""
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=folder,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def repo_outputs() -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file under this repository's output folders."""
    return {
        str(path.relative_to(REPO)): (path.stat().st_size, path.stat().st_mtime_ns)
        for folder in REPO_OUTPUT_DIRS
        for path in sorted((REPO / folder).rglob("*"))
        if path.is_file()
    }


def files(root: Path, pattern: str = "*") -> list[Path]:
    """The files under a run's results/cnn/ matching ``pattern``, relative to ``root``."""
    return sorted(p.relative_to(root) for p in (root / TRACK).rglob(pattern) if p.is_file())


@pytest.fixture(scope="module")
def host_run(tmp_path_factory) -> Path:
    """The tiny config run by a host workflow: `snakemake --cores 2` in the host's folder."""
    host = make_host(tmp_path_factory.mktemp("host"), tiny_config())
    before = repo_outputs()
    result = run_host(host, "--cores", "2")
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    # the module's rules carry the prefix, and its `rule all` is the host's default target
    assert "transferability_pretrain" in result.stderr + result.stdout
    assert "transferability_all" in result.stderr + result.stdout
    assert repo_outputs() == before, "the host's run wrote into the repository"
    return host


def test_host_results_equal_the_direct_run(host_run, tiny_run):
    """Same files under the host's results/cnn/ as under the direct run's; every CSV (tables
    and per-model files) byte for byte, every checkpoint tensor and activation array exactly."""
    assert (host_run / ".snakemake").is_dir()  # Snakemake's metadata: the host's too
    assert files(host_run) == files(tiny_run)
    tables = files(tiny_run, "tables/*.csv")
    assert len(tables) >= 12
    csvs = files(tiny_run, "*.csv")
    assert len(csvs) > len(tables)  # per-model metric, fine-tuning, study and history files
    for path in csvs:
        assert (host_run / path).read_bytes() == (tiny_run / path).read_bytes(), path
    for path in files(tiny_run, "*.pt"):
        state, _ = load_checkpoint(host_run / path)
        reference, _ = load_checkpoint(tiny_run / path)
        assert state.keys() == reference.keys(), path
        assert all(torch.equal(state[k], reference[k]) for k in reference), path
    for path in files(tiny_run, "*.h5"):
        x, labels, _ = read_activations(host_run / path)
        y, reference_labels, _ = read_activations(tiny_run / path)
        assert np.array_equal(x, y) and np.array_equal(labels, reference_labels), path


def test_host_is_complete_and_reports(host_run):
    """A second call has nothing to do; `snakemake --report` finds the module's captions (the
    global one, the figures' and the tables', whose rules carry the prefix)."""
    dry = run_host(host_run, "-n", timeout=600)
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr
    report = host_run / "report.html"
    result = run_host(host_run, "--report", str(report), timeout=600)
    assert result.returncode == 0, result.stderr[-5000:]
    html = report.read_text()
    for path in files(host_run, "figures/*.png") + files(host_run, "tables/*.html"):
        assert path.name in html, path.name
    # captions of report/figure.rst and report/table.rst, as test_workflow.py's report test
    for caption in ("Fisher 95 % band", "How well each metric predicts transfer"):
        assert caption in html, caption


def test_host_config_missing_a_required_key_names_it(tmp_path):
    """The module validates the host's config against schemas/config.schema.yaml (found beside
    the module's Snakefile) and stops before any job."""
    config = tiny_config()
    del config["tracks"]["cnn"]["metrics"]
    host = make_host(tmp_path / "host", config)
    result = run_host(host, "--cores", "1", timeout=600)
    assert result.returncode != 0
    assert "'metrics' is a required property" in result.stdout + result.stderr
    assert not (host / "results").exists()
