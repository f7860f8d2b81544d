"""Rule target_subset: the fixed class-balanced target samples every model is fed."""

from transferability.jobs.logs import setup_logging
from transferability.jobs.targets import target_subset

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
target_subset(sm.input[0], sm.output[0], per_class=sm.params.per_class, seed=sm.params.seed)
