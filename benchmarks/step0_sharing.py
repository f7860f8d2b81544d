"""The untrained model shared by every source (one per seed and number of classes) against the
layout that extracted, measured and fine-tuned it once per source: the CNN track's downstream
stages at the demo's scale, side by side in one run.

    .venv/bin/python benchmarks/step0_sharing.py [--before REV]

``--before`` (default ``7219120``, the last commit with one step-0 checkpoint per source) is
checked out into a temporary git worktree; "shared" is this working tree. Both run the same
config, one after the other with nothing else running: ``config.yaml``'s CNN track (6 sources,
both targets, the demo's extraction, metrics and fine-tuning grids) with one seed, no studies
and pre-training only up to ``300b`` (pre-training is the same work in both layouts; cut short
it leaves the stages that changed to dominate). Each run gets its own data folder (links to
MNIST and FashionMNIST; the derived datasets are made by its own jobs) and work folder.

Measured: wall time and the whole process tree's CPU (``RUSAGE_CHILDREN``: Snakemake and every
job), the jobs per rule, and the jobs' CPU seconds from their benchmark files (in the shared
layout the step-0 jobs' own share too; in the old one step 0 ran inside each source's jobs and
cannot be separated). The two runs' tables are compared file by file; where one differs, the
largest difference of each float column is reported. Writes
``benchmarks/results/step0_sharing.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from _machine import cpu_model  # noqa: E402
from job_overhead import collect  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results"
DATA = REPO / "resources" / "datasets"
BEFORE = "7219120"


def config(data_dir: Path) -> dict:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cnn = cfg["tracks"]["cnn"]
    cnn["seeds"] = [0]
    cnn.pop("studies", None)
    cnn["pretrain"]["checkpoints"] = [c for c in cnn["pretrain"]["checkpoints"]
                                      if c in ("0", "10b", "100b", "300b")]  # fmt: skip
    cfg.update(data_dir=str(data_dir), allow_download=False, run_tracks=["cnn"])
    return cfg


def run(name: str, snakefile: Path, root: Path) -> dict:
    data = root / name / "datasets"
    for base in ("mnist", "fashion_mnist"):
        (data / base).mkdir(parents=True)
        (data / base / "data.npz").symlink_to(DATA / base / "data.npz")
    workdir = root / name / "work"
    workdir.mkdir()
    (workdir / "config.yaml").write_text(yaml.safe_dump(config(data)))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "-d", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--cores", "2"]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{name}: snakemake failed\n{result.stderr[-4000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    jobs = collect(workdir / "results")
    rules = Counter(rule_of(r["job"]) for r in jobs)
    rule_cpu = Counter()
    for r in jobs:
        rule_cpu[rule_of(r["job"])] += r["cpu_s"]
    step0 = sum(r["cpu_s"] for r in jobs if "/initial/" in r["job"])
    return {"setting": name, "wall_s": round(wall, 1), "tree_cpu_s": round(cpu, 1),
            "jobs": len(jobs), "jobs_cpu_s": round(sum(r["cpu_s"] for r in jobs), 1),
            "step0_jobs": sum(1 for r in jobs if "/initial/" in r["job"]),
            "step0_jobs_cpu_s": round(step0, 1), "rules": dict(sorted(rules.items())),
            "rule_cpu_s": {k: round(v, 1) for k, v in sorted(rule_cpu.items())},
            "workdir": str(workdir)}  # fmt: skip


def rule_of(job: str) -> str:
    """A benchmark file's rule (``<track>/benchmarks/<rule>/…``), the untrained model's jobs
    named apart."""
    parts = Path(job).parts
    rule = parts[parts.index("benchmarks") + 1].removesuffix(".tsv")
    return f"{rule} (initial)" if "/initial/" in job else rule


def compare(before: Path, shared: Path) -> dict:
    """Tables of the two runs: which differ, and the largest difference of a float column."""
    found = {}
    for path in sorted((before / "results/cnn/tables").glob("*.csv")):
        other = shared / "results/cnn/tables" / path.name
        if path.read_bytes() == other.read_bytes():
            found[path.name] = "identical"
            continue
        a, b = pd.read_csv(path), pd.read_csv(other)
        if a.shape != b.shape or list(a.columns) != list(b.columns):
            found[path.name] = f"shape/columns differ: {a.shape} vs {b.shape}"
            continue
        worst = {}
        for column in a.columns:
            if a[column].dtype.kind == "f":
                diff = np.nanmax(np.abs(a[column].to_numpy() - b[column].to_numpy()), initial=0)
                if diff > 0:
                    worst[column] = float(diff)
            elif not a[column].astype(str).equals(b[column].astype(str)):
                worst[column] = "values differ"
        found[path.name] = worst
    return found


def markdown(rows: list[dict], tables: dict, before: str) -> str:
    lines = [
        f"`benchmarks/step0_sharing.py` on {cpu_model()}, {os.cpu_count()} CPUs: the demo's CNN "
        "track (6 sources, 2 targets) with one seed, no studies, pre-training to 300b; "
        f"before = {before} (step 0 per source), shared = this tree. One run after the other.",
        "",
        "| layout | wall s | whole tree CPU s | jobs | jobs' CPU s | step-0 jobs | their CPU s |",
        "|---|---|---|---|---|---|---|",
    ]
    keys = ("setting", "wall_s", "tree_cpu_s", "jobs", "jobs_cpu_s", "step0_jobs",
            "step0_jobs_cpu_s")  # fmt: skip
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    a, b = rows
    lines += ["", f"Ratios shared / before: wall {b['wall_s'] / a['wall_s']:.3f}, whole tree CPU "
              f"{b['tree_cpu_s'] / a['tree_cpu_s']:.3f}, jobs' CPU "
              f"{b['jobs_cpu_s'] / a['jobs_cpu_s']:.3f}.", "", "Jobs and their CPU s per rule:",
              "", "| rule | jobs before | jobs shared | CPU s before | CPU s shared |",
              "|---|---|---|---|---|"]  # fmt: skip
    for rule in sorted(set(a["rules"]) | set(b["rules"])):
        cells = [r[key].get(rule, 0) for key in ("rules", "rule_cpu_s") for r in (a, b)]
        lines.append(f"| {rule} | " + " | ".join(map(str, cells)) + " |")
    lines += ["", "Tables, before vs shared:", ""]
    lines += [f"- `{name}`: {verdict}" for name, verdict in tables.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=BEFORE, help="the commit to compare with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="step0_sharing_") as tmp:
        root = Path(tmp)
        tree = root / "before_tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree),
                        args.before], check=True, capture_output=True)  # fmt: skip
        try:
            rows = [run("before", tree / "Snakefile", root),
                    run("shared", REPO / "Snakefile", root)]  # fmt: skip
            tables = compare(Path(rows[0]["workdir"]), Path(rows[1]["workdir"]))
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                           check=False, capture_output=True)  # fmt: skip
    for row in rows:
        row.pop("workdir")
    OUT.mkdir(exist_ok=True)
    result = {"cpu": cpu_model(), "before": args.before, "runs": rows, "tables": tables}
    (OUT / "step0_sharing.json").write_text(json.dumps(result, indent=1) + "\n")
    (OUT / "step0_sharing.md").write_text(markdown(rows, tables, args.before))
    print((OUT / "step0_sharing.md").read_text())


if __name__ == "__main__":
    main()
