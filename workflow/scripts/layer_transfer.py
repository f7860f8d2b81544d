"""Rule layer_transfer: AnB/BnB models (frozen or fine-tuned, n = 1 … 3) of one base model."""

import torch  # noqa: F401  (imported before the start-up is logged: it is overhead)

from transferability.jobs.logs import setup_logging
from transferability.jobs.studies import run_layer_transfer

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
run_layer_transfer(
    sm.input.checkpoint,
    sm.input.dataset,
    dict(zip(sm.params.variants, sm.output, strict=True)),
    target=sm.wildcards.target,
    role=sm.params.role,
    seed=int(sm.wildcards.seed),
    protocol=sm.params.protocol,
    threads=sm.threads,
    device=sm.config["device"],
)
