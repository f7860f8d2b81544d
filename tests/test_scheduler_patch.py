"""The fix for Snakemake's self-multiplying scheduler wake-ups
(transferability.run.scheduler_patch):
the upstream code it replaces is unchanged, it keeps one pending wake-up, every entry point of
this workflow runs with it, and on the reproducer it stops the thread growth."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time

import pytest
import snakemake
from snakemake.scheduling.job_scheduler import JobScheduler
from test_workflow import REPO, SNAKEMAKE, tiny_config

from transferability.run import scheduler_patch

sys.path.insert(0, str(REPO / "benchmarks"))
import scheduler_overhead  # noqa: E402


def test_the_patched_upstream_code_is_the_pinned_one():
    """Fails when Snakemake's `schedule`/`_schedule_reevalutation` change: re-read them, re-judge
    the fix (docs/performance.md), then update UPSTREAM_SHA256 and PATCHED_VERSION."""
    pins = (REPO / "envs" / "requirements.txt").read_text()
    assert f"snakemake=={scheduler_patch.PATCHED_VERSION}" in pins
    assert snakemake.__version__ == scheduler_patch.PATCHED_VERSION
    assert scheduler_patch.upstream_digest(JobScheduler) == scheduler_patch.UPSTREAM_SHA256
    assert "threading.Timer(" in scheduler_patch.upstream_source(JobScheduler)


class FakeScheduler:
    def __init__(self):
        self._open_jobs = threading.Semaphore(0)


def pending_timers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if isinstance(t, threading.Timer) and t.is_alive()]


def test_one_pending_reevaluation_released_once():
    sched = FakeScheduler()
    before = len(pending_timers())
    for _ in range(50):
        scheduler_patch._schedule_one_reevaluation(sched, 0.3)
    timers = pending_timers()
    assert len(timers) - before == 1
    assert all(t.daemon for t in timers[before:])
    assert not sched._open_jobs.acquire(timeout=0.1)  # not before its delay
    assert sched._open_jobs.acquire(timeout=2)
    assert not sched._open_jobs.acquire(timeout=0.5)  # 50 requests, one release
    # once released, a new request starts a new timer (the loop keeps waking while jobs run)
    scheduler_patch._schedule_one_reevaluation(sched, 0.05)
    assert sched._open_jobs.acquire(timeout=2)


def test_an_earlier_request_is_not_delayed_by_a_later_pending_one():
    sched = FakeScheduler()
    scheduler_patch._schedule_one_reevaluation(sched, 10)
    t0 = time.monotonic()
    scheduler_patch._schedule_one_reevaluation(sched, 0.05)
    assert sched._open_jobs.acquire(timeout=2)
    assert time.monotonic() - t0 < 5


def test_apply_is_idempotent_and_refuses_another_version(monkeypatch):
    assert "applied" in scheduler_patch.apply()
    assert scheduler_patch.is_applied()
    assert scheduler_patch.apply() == "scheduler fix already applied"
    # the digest is taken from the upstream method even once it is replaced
    assert scheduler_patch.upstream_digest(JobScheduler) == scheduler_patch.UPSTREAM_SHA256
    monkeypatch.setattr(JobScheduler, "_schedule_reevalutation", lambda self, delay: None)
    monkeypatch.setenv("TRANSFERABILITY_SCHEDULER_FIX", "off")
    assert scheduler_patch.apply() == "scheduler fix not applied: TRANSFERABILITY_SCHEDULER_FIX=off"
    assert not scheduler_patch.is_applied()
    monkeypatch.delenv("TRANSFERABILITY_SCHEDULER_FIX")
    monkeypatch.setattr(snakemake, "__version__", "9.99.0")
    message = scheduler_patch.apply()
    assert "not applied" in message and "9.99.0" in message and "9.27.1" in message
    assert not scheduler_patch.is_applied()


@pytest.mark.parametrize(
    "profiles",
    [[], ["profiles/local"], ["profiles/slurm"], ["profiles/slurm", "tests/slurm/profile"]],
    ids=["plain", "local", "slurm", "slurm+ci"],
)
def test_every_entry_point_runs_with_the_fix(tmp_path, profiles):
    """The workflow applies the fix while it is parsed, in Snakemake's main process: so do
    `make run` (below), both profiles, the tests' runs (SNAKEMAKE) and tools/slurm/test.sh."""
    config = tmp_path / "config.yaml"
    import yaml

    config.write_text(yaml.safe_dump(tiny_config()))
    args = [a for p in profiles for a in ("--profile", str(REPO / p))]
    cmd = [*SNAKEMAKE, "-d", str(tmp_path), "--configfile", str(config), *args, "-n", "--verbose"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "scheduler fix applied" in out.stdout + out.stderr


def test_make_run_and_the_slurm_test_use_this_snakefile():
    dry = subprocess.run(["make", "-n", "run"], cwd=REPO, capture_output=True, text=True)
    assert re.search(r"^\.venv/bin/snakemake --cores \S+$", dry.stdout, re.M), dry.stdout
    assert 'snakemake", *sys.argv[1:]' in (REPO / "tools/slurm/test.sh").read_text()
    assert '-s "$REPO/Snakefile"' in (REPO / "tools/slurm/test.sh").read_text()
    assert (REPO / "Snakefile").read_text().count('include: "rules/common.smk"') == 1
    assert "scheduler_patch.apply()" in (REPO / "rules/common.smk").read_text()


def test_the_fix_stops_the_thread_growth_on_the_reproducer():
    """A thread count, not a timing: upstream holds about one timer thread per finished job."""
    jobs = 16
    upstream = scheduler_overhead.measure(jobs, "default", cores=2)
    fixed = scheduler_overhead.measure(jobs, "fix", cores=2)
    assert upstream["peak_threads"] >= jobs - 2, upstream
    assert fixed["peak_threads"] <= 8, fixed
