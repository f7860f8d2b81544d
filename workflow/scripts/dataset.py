"""Rule dataset: obtain a base dataset or derive one (resources/datasets/<name>/data.npz)."""

from pathlib import Path

from transferability.data.obtain import prepare_dataset
from transferability.jobs.logs import setup_logging

setup_logging(snakemake.log[0])  # noqa: F821
out = Path(snakemake.output[0])  # noqa: F821
prepare_dataset(
    snakemake.wildcards.dataset,  # noqa: F821
    root=out.parent.parent,
    seed=snakemake.params.seed,  # noqa: F821
    allow_download=snakemake.config["allow_download"],  # noqa: F821
)
