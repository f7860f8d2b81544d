"""Rules finetune and finetune_initial: fine-tune checkpoints of one run on one target; a
source's run also writes its step-0 curve, the untrained model's (fine-tuned once)."""

import torch  # noqa: F401  (imported before the start-up is logged: it is overhead)

from transferability.jobs.finetune import finetune, share_initial
from transferability.jobs.logs import setup_logging

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
finetune(
    dict(zip(sm.params.steps, sm.input.checkpoints, strict=True)),
    sm.input.dataset,
    dict(zip(sm.params.steps, sm.output.curves, strict=True)),
    target=sm.wildcards.target,
    seed=int(sm.wildcards.seed),
    protocol=sm.params.protocol,
    threads=sm.threads,
    device=sm.config["device"],
    runs_together=sm.config["runs_together"],
)
if "initial" in sm.input.keys():
    share_initial(sm.input.initial, sm.output.initial, source=sm.wildcards.source)
