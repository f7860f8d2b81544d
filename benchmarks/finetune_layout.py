"""The demo's CNN fine-tuning job before and after issue 26 (fine-tuning's bookkeeping shared by
the CNN and image tracks, targets read through ``transferability.data.targets``), side by side
in one run.

    .venv/bin/python benchmarks/finetune_layout.py [--before REV] [--repeats N]

``--before`` (default ``8563202``, the last commit of the flat layout) is checked out into a
temporary git worktree; "after" is this working tree. Both run the same job, alternating,
each in its own process (``PYTHONPATH`` = that tree's library): the demo's fine-tuning
(``config.yaml``: lr 1e-4, batch 64, checkpoints 0 … 100b, 1 000 evaluation images, the
multi-run trainer with 4 runs together on CPU) of four thesis-CNN checkpoints (untrained models
of seeds 0-3, the same files for both) on full FashionMNIST, 1 thread. Measured: the job's wall
time and the process's CPU time (``RUSAGE_CHILDREN``); the two layouts' curves are compared byte
by byte. Writes ``benchmarks/results/finetune_layout.{json,md}``.
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
from pathlib import Path

from _machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "resources" / "datasets"
PROTOCOL = {"lr": 1.0e-4, "batch_size": 64, "checkpoints": ["0", "1b", "3b", "10b", "30b", "100b"],
            "train_samples": None, "eval_samples": 1000}  # fmt: skip
IMPORTS = {"before": "from transferability.pipeline import finetune",
           "after": "from transferability.jobs.finetune import finetune"}  # fmt: skip
JOB = """
import json, sys, torch
{import_line}
args = json.loads(sys.argv[1])
finetune(args["checkpoints"], args["dataset"], args["curves"], target="fashion_mnist", seed=0,
         protocol=args["protocol"], threads=1, device="cpu")
"""


def make_checkpoints(folder: Path) -> dict[str, str]:
    from transferability.jobs.sources import initial_model

    paths = {}
    for seed in range(4):
        path = folder / f"seed{seed}.pt"
        initial_model(path, num_classes=10, seed=seed)
        paths[f"{seed}"] = str(path)
    return paths


def run_job(tree: Path, layout: str, checkpoints: dict, out: Path) -> dict:
    curves = {step: str(out / f"curve{step}.csv") for step in checkpoints}
    args = {"checkpoints": checkpoints, "dataset": str(DATA / "fashion_mnist" / "data.npz"),
            "curves": curves, "protocol": PROTOCOL}  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tree / "workflow")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    code = JOB.format(import_line=IMPORTS[layout])
    subprocess.run([sys.executable, "-c", code, json.dumps(args)], check=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "curves": curves}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="8563202")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        old = tmp / "before_tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(old),
                        args.before], check=True, capture_output=True)  # fmt: skip
        try:
            checkpoints = make_checkpoints(tmp)
            trees = {"before": old, "after": REPO}
            runs: dict[str, list[dict]] = {"before": [], "after": []}
            for r in range(args.repeats):
                for layout in ("before", "after") if r % 2 == 0 else ("after", "before"):
                    out = tmp / f"{layout}{r}"
                    out.mkdir()
                    runs[layout].append(run_job(trees[layout], layout, checkpoints, out))
            same = all(
                Path(a).read_bytes() == Path(b).read_bytes()
                for x, y in zip(runs["before"], runs["after"], strict=True)
                for a, b in zip(x["curves"].values(), y["curves"].values(), strict=True)
            )
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)],
                           check=True)  # fmt: skip
    summary = {
        layout: {
            "wall_s": sorted(r["wall_s"] for r in rs),
            "cpu_s": sorted(r["cpu_s"] for r in rs),
        }
        for layout, rs in runs.items()
    }
    med = {k: v["wall_s"][len(v["wall_s"]) // 2] for k, v in summary.items()}
    cpu = {k: v["cpu_s"][len(v["cpu_s"]) // 2] for k, v in summary.items()}
    result = {"cpu": cpu_model(), "before": args.before, "repeats": args.repeats,
              "protocol": PROTOCOL, "runs": summary, "curves_byte_identical": same,
              "wall_ratio_after_before": med["after"] / med["before"],
              "cpu_ratio_after_before": cpu["after"] / cpu["before"]}  # fmt: skip
    out = REPO / "benchmarks" / "results"
    (out / "finetune_layout.json").write_text(json.dumps(result, indent=1) + "\n")
    table = [
        "# Demo CNN fine-tuning job, flat layout vs stage packages (issue 26)",
        "",
        f"CPU: {result['cpu']}; 1 thread; 4 checkpoints on full FashionMNIST, demo protocol; "
        f"{args.repeats} alternating repeats; median shown.",
        "",
        "| layout | wall s (median) | CPU s (median) |",
        "|---|---|---|",
        f"| before ({args.before}) | {med['before']:.1f} | {cpu['before']:.1f} |",
        f"| after (this tree) | {med['after']:.1f} | {cpu['after']:.1f} |",
        "",
        f"after / before: wall {result['wall_ratio_after_before']:.3f}, "
        f"CPU {result['cpu_ratio_after_before']:.3f}; curves byte-identical: {same}.",
        "",
        "Command: `.venv/bin/python benchmarks/finetune_layout.py`",
    ]
    (out / "finetune_layout.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
