"""Rule layer_transfer_table: every layer-transfer curve in one tidy table."""

from transferability.artifacts import write_csv
from transferability.jobs.logs import setup_logging
from transferability.jobs.studies import layer_transfer_table

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
write_csv(layer_transfer_table(sm.input, track=sm.wildcards.track), sm.output[0])
