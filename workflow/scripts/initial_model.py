"""Rule initial_model: the untrained model of one (seed, number of classes)."""

import torch  # noqa: F401  (imported before the start-up is logged: it is overhead)

from transferability.jobs.logs import setup_logging
from transferability.jobs.sources import initial_model

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
initial_model(sm.output[0], num_classes=int(sm.wildcards.classes), seed=int(sm.wildcards.seed))
