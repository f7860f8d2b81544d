"""What the evaluation of issue 23 costs in the tables step, side by side in one process.

Runs the tables step's evaluation (``pipeline.evaluate_tables``: baselines, correlations,
leaderboard) on the recorded tables of the reproduction run (``docs/reproduction``: 42 models,
15 metrics × 8 layers, 2 targets; 2 604 correlation rows), three ways, each timed in CPU seconds
of this process (``time.process_time``, the median of ``--repeats``):

- ``none``: no bootstrap (the correlations of before issue 23, baselines included);
- ``bootstrap``: the default (2 000 resamples): intervals of ρ and weighted τ for every row,
  the paired comparison with the best baseline and the source-pool stability;
- ``bootstrap, scipy``: the same intervals with ``scipy.stats.rankdata``/``weightedtau`` per
  resample on a sample of rows, scaled to every row (what a direct implementation would cost).

Writes ``benchmarks/results/tables_step.{json,md}`` and prints the table.

    .venv/bin/python benchmarks/tables_step.py [--tables docs/reproduction] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _machine import cpu_model

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parents[1]


def cpu_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=Path, default=REPO / "docs" / "reproduction")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scipy-rows", type=int, default=20)
    args = parser.parse_args()

    from scipy import stats

    from transferability.evaluation import baselines as trivial
    from transferability.evaluation.analysis import Bootstrap, bootstrap_intervals
    from transferability.jobs.tables import evaluate_tables

    read = {n: pd.read_csv(args.tables / f"{n}.csv") for n in ("metrics", "pretrain", "logauc")}
    metrics = read["metrics"][~read["metrics"]["metric"].str.startswith(trivial.PREFIX)]

    def evaluate(bootstrap):
        return evaluate_tables(
            "cnn", read["pretrain"], metrics, None, logauc=read["logauc"],
            baselines=trivial.DEFAULTS["cnn"], bootstrap=bootstrap,
        )  # fmt: skip

    rows = len(evaluate(None)["correlations"])
    seconds = {"none": cpu_seconds(lambda: evaluate(None), args.repeats),
               "bootstrap": cpu_seconds(lambda: evaluate({}), args.repeats)}  # fmt: skip

    # the direct way on a sample of rows of n = 42 models: scipy per resample
    rng = np.random.default_rng(0)
    boot = Bootstrap()
    sample = [(rng.normal(size=42), rng.normal(size=42)) for _ in range(args.scipy_rows)]

    def ours():
        for x, y in sample:
            bootstrap_intervals(x, y, True, boot)

    def direct():
        for x, y in sample:
            idx = boot.indices(len(x))
            [stats.spearmanr(x[i], y[i]) for i in idx]
            [stats.weightedtau(x[i], y[i]) for i in idx]

    per_row_ours = cpu_seconds(ours, 1) / len(sample)
    per_row_scipy = cpu_seconds(direct, 1) / len(sample)
    result = {
        "cpu": cpu_model(), "tables": str(args.tables), "correlation_rows": rows,
        "repeats": args.repeats, "cpu_seconds": seconds,
        "bootstrap_cost_s": seconds["bootstrap"] - seconds["none"],
        "intervals_per_row_s": {"ours": per_row_ours, "scipy_per_resample": per_row_scipy},
        "speedup_vs_scipy_per_resample": per_row_scipy / per_row_ours,
    }  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tables_step.json").write_text(json.dumps(result, indent=2) + "\n")
    where = args.tables.relative_to(REPO) if args.tables.is_relative_to(REPO) else args.tables
    per_row = result["intervals_per_row_s"]
    md = "\n".join([
        f"Tables-step evaluation of `{where}` ({rows} correlation rows, 42 models), CPU seconds "
        f"of one process, median of {args.repeats}; CPU: {result['cpu']}.",
        "",
        "| evaluation | CPU s |",
        "|---|---|",
        f"| no bootstrap (correlations, baselines, leaderboard) | {seconds['none']:.1f} |",
        "| bootstrap 2 000 (intervals, paired comparison with the best baseline, source-pool "
        f"stability) | {seconds['bootstrap']:.1f} |",
        f"| what the bootstrap adds | {result['bootstrap_cost_s']:.1f} |",
        "",
        "Intervals of ρ and weighted τ for one row of n = 42 models (2 000 resamples): "
        f"{per_row['ours'] * 1e3:.1f} ms vectorised here, "
        f"{per_row['scipy_per_resample'] * 1e3:.0f} ms with `scipy.stats.spearmanr` + "
        f"`weightedtau` per resample ({result['speedup_vs_scipy_per_resample']:.0f}× slower; "
        f"{args.scipy_rows} rows).",
        "",
        "    .venv/bin/python benchmarks/tables_step.py",
        "",
    ])  # fmt: skip
    (RESULTS / "tables_step.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
