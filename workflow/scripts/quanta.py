"""Rule quanta: every QUANTA run (layer × λ init × run) of one source run on one target."""

import torch  # noqa: F401  (imported before the start-up is logged: it is overhead)

from transferability.jobs.logs import setup_logging
from transferability.jobs.studies import run_quanta

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
run_quanta(
    {sm.params.step: sm.input.checkpoint},
    sm.input.dataset,
    dict(zip(sm.params.runs, sm.output, strict=True)),
    target=sm.wildcards.target,
    seed=int(sm.wildcards.seed),
    protocol=sm.params.protocol,
    threads=sm.threads,
    device=sm.config["device"],
)
