"""Rule tables: concatenate per-run CSVs and compute log-AUC and Spearman tables."""

from transferability.pipeline import build_tables, setup_logging

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
build_tables(
    sm.wildcards.track,
    sm.input.histories,
    sm.input.metrics,
    sm.input.finetune,
    dict(sm.output.items()),
)
