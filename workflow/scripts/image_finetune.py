"""Rule image_finetune: one source (or the from-scratch baseline) fine-tuned on one target."""

import torch  # noqa: F401  (imported before the start-up is logged: it is overhead)

from transferability.jobs.finetune import finetune_images as finetune
from transferability.jobs.logs import setup_logging

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
target = sm.params.target
finetune(
    sm.input.checkpoint or None,
    target["root"],
    sm.input.index,
    sm.output[0],
    target=sm.wildcards.target,
    source=sm.wildcards.source,
    seed=int(sm.wildcards.seed),
    protocol=sm.params.protocol,
    resize=sm.params.transforms.get("resize"),
    crop=sm.params.transforms.get("crop"),
    extras=target.get("extras"),
    scratch_arch=sm.params.scratch,
    policy=sm.params.policy,
    target_format=target["format"],
    threads=sm.threads,
    device=sm.config["device"],
)
