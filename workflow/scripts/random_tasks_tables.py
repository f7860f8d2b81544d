"""Rule random_tasks_tables: values, Pearson table, transferability levels, convergence."""

from transferability.artifacts import write_csv
from transferability.jobs.logs import setup_logging
from transferability.jobs.studies import random_tasks_tables

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
tables = random_tasks_tables(
    sm.input.tasks,
    sm.input.references,
    track=sm.wildcards.track,
    settings=sm.params.settings,
    levels=sm.params.levels,
    levels_metric=sm.params.levels_metric,
    levels_layer=sm.params.levels_layer,
)
for name, table in tables.items():
    write_csv(table, sm.output[name])
