"""Rule model_figure: conv1 filters and every layer's feature maps of one checkpoint."""

from transferability.jobs.logs import setup_logging
from transferability.report.plots_model import draw_model_figure

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
draw_model_figure(sm.input.checkpoint, sm.input.dataset, sm.output.png, sm.output.pdf)
