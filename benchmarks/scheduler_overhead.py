"""The Snakemake process's own cost per job: upstream's scheduler vs this repository's fix.

Runs the minimal reproducer ``benchmarks/scheduler/Snakefile`` (N independent one-second
``sleep`` jobs, ``--cores 2``) once per (N, setting), each in a fresh process that calls
Snakemake's command line (``snakemake.cli.main``) and, when it returns, records its own
``getrusage(RUSAGE_SELF)``: the Snakemake process alone, all its threads, not its children (the
jobs' shells). From outside, this script samples the process's thread count (``/proc``) every
20 ms and times it until it exits; "linger" is exit time minus the last job's output time.

Settings, side by side in one run:
  default            Snakemake 9.27.1 as shipped (``--max-jobs-per-timespan`` default 100/1s)
  timespan 1000/10s  a longer rate-limiter window from the command line
  limiter off        the rate limiter disabled, as a Python API caller can do it
                     (``SchedulingSettings(max_jobs_per_timespan=None)``; the CLI cannot)
  fix                ``transferability.run.scheduler_patch`` (what this workflow applies)

    .venv/bin/python benchmarks/scheduler_overhead.py [--jobs 50 200 800] [--settings ...]

Writes ``benchmarks/results/scheduler_overhead.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import cpu_model  # noqa: E402

HERE = Path(__file__).parent
SNAKEFILE = HERE / "scheduler" / "Snakefile"
OUT = HERE / "results"
SETTINGS = {
    "default": [],
    "timespan 1000/10s": ["--max-jobs-per-timespan", "1000/10s"],
    "limiter off": [],
    "fix": [],
}
CONFIG = {"fix": ["fix=1"]}  # one --config takes all pairs
# The process measured: Snakemake's own command line, then its own rusage on stdout's last line.
RUNNER = """
import json, os, resource, sys
from snakemake.cli import main
# as a Python API caller would: SchedulingSettings(max_jobs_per_timespan=None)
if os.environ.get("LIMITER_OFF"):
    from snakemake.settings.types import SchedulingSettings
    post_init = SchedulingSettings.__post_init__
    def no_limiter(self):
        self.max_jobs_per_timespan = None
        post_init(self)
    SchedulingSettings.__post_init__ = no_limiter
code = 0
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code or 0
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"rc": code, "cpu_s": ru.ru_utime + ru.ru_stime}))
sys.stdout.flush()
"""


def threads_of(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(jobs: int, setting: str, cores: int) -> dict:
    """One run of the reproducer: the Snakemake process's CPU, peak threads, wall and linger."""
    with tempfile.TemporaryDirectory(prefix="scheduler-overhead-") as work:
        argv = ["-s", str(SNAKEFILE), "-d", work, "--cores", str(cores), "--quiet", "progress"]
        argv += SETTINGS[setting] + ["--config", f"jobs={jobs}"] + CONFIG.get(setting, [])
        t0 = time.monotonic()
        start = time.time()
        env = dict(os.environ, LIMITER_OFF="1" if setting == "limiter off" else "")
        proc = subprocess.Popen(
            [sys.executable, "-c", RUNNER, *argv], stdout=subprocess.PIPE, text=True, env=env
        )
        peak = 0
        while proc.poll() is None:
            peak = max(peak, threads_of(proc.pid))
            time.sleep(0.02)
        wall = time.monotonic() - t0
        end = time.time()
        lines = proc.stdout.read().strip().splitlines()
        result = json.loads(lines[-1])
        outputs = Path(work, "done")
        done = list(outputs.iterdir()) if outputs.is_dir() else []
        done.sort(key=lambda p: p.stat().st_mtime)
        if result["rc"] != 0 or len(done) != jobs:
            raise SystemExit(f"{setting}, N={jobs}: exit {result['rc']}, {len(done)} outputs")
        last_output = done[-1].stat().st_mtime
    return {
        "jobs": jobs,
        "setting": setting,
        "cpu_s": round(result["cpu_s"], 2),
        "cpu_ms_per_job": round(1000 * result["cpu_s"] / jobs, 1),
        "peak_threads": peak,
        "wall_s": round(wall, 1),
        "linger_s": round(end - last_output, 2),
        "started": start,
    }


def markdown(rows: list[dict], cores: int) -> str:
    lines = [
        "# The Snakemake process's own cost: upstream scheduler vs the fix",
        "",
        f"`benchmarks/scheduler_overhead.py` on {cpu_model()}, {os.cpu_count()} CPUs, "
        f"`--cores {cores}`, Snakemake {snakemake_version()}; N one-second `sleep` jobs "
        "(`benchmarks/scheduler/Snakefile`). CPU = `getrusage(RUSAGE_SELF)` of the Snakemake "
        "process (its threads, not its jobs). Linger = process exit minus the last job's output.",
        "",
        "| N | setting | Snakemake CPU s | CPU ms per job | peak threads | wall s | linger s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['jobs']} | {r['setting']} | {r['cpu_s']:.2f} | {r['cpu_ms_per_job']:.1f} "
            f"| {r['peak_threads']} | {r['wall_s']:.1f} | {r['linger_s']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def snakemake_version() -> str:
    import snakemake

    return snakemake.__version__


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[50, 200, 800])
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--name", default="scheduler_overhead")
    args = parser.parse_args(argv)
    rows = []
    for jobs in args.jobs:
        for setting in args.settings:
            rows.append(measure(jobs, setting, args.cores))
            print(json.dumps(rows[-1]), flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / f"{args.name}.json").write_text(json.dumps(rows, indent=1) + "\n")
    (OUT / f"{args.name}.md").write_text(markdown(rows, args.cores))
    print(markdown(rows, args.cores))


if __name__ == "__main__":
    main()
