"""Rule image_source: check a source's weights against its architecture; save the checkpoint."""

import torch  # noqa: F401  (imported before the start-up is logged: it is overhead)

from transferability.jobs.logs import setup_logging
from transferability.jobs.sources import load_source

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
source = sm.params.source
load_source(
    sm.params.weights,
    sm.output.checkpoint,
    sm.output.history,
    info=sm.input.get("info"),
    source_accuracy=source.get("source_accuracy"),
    source=sm.wildcards.source,
    seed=int(sm.wildcards.seed),
    arch=source["arch"],
    cifar=source["cifar"],
    image_size=source.get("image_size"),
    encoder=source.get("encoder", False),
    remap=source.get("remap"),
    allow_download=sm.config["allow_download"],
)
