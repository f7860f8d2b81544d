"""Rule figure: one figure from the tidy tables (PNG and PDF)."""

from transferability.jobs.logs import setup_logging
from transferability.report.figures import draw_figure

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
draw_figure(sm.wildcards.figure, dict(sm.input.items()), sm.output.png, sm.output.pdf)
