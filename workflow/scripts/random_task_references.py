"""Rule random_task_references: a model trained from scratch on every task of a family."""

import torch  # noqa: F401  (imported before the start-up is logged: it is overhead)

from transferability.jobs.logs import setup_logging
from transferability.jobs.studies import random_task_references
from transferability.studies.tasks import family_tasks

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
family = sm.wildcards.family
random_task_references(
    sm.input.dataset,
    family_tasks(family, sm.params.family),
    sm.output[0],
    family=family,
    seed=int(sm.wildcards.seed),
    family_seed=sm.params.family["seed"],
    protocol=sm.params.protocol,
    threads=sm.threads,
    device=sm.config["device"],
)
