"""Rule image_metrics: the metric table of one model on one target."""

from transferability.artifacts import write_csv
from transferability.jobs.logs import setup_logging
from transferability.jobs.metric_jobs import metric_table
from transferability.run.config import features_max_bytes, metric_plugins

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
metric_plugins(sm.config)  # the config's own metrics, registered before use
logits = sm.input.logits[0] if sm.input.logits else None
table = metric_table(
    sm.input.activations, sm.params.metrics, logits,
    features_max_bytes=features_max_bytes(sm.config),
)  # fmt: skip
table.insert(0, "step", "final")
for column, value in (("seed", sm.wildcards.seed), ("source", sm.wildcards.source),
                      ("target", sm.wildcards.target), ("track", sm.wildcards.track)):  # fmt: skip
    table.insert(0, column, value)
write_csv(table, sm.output[0])
