"""Rule quanta_tables: all QUANTA histories and the scores (mean λ_S of the last epochs)."""

from transferability.artifacts import write_csv
from transferability.jobs.logs import setup_logging
from transferability.jobs.studies import quanta_tables

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
histories, scores = quanta_tables(
    sm.input, track=sm.wildcards.track, last_epochs=sm.params.last_epochs
)
write_csv(histories, sm.output.quanta)
write_csv(scores, sm.output.quanta_scores)
