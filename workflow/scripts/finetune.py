"""Rule finetune: fine-tune every checkpoint of one run on one target."""

import torch  # noqa: F401  (imported before the start-up is logged: it is overhead)

from transferability.pipeline import finetune, setup_logging

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
finetune(
    dict(zip(sm.params.steps, sm.input.checkpoints, strict=True)),
    sm.input.dataset,
    dict(zip(sm.params.steps, sm.output, strict=True)),
    target=sm.wildcards.target,
    seed=int(sm.wildcards.seed),
    protocol=sm.params.protocol,
    threads=sm.threads,
    device=sm.config["device"],
    runs_together=sm.config["runs_together"],
)
