"""Golden tables that hold on every supported x86-64 CPU and still catch a change in results.

float32 training is bit-reproducible on one machine but not across instruction sets: PyTorch's
CPU kernels, oneDNN and MKL pick AVX-512 or AVX2 code at run time, round differently, and
training amplifies the difference (issue 22: 0.015 in a fine-tuning accuracy, 14 % in a metric,
0.25 in ρ between an AVX-512 and an AVX2 run of the tiny CNN config). So the goldens split what
is deterministic across machines from what is not:

* **stage goldens** (``tests/golden/stages/``): fixed, committed inputs — four activation files
  of one model and the per-run CSVs of the tiny CNN run — through ``metric_table`` and
  ``build_tables``; float64 arithmetic on identical inputs, compared at :data:`STAGE_RTOL`.
* **training goldens** (``tests/golden/training/{cnn,vgg}/``): the tables of the tiny CNN and
  VGG runs trained in float64 (``TRANSFERABILITY_DTYPE=float64``, the same code path with
  torch's default dtype switched), compared at :data:`TRAINING_RTOL`.

Metrics in :data:`NOT_PORTABLE` are compared only for being defined where the golden is (their
value depends on float rounding itself, see its comment); the same-machine bit-identity of
everything, those included, is tests/test_reliability.py's resume test.

Regenerate (one command; writes ``tests/golden/PROVENANCE.json`` with the commit and settings)::

    make goldens                 # = .venv/bin/python tests/goldens.py
    make test-portability        # = .venv/bin/python tests/goldens.py --test-capped
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
GOLDEN = TESTS / "golden"
STAGES = GOLDEN / "stages"
TRAINING = GOLDEN / "training"
PROVENANCE = GOLDEN / "PROVENANCE.json"
DATA_DIR = REPO / "resources" / "datasets"

#: Fixed inputs in float64: between the machine's own kernels (AVX-512) and the AVX2 caps below
#: (1 or 2 BLAS threads) the stage outputs differed by at most 1.6e-13 relative (H-score's
#: pseudo-inverse of an ill-conditioned covariance), correlations by 3.4e-14: 1e-9 leaves a
#: margin of ~10^4 and still fails a change of 1e-8 (docs/reliability.md).
STAGE_RTOL, STAGE_ATOL = 1e-9, 1e-12
#: float64 training, same comparison: losses, λ and accuracies ≤ 2e-15 relative (accuracies and
#: ρ identical); metrics ≤ 5e-11 (CNN, H-score) and ≤ 9.2e-10 (VGG, SFDA); Pearson r ≤ 1.1e-9
#: absolute. 1e-6 covers an activation that rounds to
#: the neighbouring float32 on another machine (≈ 6e-8 in one value) with a margin of ~10^3; a
#: real change (a learning rate, a metric's formula) moves values by far more (tests).
TRAINING_RTOL, TRAINING_ATOL = 1e-6, 1e-9

#: Metrics whose value depends on float rounding itself, not only on the data: NLEEP fits a
#: Gaussian mixture (k-means start, EM to sklearn's tol 1e-3) with 5·K components; on the tiny
#: runs (100 samples, 50 components) a 1e-16 change in the inputs' arithmetic (OpenBLAS Haswell
#: vs SkylakeX kernels) moves it to another local optimum: 19 % apart. Compared for NaN pattern.
NOT_PORTABLE = {"nleep": "EM converges to another local optimum under another BLAS kernel"}

#: The environment that caps every CPU-dispatching library at AVX2 (``make test-portability``):
#: PyTorch's own kernels, oneDNN, MKL (torch's BLAS), NumPy/SciPy's OpenBLAS and NumPy's SIMD
#: dispatch. Features a CPU lacks are ignored, so it is harmless on an AVX2-only machine.
AVX2_CAPS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "OPENBLAS_CORETYPE": "Haswell",
    "NPY_DISABLE_CPU_FEATURES": "AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL",
}

#: The model whose activation files are the metric stage's fixed input (tiny CNN run).
STAGE_MODEL = Path("activations/mnist/fashion_mnist/seed0/step10b")
STAGE_LAYERS = ("input", "pool2", "fc1")
#: The tables ``build_tables`` writes (rules/common.smk's TABLES).
STAGE_TABLES = ("pretrain", "metrics", "finetune", "logauc", "correlations", "leaderboard")
TRACKS = ("cnn", "vgg")


# --- the tiny runs -------------------------------------------------------------------------


def tiny_config(track: str) -> dict:
    name = {"cnn": "tiny.yaml", "vgg": "tiny_vgg.yaml"}[track]
    config = yaml.safe_load((TESTS / "config" / name).read_text())
    config["data_dir"] = str(DATA_DIR)
    return config


def float64_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    from transferability.training.loop import DTYPE_ENV

    return {**os.environ, DTYPE_ENV: "float64", **(extra or {})}


def run_workflow(workdir: Path, config: dict, env: Mapping[str, str], *args: str) -> None:
    """``snakemake --cores 2`` on ``config`` in ``workdir`` (raises with the log tail)."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--configfile", str(path), "--cores", "2", *args]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=dict(env))
    if result.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")


def run_float64(workdir: Path, track: str) -> Path:
    """The tiny run of ``track`` trained in float64; returns its ``results/{track}`` folder."""
    run_workflow(workdir, tiny_config(track), float64_env())
    return workdir / "results" / track


# --- the stages on fixed inputs ----------------------------------------------------------


def stage_inputs() -> dict[str, list[str] | str]:
    """The committed per-run files of the tiny CNN run that ``build_tables`` reads."""
    root = STAGES / "inputs" / "cnn"
    return {
        "histories": sorted(map(str, root.glob("checkpoints/*/seed*/history.csv"))),
        "metrics": sorted(map(str, root.glob("metrics/*/*/seed*/step*.csv"))),
        "finetune": sorted(map(str, root.glob("finetune/*/*/seed*/step*.csv"))),
        "quanta_scores": str(root / "quanta_scores.csv"),
    }


def stage_metrics() -> pd.DataFrame:
    """``metric_table`` on the committed activation files with every per-model metric of the
    tiny config."""
    from transferability.jobs.metric_jobs import metric_table
    from transferability.metrics import metric_names

    model = STAGES / "inputs" / "cnn" / STAGE_MODEL
    names = [m for m in tiny_config("cnn")["tracks"]["cnn"]["metrics"]
             if m not in metric_names("aggregate")]  # fmt: skip
    layers = [model / f"{layer}.h5" for layer in STAGE_LAYERS]
    return metric_table(layers, names, model / "logits.h5")


def stage_tables(out: Path) -> dict[str, pd.DataFrame]:
    """``build_tables`` on the committed per-run CSVs, written under ``out``."""
    from transferability.jobs.tables import build_tables
    from transferability.run import config as tconfig

    inputs = stage_inputs()
    track = tiny_config("cnn")["tracks"]["cnn"]
    return build_tables(
        "cnn", inputs["histories"], inputs["metrics"], inputs["finetune"],
        {name: out / f"{name}.csv" for name in STAGE_TABLES}, metrics=track["metrics"],
        quanta_scores=inputs["quanta_scores"],
        quanta_lambda_init=track["studies"]["quanta"].get("score_lambda_init", 0.9),
        baselines=tconfig.baselines(tiny_config("cnn"), "cnn"), bootstrap={},
    )  # fmt: skip


# --- comparison ----------------------------------------------------------------------------


def differences(golden: Path, produced: Path, rtol: float, atol: float) -> list[str]:
    """What differs between two tables: a shape/column change, a non-float column that is not
    equal, or float values beyond ``rtol``/``atol`` (NaN only where the golden has NaN); rows
    of :data:`NOT_PORTABLE` metrics only by their NaN pattern. Empty when they agree."""
    if not produced.is_file():
        return [f"{golden.name}: not produced"]
    want, got = pd.read_csv(golden), pd.read_csv(produced)
    if list(want.columns) != list(got.columns) or want.shape != got.shape:
        return [f"{golden.name}: columns/shape {list(got.columns)} {got.shape}, "
                f"golden {list(want.columns)} {want.shape}"]  # fmt: skip
    loose = (
        want["metric"].isin(list(NOT_PORTABLE))
        if "metric" in want
        else pd.Series(False, want.index)
    )
    bad = []
    for column in want.columns:
        a, b = want[column], got[column]
        if a.dtype.kind == "f" or b.dtype.kind == "f":
            a, b = a.to_numpy(float), b.to_numpy(float)
            close = np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=True)
            close |= loose.to_numpy() & (np.isnan(a) == np.isnan(b))
            if not close.all():
                i = int(np.flatnonzero(~close)[0])
                bad.append(f"{golden.name}:{column} ({(~close).sum()} rows; row {i}: golden "
                           f"{a[i]!r}, got {b[i]!r})")  # fmt: skip
        elif column != "note" and not a.fillna("").astype(str).equals(b.fillna("").astype(str)):
            bad.append(f"{golden.name}:{column}")
    return bad


def compare_folder(golden_dir: Path, produced_dir: Path, rtol: float, atol: float) -> list[str]:
    expected = sorted(golden_dir.glob("*.csv"))
    assert expected, f"no golden tables under {golden_dir}"
    found = []
    for golden in expected:
        found += differences(golden, produced_dir / golden.name, rtol, atol)
    return found


# --- regeneration --------------------------------------------------------------------------


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()


def provenance() -> dict:
    import scipy
    import sklearn
    import torch

    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")
    return {
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _git("rev-parse", "HEAD"),
        "uncommitted_changes": bool(
            _git(
                "status",
                "--porcelain",
                "--",
                "workflow",
                "rules",
                "Snakefile",
                "schemas",
                "tests/config",
            )
        ),  # fmt: skip
        "command": "make goldens",
        "dtype": "float64 (TRANSFERABILITY_DTYPE) for the training goldens",
        "cpu": cpu,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "caps_in_environment": {k: os.environ[k] for k in AVX2_CAPS if k in os.environ},
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__,
        },  # fmt: skip
    }


def regenerate() -> None:
    """Run the tiny float64 runs, copy their tables and the stage inputs, recompute the stage
    outputs from the copied inputs, and record the provenance."""
    from transferability.artifacts import write_csv

    with tempfile.TemporaryDirectory() as tmp:
        runs = {track: run_float64(Path(tmp) / track, track) for track in TRACKS}
        shutil.rmtree(GOLDEN, ignore_errors=True)
        for track, results in runs.items():
            shutil.copytree(results / "tables", TRAINING / track)
        cnn, inputs = runs["cnn"], STAGES / "inputs" / "cnn"
        for pattern in ("checkpoints/*/seed*/history.csv", "metrics/*/*/seed*/step*.csv",
                        "finetune/*/*/seed*/step*.csv"):  # fmt: skip
            for path in cnn.glob(pattern):
                (inputs / path.relative_to(cnn)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, inputs / path.relative_to(cnn))
        shutil.copy2(cnn / "tables" / "quanta_scores.csv", inputs / "quanta_scores.csv")
        (inputs / STAGE_MODEL).mkdir(parents=True)
        for layer in (*STAGE_LAYERS, "logits"):
            shutil.copy2(cnn / STAGE_MODEL / f"{layer}.h5", inputs / STAGE_MODEL / f"{layer}.h5")
    expected = STAGES / "expected"
    expected.mkdir(parents=True)
    write_csv(stage_metrics(), expected / "metrics.csv")
    stage_tables(expected / "tables")
    PROVENANCE.write_text(json.dumps(provenance(), indent=2) + "\n")
    print(f"goldens written under {GOLDEN}:\n{PROVENANCE.read_text()}")


def test_capped() -> int:
    """The ``portability``-marked golden tests with :data:`AVX2_CAPS` set (exit code)."""
    if "avx2" not in Path("/proc/cpuinfo").read_text().split():
        print("test-portability: this CPU has no AVX2, the caps cannot select AVX2 kernels")
        return 1
    print("golden tests under", " ".join(f"{k}={v!r}" for k, v in AVX2_CAPS.items()), flush=True)
    cmd = [sys.executable, "-m", "pytest", "-q", str(TESTS / "test_golden_tables.py"),
           "-m", "portability"]  # fmt: skip
    return subprocess.run(cmd, cwd=REPO, env={**os.environ, **AVX2_CAPS}).returncode


if __name__ == "__main__":
    if sys.argv[1:] == ["--test-capped"]:
        sys.exit(test_capped())
    elif sys.argv[1:]:
        sys.exit(f"usage: {sys.argv[0]} [--test-capped]  (no argument: regenerate the goldens)")
    regenerate()
