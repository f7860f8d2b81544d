"""Rule tables: concatenate per-run CSVs, add aggregate metrics, log-AUC and correlations."""

from transferability.jobs.logs import setup_logging
from transferability.jobs.tables import build_tables
from transferability.run.config import metric_plugins

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
metric_plugins(sm.config)  # directions of the config's own metrics
scores = sm.input.quanta_scores  # [] when the QUANTA study is off
build_tables(
    sm.wildcards.track,
    sm.input.histories,
    sm.input.metrics,
    sm.input.finetune,
    dict(sm.output.items()),
    metrics=sm.params.metrics,
    quanta_scores=scores if isinstance(scores, str) else (scores[0] if scores else None),
    quanta_lambda_init=sm.params.quanta_lambda_init,
    baselines=sm.params.baselines,
    bootstrap=sm.params.bootstrap,
)
