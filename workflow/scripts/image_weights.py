"""Rule image_weights: train a source architecture here and write its weight file."""

import torch  # noqa: F401  (imported before the start-up is logged: it is overhead)

from transferability.jobs.logs import setup_logging
from transferability.jobs.sources import pretrain_weights

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
source = sm.params.source
pretrain_weights(
    sm.input[0],
    sm.output.weights,
    sm.output.info,
    arch=source["arch"],
    cifar=source["cifar"],
    image_size=source.get("image_size"),
    steps=source["pretrain_steps"],
    threads=sm.threads,
    device=sm.config["device"],
)
