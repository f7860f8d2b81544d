"""Rule extract: activations of every layer and the logits, for each checkpoint of one run."""

from itertools import product

import torch  # noqa: F401  (imported before the start-up is logged: it is overhead)

from transferability.jobs.extract import extract
from transferability.jobs.logs import setup_logging

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
steps, layers = sm.params.steps, sm.params.layers
extract(
    dict(zip(steps, sm.input.checkpoints, strict=True)),
    sm.input.dataset,
    sm.input.subset,
    dict(zip(product(steps, layers), sm.output.activations, strict=True)),
    dict(zip(steps, sm.output.logits, strict=True)),
    target=sm.wildcards.target,
    compression=sm.params.compression,
    threads=sm.threads,
)
