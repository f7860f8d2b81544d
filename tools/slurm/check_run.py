"""Check a workflow run through SLURM against the same run on the local executor.

    python tools/slurm/check_run.py --slurm-dir D1 --slurm-log L1 --local-dir D2 --local-log L2 \
        --jobcomp /tmp/transferability-slurm/jobcomp.log [--local-rules all table_html] \
        [--allocations FILE --gpu-rules RULE ... --gpus-per-node N] [--min-nodes N] \
        [--subset TABLE.csv ...] [--timed-out ID ...] [--node-failed ID ...] [--cancelled ID ...]

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
    of the DAG; its jobs per rule must then be at most the local run's).
    --timed-out SLURM jobs (stalled past their limit) are recorded TIMEOUT, and the log shows
    Snakemake's retry in this order: the plugin's "SLURM-job '<id>' failed, SLURM status is:
    'TIMEOUT'", "Trying to restart job <N>." and a new "Job <N> has been submitted with SLURM
    jobid <new id>", whose record is COMPLETED 0:0 with a longer TimeLimit (attempt scaling).
    --node-failed SLURM jobs (their node killed) are recorded NODE_FAIL on that node, then
    COMPLETED 0:0 on another node: requeued by SLURM under the same id (its output file shows
    only the rerun), or retried by Snakemake under a new id (then the log shows the retry as
    above, with status 'NODE_FAIL'). Any other job of the run may also have NODE_FAIL (or
    PENDING/REQUEUED) records before its final COMPLETED only if it was on the killed node.
    --cancelled SLURM jobs (`scancel` while running) are recorded CANCELLED, their output does
    not count, and the log shows the retry as above with status 'CANCELLED'. The retry lines
    are printed.
(d) GPUs and nodes (--allocations: `scontrol -d -o show job` of each job once it ran, recorded by
    test.sh): every SLURM job of a --gpu-rules rule was allocated exactly one GPU
    (JOB_GRES=gpu:1) and no other job any; the GPU jobs' StartTime..EndTime intervals
    (jobcomp) never overlap more than --gpus-per-node at once; the run's jobs ran on at least
    --min-nodes nodes.

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
        default=["all", "table_html"],
        help="rules Snakemake runs in its own process, not through sbatch (default: all and "
        "table_html, the workflow's local rules)",
    )
    parser.add_argument(
        "--subset",
        nargs="+",
        metavar="TABLE",
        help="file names of the only tables the SLURM run built (e.g. layer_transfer.csv)",
    )
    parser.add_argument(
        "--timed-out", nargs="*", type=int, default=[], metavar="ID", help="SLURM ids stalled"
    )
    parser.add_argument(
        "--node-failed", nargs="*", type=int, default=[], metavar="ID", help="node killed under"
    )
    parser.add_argument("--allocations", type=Path, help="scontrol -d -o show job, one per job")
    parser.add_argument("--gpu-rules", nargs="*", default=[], help="rules that ask for a GPU")
    parser.add_argument("--gpus-per-node", type=int, default=0, help="GPUs of the GPU node")
    parser.add_argument("--min-nodes", type=int, default=1, help="distinct nodes the run used")
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
        if int(sid) in args.cancelled or int(sid) in args.timed_out:
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

    # (c) the injected faults, and Snakemake's retry of a failed job in the log
    retry_lines: list[str] = []
    by_sid = {int(sid): job for job, sid, _ in submissions}
    log_lines = slurm_log.splitlines()

    def retried(sid: int, status: str) -> int | None:
        """The new SLURM id of Snakemake's retry of `sid` after `status` (lines printed)."""
        job = by_sid.get(sid)
        if not check(job is not None, f"{status} SLURM job {sid} was not submitted by this run"):
            return None
        failed = f"SLURM-job '{sid}' failed, SLURM status is: '{status}'"
        restart = f"Trying to restart job {job}."
        resubmitted = re.compile(
            rf"^Job {re.escape(job)} has been submitted with SLURM jobid (\d+) "
        )
        steps, new = [], None  # line numbers of: failure, restart, resubmission (in this order)
        for k, line in enumerate(log_lines):
            if len(steps) == 0 and failed in line:
                steps.append(k)
            elif len(steps) == 1 and line.strip() == restart:
                steps.append(k)
            elif len(steps) == 2 and (m := resubmitted.match(line)) and int(m[1]) != sid:
                steps.append(k)
                new = int(m[1])
                break
        retry_lines.extend(f"  {log_lines[k].strip()}" for k in steps)
        check(
            len(steps) == 3,
            f"{status} SLURM job {sid} (job {job}): the log lacks, in this order, "
            + " / ".join(
                [repr(failed), repr(restart), f"'Job {job} has been submitted ...'"][len(steps) :]
            ),
        )
        return new

    retries = {sid: retried(sid, "CANCELLED") for sid in args.cancelled}
    retries |= {sid: retried(sid, "TIMEOUT") for sid in args.timed_out}
    node_fail_retried = {
        sid: retried(sid, "NODE_FAIL")
        for sid in args.node_failed
        if f"SLURM-job '{sid}' failed, SLURM status is: 'NODE_FAIL'" in slurm_log
    }

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

    killed_nodes = {r.get("NodeList") for r in records if r.get("JobState") == "NODE_FAIL"}
    before_final = ("PENDING", "REQUEUED", "NODE_FAIL")  # a requeue's earlier records
    not_ok = [
        f"{sid}: {states(sid)}"
        for sid, rs in sorted(runs.items())
        if sid not in args.cancelled
        and sid not in args.timed_out
        and sid not in node_fail_retried
        and (
            rs[-1].get("JobState") != "COMPLETED"
            or rs[-1].get("ExitCode") != "0:0"
            or any(r.get("JobState") not in before_final for r in rs[:-1])
            or any(r.get("NodeList") not in killed_nodes for r in rs[:-1])
        )
    ]
    check(not not_ok, f"SLURM jobs not COMPLETED 0:0 (after a node failure only): {not_ok}")
    for label, ids, state in (
        ("cancelled", args.cancelled, "CANCELLED"),
        ("timed-out", args.timed_out, "TIMEOUT"),
    ):
        wrong = [
            f"{sid}: {states(sid) or 'no record'}"
            for sid in ids
            if [r.get("JobState") for r in runs.get(sid, [])] != [state]
        ]
        check(not wrong, f"{label} SLURM jobs not recorded {state}: {wrong}")
    for sid in args.timed_out:
        new = retries.get(sid)
        first, again = runs.get(sid, [{}])[0], recorded.get(new, {}) if new else {}
        limits = (first.get("TimeLimit"), again.get("TimeLimit"))
        check(
            again.get("JobState") == "COMPLETED"
            and all(v and v.isdigit() for v in limits)
            and int(limits[1]) > int(limits[0]),
            f"timed-out SLURM job {sid} (TimeLimit {limits[0]}): its retry {new} is not "
            f"COMPLETED with a longer TimeLimit ({again.get('JobState')}, {limits[1]})",
        )
    fates = []
    for sid in args.node_failed:
        rs = runs.get(sid, [])
        failed_on = [r.get("NodeList") for r in rs if r.get("JobState") == "NODE_FAIL"]
        final = recorded.get(node_fail_retried.get(sid) or sid, {})
        ok = (
            bool(failed_on)
            and final.get("JobState") == "COMPLETED"
            and final.get("NodeList") not in failed_on
        )
        check(ok, f"node-failed SLURM job {sid}: {states(sid) or 'no record'}; final {final}")
        how = f"retried as {node_fail_retried[sid]}" if sid in node_fail_retried else "requeued"
        fates.append(
            f"{sid}: NODE_FAIL on {','.join(failed_on) or '?'}, {how}, COMPLETED on "
            f"{final.get('NodeList')}"
        )

    elsewhere = sorted(sid for sid, r in recorded.items() if r.get("WorkDir") != workdir)
    check(not elsewhere, f"SLURM jobs that did not run in {workdir}: {elsewhere}")

    # (d) GPUs and nodes
    nodes = sorted({r.get("NodeList", "") for r in records})
    check(len(nodes) >= args.min_nodes, f"jobs ran on {nodes}: fewer than {args.min_nodes} nodes")
    gpu_summary = ""
    if args.allocations:
        alloc = {}
        for line in args.allocations.read_text().splitlines():
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            if fields.get("JobName") == (run_ids[0] if run_ids else None):
                alloc[int(fields["JobId"])] = fields
        unseen = sorted(set(slurm_ids) - set(alloc))
        check(not unseen, f"SLURM jobs never seen running by the recorder: {unseen}")
        gpu_sids = []
        for sid, fields in sorted(alloc.items()):
            rule = re.sub(r"^rule_(\w+?)(_wildcards_.*)?$", r"\1", fields.get("Comment", ""))
            wants = rule in args.gpu_rules
            gres = fields.get("JOB_GRES", "(null)")
            check(
                gres == ("gpu:1" if wants else "(null)"),
                f"SLURM job {sid} ({rule}) on {fields.get('NodeList')}: JOB_GRES={gres}",
            )
            if wants:
                gpu_sids.append(sid)
        spans = sorted(
            (recorded[sid]["StartTime"], recorded[sid]["EndTime"])
            for sid in gpu_sids
            if sid in recorded
        )
        most = max(
            (sum(s <= start < e for s, e in spans) for start, _ in spans), default=0
        )  # ISO times sort as strings; [start, end): a job ending as another starts does not count
        check(bool(gpu_sids), f"no SLURM job of {args.gpu_rules} was recorded")
        check(
            most <= args.gpus_per_node,
            f"{most} GPU jobs ran at once on {args.gpus_per_node} GPUs",
        )
        gpu_nodes = sorted({alloc[sid].get("NodeList") for sid in gpu_sids})
        gpu_summary = (
            f"GPU jobs ({', '.join(args.gpu_rules)}): {len(gpu_sids)}, each JOB_GRES=gpu:1, on "
            f"{gpu_nodes}, at most {most} at once ({args.gpus_per_node} GPUs)"
        )

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
    print(f"nodes used: {', '.join(nodes)}")
    if gpu_summary:
        print(gpu_summary)
    for sid in args.timed_out:
        print(
            f"timed-out SLURM job {sid}: {states(sid)} (TimeLimit "
            f"{runs.get(sid, [{}])[0].get('TimeLimit')}); retry {retries.get(sid)}: "
            f"{states(retries[sid]) if retries.get(sid) else '-'} (TimeLimit "
            f"{recorded.get(retries.get(sid), {}).get('TimeLimit')})"
        )
    if fates:
        print("node-failed SLURM jobs:", *fates, sep="\n  ")
    if retry_lines:
        print("Snakemake's retries, from the log:", *retry_lines, sep="\n")
    if failures:
        print("\nFAILED:", *failures, sep="\n  ")
        return 1
    faults = (
        " after the injected faults" if args.timed_out or args.node_failed or args.cancelled else ""
    )
    print(f"OK: every job but the local rules went through sbatch{faults}; tables identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
