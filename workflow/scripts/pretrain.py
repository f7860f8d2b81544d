"""Rule pretrain: one pre-training run with checkpoints on the log grid."""

import torch  # noqa: F401  (imported before the start-up is logged: it is overhead)

from transferability.jobs.logs import setup_logging
from transferability.jobs.sources import pretrain

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
pretrain(
    sm.input.dataset,
    dict(zip(sm.params.steps, sm.output.checkpoints, strict=True)),
    sm.output.history,
    source=sm.wildcards.source,
    seed=int(sm.wildcards.seed),
    protocol=sm.params.protocol,
    threads=sm.threads,
    device=sm.config["device"],
    initial=sm.input.initial,
)
