"""A fix for Snakemake's scheduler waking itself ever more often (pinned Snakemake 9.27.1).

The defect (``snakemake/scheduling/job_scheduler.py``): with the job rate limiter on -- always,
from the command line, where ``--max-jobs-per-timespan`` defaults to ``100/1s`` -- every pass of
``JobScheduler.schedule`` ends by starting a ``threading.Timer(timespan)`` that releases the
scheduler's semaphore, i.e. runs another pass. A pass woken by a finished job starts one more
such timer, and the pass that timer wakes starts the next: each finished job adds a wake-up chain
that never ends. After N finished jobs the loop runs about N passes per timespan, each re-reading
the input sizes of every ready job, and holds N timer threads. The timers are not daemon threads,
so the process also stays alive up to one timespan after the last job (forever, for all practical
purposes, with a long timespan). ``benchmarks/scheduler_overhead.py`` measures it;
``docs/performance.md`` explains it.

The fix keeps Snakemake's behaviour (the rate limit still holds; a pass still follows each
timespan while jobs run) but keeps at most one re-evaluation pending: a new one is started only
when none is pending that fires as early or earlier. Its timer is a daemon thread, so the
process exits when its work is done.

It is applied by the workflow itself (``rules/common.smk`` calls :func:`apply` while Snakemake
parses the Snakefile, before the scheduler exists), so every entry point gets it: ``make run``,
``snakemake --profile profiles/local|slurm``, the tests, and a host workflow importing this one
as a module. It patches only the Snakemake version and source it was written for
(:data:`PATCHED_VERSION`, :data:`UPSTREAM_SHA256`); with any other, it leaves Snakemake alone and
says why (``tests/test_scheduler_patch.py`` fails when the pinned upstream code changes).
"""

from __future__ import annotations

import hashlib
import inspect
import os
import threading
import time

PATCHED_VERSION = "9.27.1"
# sha256 of the source of the two upstream methods the fix relies on: the one it replaces
# (``_schedule_reevalutation``, sic) and the loop that calls it (``schedule``).
UPSTREAM_SHA256 = "39d8d14240c98e1bc3167baf2f5df658aafef03a6b482bcf29e1106a5c55e098"
MARKER = "_transferability_one_pending_reevaluation"
OFF_SWITCH = "TRANSFERABILITY_SCHEDULER_FIX"

_lock = threading.Lock()


def upstream_source(scheduler_class: type) -> str:
    """The upstream source of ``schedule`` and ``_schedule_reevalutation`` (even once patched)."""
    method = scheduler_class._schedule_reevalutation
    original = getattr(method, "__wrapped__", method)
    return inspect.getsource(scheduler_class.schedule) + inspect.getsource(original)


def upstream_digest(scheduler_class: type) -> str:
    """sha256 of :func:`upstream_source`: what :data:`UPSTREAM_SHA256` pins."""
    return hashlib.sha256(upstream_source(scheduler_class).encode()).hexdigest()


def _schedule_one_reevaluation(self, delay: float) -> None:
    """Release the scheduler after ``delay`` s unless a release as early is already pending."""
    due = time.monotonic() + delay
    with _lock:
        pending = getattr(self, MARKER, None)
        if pending is not None and pending <= due:
            return
        setattr(self, MARKER, due)

    def release() -> None:
        with _lock:
            if getattr(self, MARKER, None) == due:
                setattr(self, MARKER, None)  # cleared before the pass it wakes may ask again
        self._open_jobs.release()

    timer = threading.Timer(delay, release)
    timer.daemon = True  # a pending wake-up never keeps a finished run alive
    timer.start()


def is_applied() -> bool:
    """Whether Snakemake's scheduler in this process runs with the fix."""
    from snakemake.scheduling.job_scheduler import JobScheduler

    return getattr(JobScheduler._schedule_reevalutation, MARKER, False)


def apply() -> str:
    """Patch Snakemake's ``JobScheduler`` in this process; return what was done, in one line.

    Idempotent. Leaves Snakemake unchanged (and says so) when its version or the patched source
    differ from the ones this fix was written for, or when the environment variable
    ``TRANSFERABILITY_SCHEDULER_FIX=off`` asks for upstream's behaviour (to measure it).
    """
    import snakemake
    from snakemake.scheduling.job_scheduler import JobScheduler

    if is_applied():
        return "scheduler fix already applied"
    if os.environ.get(OFF_SWITCH, "").lower() == "off":
        return f"scheduler fix not applied: {OFF_SWITCH}=off"
    version = getattr(snakemake, "__version__", "?")
    if version != PATCHED_VERSION:
        return (
            f"scheduler fix not applied: written for Snakemake {PATCHED_VERSION}, "
            f"this is {version} (envs/requirements.txt pins {PATCHED_VERSION})"
        )
    digest = upstream_digest(JobScheduler)
    if digest != UPSTREAM_SHA256:
        return (
            "scheduler fix not applied: the source of JobScheduler.schedule and "
            f"_schedule_reevalutation is not the one it was written for (sha256 {digest[:12]})"
        )
    _schedule_one_reevaluation.__wrapped__ = JobScheduler._schedule_reevalutation
    setattr(_schedule_one_reevaluation, MARKER, True)
    JobScheduler._schedule_reevalutation = _schedule_one_reevaluation
    return "scheduler fix applied: one pending re-evaluation at most (scheduler_patch)"
