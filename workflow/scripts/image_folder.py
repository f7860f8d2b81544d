"""Rule image_folder: a small image-folder target made from a known dataset."""

from transferability.data.folders import dataset_folder
from transferability.jobs.logs import setup_logging

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
dataset_folder(sm.input[0], sm.output[0], per_class=sm.params.per_class, size=32)
