"""Per-job overhead of a finished workflow run: process start-up and imports vs useful work.

Every job logs the seconds from its process start to the start of its work (interpreter,
Snakemake's script preamble, imports) and, at exit, its process lifetime (see
``transferability.jobs.logs.setup_logging``); every rule also has a Snakemake ``benchmark:``
file. A job's time is its logged lifetime (the benchmark file's wall time where a log has none:
Snakemake starts that clock only once a ``script:`` child runs, so it misses part of the
start-up). The benchmark file's ``cpu_time`` (CPU seconds of the job's processes) is summed as
well: unlike wall time it stays meaningful when jobs share the cores with other work. This
script sums per rule and writes ``benchmarks/results/<name>.{json,md}`` (default
``job_overhead``).

    .venv/bin/python benchmarks/job_overhead.py [--results results] [--name job_overhead]
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

MARKER = re.compile(r"start-up before work: ([0-9.]+) s")
LIFETIME = re.compile(r"process lifetime: ([0-9.]+) s")
OUT = Path(__file__).parent / "results"


def collect(results: Path) -> list[dict]:
    """One row per job with a benchmark file and a log: rule, wall seconds, start-up seconds."""
    rows = []
    for bench in sorted(results.rglob("benchmarks/**/*.tsv")):
        parts = bench.relative_to(results).parts
        where = parts.index("benchmarks")
        rule = parts[where + 1].removesuffix(".tsv")
        log = results.joinpath(*parts[:where], "logs", *parts[where + 1 :]).with_suffix(".log")
        if not log.is_file():
            continue
        text = log.read_text()
        match, lifetime = MARKER.search(text), LIFETIME.search(text)
        header, values = (line.split("\t") for line in bench.read_text().splitlines()[:2])
        wall = float(values[0])
        cpu = float(values[header.index("cpu_time")]) if "cpu_time" in header else float("nan")
        rows.append({"rule": rule, "job": str(bench.relative_to(results)),
                     "wall_s": float(lifetime.group(1)) if lifetime else wall,
                     "benchmark_s": wall, "cpu_s": cpu,
                     "startup_s": float(match.group(1)) if match else float("nan")})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--name", default="job_overhead", help="output file name (no suffix)")
    args = parser.parse_args()
    rows = collect(args.results)
    if not rows:
        raise SystemExit(f"no benchmark files with logs under {args.results}; run the workflow")
    keys = ("wall_s", "benchmark_s", "startup_s", "cpu_s")
    per_rule: dict[str, dict] = defaultdict(lambda: {"jobs": 0, **dict.fromkeys(keys, 0.0)})
    for row in rows:
        agg = per_rule[row["rule"]]
        agg["jobs"] += 1
        for key in keys:
            agg[key] += row[key]
    total = {k: sum(a[k] for a in per_rule.values()) for k in ("jobs", *keys)}
    summary = {"per_rule": per_rule, "total": total,
               "startup_fraction": total["startup_s"] / total["wall_s"]}  # fmt: skip
    OUT.mkdir(exist_ok=True)
    (OUT / f"{args.name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        f"Jobs of the run under `{args.results}`: {total['jobs']}; summed job wall time "
        f"{total['wall_s']:.0f} s, of which process start-up and imports "
        f"{total['startup_s']:.0f} s ({summary['startup_fraction']:.1%}); CPU time "
        f"{total['cpu_s']:.0f} s.",
        "",
        "| rule | jobs | job time (s) | start-up + imports (s) | share | CPU time (s) |",
        "|---|---|---|---|---|---|",
        *(
            f"| {rule} | {a['jobs']} | {a['wall_s']:.1f} | {a['startup_s']:.1f} | "
            f"{a['startup_s'] / a['wall_s']:.1%} | {a['cpu_s']:.1f} |"
            for rule, a in sorted(per_rule.items())
        ),
    ]
    table = "\n".join(lines)
    (OUT / f"{args.name}.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
