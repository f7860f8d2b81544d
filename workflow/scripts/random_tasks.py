"""Rule random_tasks: one source model on every task of a family (metrics, head, fine-tune)."""

import torch  # noqa: F401  (imported before the start-up is logged: it is overhead)

from transferability.jobs.logs import setup_logging
from transferability.jobs.studies import random_tasks
from transferability.run.config import metric_plugins
from transferability.studies.tasks import family_tasks

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
metric_plugins(sm.config)  # the config's own metrics, registered before use
family = sm.wildcards.family
random_tasks(
    sm.input.checkpoint,
    sm.input.dataset,
    family_tasks(family, sm.params.family),
    sm.output[0],
    family=family,
    seed=int(sm.wildcards.seed),
    family_seed=sm.params.family["seed"],
    layers=sm.params.layers,
    metrics=sm.params.metrics,
    protocol=sm.params.protocol,
    threads=sm.threads,
    device=sm.config["device"],
)
