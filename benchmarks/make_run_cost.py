"""`make run` from a fresh clone, with and without the scheduler fix: wall time, the whole
process tree's CPU, and the Snakemake process's own CPU.

Run it in a fresh clone after `make install` (so that both runs start from the same state and
the install is not timed), with nothing else running:

    .venv/bin/python benchmarks/make_run_cost.py            # both runs, in this order:
      upstream  TRANSFERABILITY_SCHEDULER_FIX=off make run   (Snakemake 9.27.1 as shipped)
      fix       make run                                     (the workflow's scheduler fix)

Before each run `results/`, `.snakemake/` and the derived datasets (`mnist_noise`, ...: made by
the workflow's `dataset` jobs) are removed; MNIST and FashionMNIST stay.
The whole tree's CPU is this script's `RUSAGE_CHILDREN` (every process `make run` started,
Snakemake included); the Snakemake process's own CPU (its threads, not its jobs) is sampled from
`/proc/<pid>/stat` every 0.5 s until it exits (the last sample is at most 0.5 s early), as are
its thread count. Writes ``benchmarks/results/make_run_cost.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "workflow"))
from _machine import cpu_model  # noqa: E402

from transferability.data.arrays import DATASET_ROOT, DERIVED_DATASETS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results"
TICKS = os.sysconf("SC_CLK_TCK")
SETTINGS = {"upstream": {"TRANSFERABILITY_SCHEDULER_FIX": "off"}, "fix": {}}


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def main_snakemake(make_pid: int) -> int | None:
    """The `snakemake --cores` process that `make run` started (not `--report`, not jobs)."""
    for pid in children(make_pid):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"snakemake" in c for c in cmd[:2]) and b"--report" not in cmd:
            return pid
    return None


def cpu_and_threads(pid: int) -> tuple[float, int] | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # after the command: state(0) ... utime(11) stime(12) ... num_threads(17)
    return (int(fields[11]) + int(fields[12])) / TICKS, int(fields[17])


def measure(setting: str) -> dict:
    derived = [REPO / DATASET_ROOT / name for name in DERIVED_DATASETS]
    for path in (REPO / "results", REPO / ".snakemake", *derived):
        shutil.rmtree(path, ignore_errors=True)
    env = dict(os.environ, **SETTINGS[setting])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    make = subprocess.Popen(["make", "run"], cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    own, threads, pid = 0.0, 0, None
    while make.poll() is None:
        pid = pid or main_snakemake(make.pid)
        sample = cpu_and_threads(pid) if pid else None
        if sample:
            own, threads = sample[0], max(threads, sample[1])
        time.sleep(0.5)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if make.returncode != 0:
        raise SystemExit(f"make run ({setting}) exited {make.returncode}")
    tree = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    jobs = sum(
        float(line.split("\t")[-1])
        for bench in (REPO / "results").rglob("benchmarks/**/*.tsv")
        for line in bench.read_text().splitlines()[1:]
        if line.strip()
    )
    return {
        "setting": setting,
        "wall_s": round(wall, 1),
        "tree_cpu_s": round(tree, 1),
        "snakemake_cpu_s": round(own, 1),
        "snakemake_peak_threads": threads,
        "jobs_cpu_s": round(jobs, 1),
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "# `make run` with and without the scheduler fix",
        "",
        f"`benchmarks/make_run_cost.py` on {cpu_model()}, {os.cpu_count()} CPUs; a fresh clone "
        "after `make install`, nothing else running, `results/`, `.snakemake/` and the derived "
        "datasets removed before each run. Tree CPU = every process `make run` started; "
        "Snakemake CPU = the main `snakemake` process alone (its threads); jobs CPU = the sum "
        "of the jobs' `benchmark:` files (`cpu_time`).",
        "",
        "| setting | wall | tree CPU s | Snakemake CPU s | Snakemake peak threads | jobs CPU s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        minutes, seconds = divmod(round(r["wall_s"]), 60)
        lines.append(
            f"| {r['setting']} | {minutes} min {seconds:02d} s | {r['tree_cpu_s']:.0f} "
            f"| {r['snakemake_cpu_s']:.0f} | {r['snakemake_peak_threads']} "
            f"| {r['jobs_cpu_s']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    args = parser.parse_args(argv)
    rows = []
    for setting in args.settings:
        rows.append(measure(setting))
        print(json.dumps(rows[-1]), flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "make_run_cost.json").write_text(json.dumps(rows, indent=1) + "\n")
    (OUT / "make_run_cost.md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
