"""Rule tables: concatenate per-run CSVs, add aggregate metrics, log-AUC and correlations."""

from transferability.pipeline import build_tables, setup_logging

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
build_tables(
    sm.wildcards.track,
    sm.input.histories,
    sm.input.metrics,
    sm.input.finetune,
    dict(sm.output.items()),
    metrics=sm.params.metrics,
)
