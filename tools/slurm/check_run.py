"""Check a workflow run through SLURM against the same run on the local executor.

    python tools/slurm/check_run.py --slurm-dir D1 --slurm-log L1 --local-dir D2 --local-log L2 \
        --jobcomp /tmp/transferability-slurm/jobcomp.log [--local-rules all] \
        [--subset TABLE.csv ...] [--requeued ID ...] [--cancelled ID ...]

(a) Every job went through sbatch. Three independent records must agree:
    - the main Snakemake log: "Finished jobid: N (Rule: R)" for every job of the workflow, and
      the plugin's "Job X has been submitted with SLURM jobid S (log: F)" per submission;
    - the SLURM output file F of each submission (written by slurmd on the node; the profile keeps
      them). Two Snakemake processes write to it: the jobstep executor in the batch script, and
      the one it starts with `srun`, which runs the rules ("Provided cores: ..") and prints
      "Finished jobid: .. (Rule: R)" per job (a group job runs several). Only the latter counts;
    - slurmctld's job-completion log (JobCompType=jobcomp/filetxt): one record per SLURM job of
      this run (JobName = the plugin's run ID), all COMPLETED with exit code 0:0.
    Jobs of the workflow minus jobs run inside SLURM allocations must be exactly the local rules
    (the `all` target), per rule.
(b) The tables results/cnn/tables/*.csv of both runs are byte-identical (CPU runs are
    deterministic).
(c) Fault run (tools/slurm/fault.sh): --subset names the only tables the SLURM run built (a part
    of the DAG; its jobs per rule must then be at most the local run's). --requeued SLURM jobs
    (`scontrol requeue` while running) were submitted once; slurmctld records the interrupted
    run (JobState PENDING in SLURM 22.05, or REQUEUED), then COMPLETED 0:0, and the output
    file shows only the rerun (SLURM truncates it). --cancelled SLURM jobs (`scancel` while
    running) are recorded CANCELLED, their output does not count, and the log must show
    Snakemake's retry in this order: the plugin's "SLURM-job '<id>' failed, SLURM status is:
    'CANCELLED'", "Trying to restart job <N>." and a new "Job <N> has been submitted with SLURM
    jobid <new id>"; those lines are printed.

Prints a summary and exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

FINISHED = re.compile(r"^Finished jobid: \d+ \(Rule: (\w+)\)", re.M)
SUBMITTED = re.compile(
    r"Job (\S+) has been submitted with SLURM jobid (\d+) \(log: (.+?)\)\.$", re.M
)
RUN_ID = re.compile(r"^SLURM run ID: (\S+)$", re.M)
DONE = re.compile(r"^(\d+) of (\d+) steps \(100%\) done$", re.M)
HEADER = re.compile(r"^SNAKEMAKE\n=========$", re.M)
TABLES = Path("results/cnn/tables")


def ran_in_step(output: str) -> Counter[str]:
    """Jobs finished by the Snakemake that `srun` ran in the allocation (local executor)."""
    ran: Counter[str] = Counter()
    for section in HEADER.split(output):
        if re.search(r"^Provided cores: \d+", section, re.M):
            # its output ends with "Elapsed time: ..."; the jobstep's own lines follow
            end = re.search(r"^Elapsed time: .*$", section, re.M)
            inner = section[: end.end()] if end else section
            if DONE.search(inner):
                ran += Counter(FINISHED.findall(inner))
    return ran


def jobcomp_records(path: Path) -> list[dict[str, str]]:
    records = []
    for line in path.read_text().splitlines():
        if line.strip():
            records.append(dict(re.findall(r"(\w+)=(\S*)", line)))
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slurm-dir", type=Path, required=True)
    parser.add_argument("--slurm-log", type=Path, required=True)
    parser.add_argument("--local-dir", type=Path, required=True)
    parser.add_argument("--local-log", type=Path, required=True)
    parser.add_argument("--jobcomp", type=Path, required=True)
    parser.add_argument(
        "--local-rules",
        nargs="*",
        default=["all"],
        help="rules Snakemake runs in its own process, not through sbatch (default: all)",
    )
    parser.add_argument(
        "--subset",
        nargs="+",
        metavar="TABLE",
        help="file names of the only tables the SLURM run built (e.g. layer_transfer.csv)",
    )
    parser.add_argument(
        "--requeued", nargs="*", type=int, default=[], metavar="ID", help="SLURM ids requeued"
    )
    parser.add_argument(
        "--cancelled", nargs="*", type=int, default=[], metavar="ID", help="SLURM ids cancelled"
    )
    args = parser.parse_args(argv)
    failures: list[str] = []

    def check(ok: bool, message: str) -> bool:
        if not ok:
            failures.append(message)
        return ok

    slurm_log = args.slurm_log.read_text()
    local_log = args.local_log.read_text()

    # (a) jobs of the workflow, per rule, in both runs
    slurm_jobs = Counter(FINISHED.findall(slurm_log))
    local_jobs = Counter(FINISHED.findall(local_log))
    check(bool(DONE.search(slurm_log)), "SLURM run: no '(100%) done' line in its log")
    check(bool(DONE.search(local_log)), "local run: no '(100%) done' line in its log")
    if args.subset:
        check(bool(slurm_jobs), "SLURM run: no finished jobs")
        check(
            not (slurm_jobs - local_jobs),
            f"SLURM run has jobs the local run lacks: {dict(slurm_jobs - local_jobs)}",
        )
    else:
        check(
            slurm_jobs == local_jobs,
            f"jobs differ: SLURM {dict(slurm_jobs)} local {dict(local_jobs)}",
        )

    # submissions, and what ran inside each SLURM allocation (its output file)
    submissions = SUBMITTED.findall(slurm_log)
    slurm_ids = [int(sid) for _, sid, _ in submissions]
    check(len(set(slurm_ids)) == len(slurm_ids), f"a SLURM job id was reported twice: {slurm_ids}")
    in_slurm: Counter[str] = Counter()
    jobs_per_submission: dict[int, Counter[str]] = {}
    for job, sid, logfile in submissions:
        path = Path(logfile)
        if not check(path.is_file(), f"SLURM job {sid} (job {job}): no output file {path}"):
            continue
        if int(sid) in args.cancelled:
            continue  # killed: whatever it ran does not count (Snakemake ran the job again)
        text = path.read_text(errors="replace")
        ran = ran_in_step(text)
        check(bool(ran), f"SLURM job {sid}: its output {path} shows no job run by srun")
        check(bool(DONE.search(text)), f"SLURM job {sid}: its output {path} has no '(100%) done'")
        jobs_per_submission[int(sid)] = ran
        in_slurm += ran
    outside = slurm_jobs - in_slurm
    expected_outside = Counter({rule: slurm_jobs[rule] for rule in args.local_rules})
    check(
        outside == expected_outside,
        f"jobs not run inside a SLURM job: {dict(outside)}; expected only {dict(expected_outside)}",
    )
    check(
        not (in_slurm - slurm_jobs), f"SLURM outputs show extra jobs: {dict(in_slurm - slurm_jobs)}"
    )
    stray = sorted(
        int(p.stem)
        for p in (args.slurm_dir / ".snakemake" / "slurm_logs").rglob("*.log")
        if p.stem.isdigit() and int(p.stem) not in set(slurm_ids)
    )
    check(not stray, f"SLURM output files of jobs the run did not report: {stray}")

    # (c) the injected faults, and the retry of each cancelled job in the log
    retry_lines: list[str] = []
    for sid in args.requeued:
        check(sid in slurm_ids, f"requeued SLURM job {sid} was not submitted by this run")
    by_sid = {int(sid): job for job, sid, _ in submissions}
    log_lines = slurm_log.splitlines()
    for sid in args.cancelled:
        job = by_sid.get(sid)
        if not check(job is not None, f"cancelled SLURM job {sid} was not submitted by this run"):
            continue
        failed = f"SLURM-job '{sid}' failed, SLURM status is: 'CANCELLED'"
        restart = f"Trying to restart job {job}."
        resubmitted = re.compile(
            rf"^Job {re.escape(job)} has been submitted with SLURM jobid (\d+) "
        )
        steps = []  # line numbers of: failure, restart, resubmission (in this order)
        for k, line in enumerate(log_lines):
            if len(steps) == 0 and failed in line:
                steps.append(k)
            elif len(steps) == 1 and line.strip() == restart:
                steps.append(k)
            elif len(steps) == 2 and (m := resubmitted.match(line)) and int(m[1]) != sid:
                steps.append(k)
                break
        retry_lines += [f"  {log_lines[k].strip()}" for k in steps]
        check(
            len(steps) == 3,
            f"cancelled SLURM job {sid} (job {job}): the log lacks, in this order, "
            + " / ".join(
                [repr(failed), repr(restart), f"'Job {job} has been submitted ...'"][len(steps) :]
            ),
        )

    # slurmctld's own record of each SLURM job of this run (a requeued job has one per run)
    run_ids = RUN_ID.findall(slurm_log)
    check(len(run_ids) == 1, f"expected one 'SLURM run ID' line, found {run_ids}")
    records = [r for r in jobcomp_records(args.jobcomp) if run_ids and r.get("Name") == run_ids[0]]
    runs: dict[int, list[dict[str, str]]] = {}
    for r in records:
        runs.setdefault(int(r["JobId"]), []).append(r)
    recorded = {sid: rs[-1] for sid, rs in runs.items()}  # the last run of each SLURM job
    check(
        set(recorded) == set(slurm_ids),
        f"slurmctld records {sorted(recorded)} != submitted {sorted(slurm_ids)}",
    )
    workdir = str(args.slurm_dir.resolve())

    def states(sid: int) -> str:
        return ", ".join(f"{r.get('JobState')} {r.get('ExitCode')}" for r in runs.get(sid, []))

    not_ok = [
        f"{sid}: {states(sid)}"
        for sid, rs in sorted(runs.items())
        if sid not in args.cancelled
        and (
            rs[-1].get("JobState") != "COMPLETED"
            or rs[-1].get("ExitCode") != "0:0"
            or (len(rs) > 1) != (sid in args.requeued)
            or any(r.get("JobState") not in ("PENDING", "REQUEUED") for r in rs[:-1])
        )
    ]
    check(not not_ok, f"SLURM jobs not COMPLETED 0:0 (requeued ones: after a requeue): {not_ok}")
    not_cancelled = [
        f"{sid}: {states(sid) or 'no record'}"
        for sid in args.cancelled
        if [r.get("JobState") for r in runs.get(sid, [])] != ["CANCELLED"]
    ]
    check(not not_cancelled, f"cancelled SLURM jobs not recorded CANCELLED: {not_cancelled}")
    elsewhere = sorted(sid for sid, r in recorded.items() if r.get("WorkDir") != workdir)
    check(not elsewhere, f"SLURM jobs that did not run in {workdir}: {elsewhere}")

    # (b) tables
    names = sorted(p.name for p in (args.local_dir / TABLES).glob("*.csv"))
    slurm_names = sorted(p.name for p in (args.slurm_dir / TABLES).glob("*.csv"))
    check(bool(names), f"local run wrote no {TABLES}/*.csv")
    if args.subset:
        check(
            set(args.subset) <= set(names),
            f"local run lacks {sorted(set(args.subset) - set(names))}",
        )
        names = sorted(set(args.subset) & set(names))
    check(names == slurm_names, f"table files differ: local {names} SLURM {slurm_names}")
    same = [
        n
        for n in names
        if (args.slurm_dir / TABLES / n).is_file()
        and (args.local_dir / TABLES / n).read_bytes() == (args.slurm_dir / TABLES / n).read_bytes()
    ]
    for n in sorted(set(names) - set(same)):
        check(False, f"{TABLES}/{n} differs between the SLURM and the local run")

    # summary
    rows = [("rule", "jobs (local run)", "jobs (SLURM run)", "inside SLURM jobs", "SLURM jobs")]
    for rule in sorted(set(slurm_jobs) | set(local_jobs)):
        sids = [s for s, ran in jobs_per_submission.items() if rule in ran]
        rows.append(
            (rule, local_jobs[rule], slurm_jobs[rule], in_slurm[rule], len(sids) if sids else "-")
        )
    rows.append(
        (
            "total",
            sum(local_jobs.values()),
            sum(slurm_jobs.values()),
            sum(in_slurm.values()),
            len(set(slurm_ids)),
        )
    )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    print()
    for k, row in enumerate(rows):
        if k == len(rows) - 1:
            print("  ".join("-" * w for w in widths))
        print("  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w) for i, (v, w) in
                        enumerate(zip(row, widths, strict=True))))  # fmt: skip
    completed = sum(
        r.get("JobState") == "COMPLETED" and r.get("ExitCode") == "0:0" for r in records
    )
    print(
        f"\nsbatch submissions: {len(slurm_ids)}; slurmctld records of run "
        f"{run_ids[0] if run_ids else '?'}: {len(records)} ({completed} COMPLETED 0:0); "
        f"jobs outside SLURM: {dict(outside) or 'none'}"
    )
    print(f"tables {TABLES}/*.csv byte-identical to the local run: {len(same)}/{len(names)}")
    if args.requeued:
        print(
            "requeued SLURM jobs, each run again under its id: "
            + "; ".join(f"{sid}: {states(sid)}" for sid in args.requeued)
        )
    if args.cancelled:
        print("cancelled SLURM jobs and Snakemake's retry, from the log:", *retry_lines, sep="\n")
    if failures:
        print("\nFAILED:", *failures, sep="\n  ")
        return 1
    faults = " after the injected faults" if args.requeued or args.cancelled else ""
    print(f"OK: every job but the local rules went through sbatch{faults}; tables identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
