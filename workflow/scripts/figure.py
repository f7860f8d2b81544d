"""Rule figure: one figure from the tidy tables (PNG and PDF)."""

from transferability.pipeline import setup_logging
from transferability.plots import draw_figure

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
draw_figure(sm.wildcards.figure, dict(sm.input.items()), sm.output.png, sm.output.pdf)
