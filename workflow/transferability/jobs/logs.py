"""Every job's log: the library's log lines into the rule's ``log:`` file, with the process's
start-up time before work and its lifetime at exit (:data:`STARTUP_MARKER`,
:data:`LIFETIME_MARKER`; read by benchmarks/job_overhead.py)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


#: Markers of the lines that benchmarks/job_overhead.py reads from every job log.
STARTUP_MARKER = "start-up before work"


LIFETIME_MARKER = "process lifetime"


def process_age() -> float:
    """Seconds since this process was created.

    On Linux from ``/proc`` (clock ticks since boot against ``/proc/uptime``): psutil's
    ``create_time`` adds the boot time, which Linux gives in whole seconds, so its ages are off
    by a constant of up to 1 s (0.75 s on this project's machine, for every job).
    """
    import time

    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return float(Path("/proc/uptime").read_text().split()[0]) - started
    except (OSError, ValueError, IndexError):
        import psutil

        return time.time() - psutil.Process().create_time()


def setup_logging(log_path: str | Path | None) -> None:
    """Send this job's log records (and warnings) to its Snakemake ``log:`` file, starting with
    the seconds since the process started (interpreter, Snakemake's script preamble, imports):
    the per-job overhead that job granularity must keep small (SPEC §9). At exit the process's
    whole lifetime is logged too: Snakemake's ``benchmark:`` clock of a ``script:`` job starts
    only once the child process is running, so it misses part of the start-up."""
    import atexit

    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers = [logging.FileHandler(log_path, mode="w")]
    logging.basicConfig(
        level=logging.INFO,
        handlers=handlers,
        force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.captureWarnings(True)
    log.info("%s: %.2f s", STARTUP_MARKER, process_age())
    # Registered after logging's own shutdown hook, so it runs before it (LIFO).
    atexit.register(lambda: log.info("%s: %.2f s", LIFETIME_MARKER, process_age()))
