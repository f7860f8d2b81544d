"""Rule vgg_extract: every configured layer (and the head's logits) of one model on a target."""

import torch  # noqa: F401  (imported before the start-up is logged: it is overhead)

from transferability.pipeline import setup_logging
from transferability.pipeline_vgg import extract

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
vgg = sm.config["tracks"]["vgg"]
extract(
    sm.input.checkpoint,
    sm.params.root,
    sm.input.subset,
    dict(zip(sm.params.layers, sm.output.activations, strict=True)),
    sm.output.get("logits"),
    target=sm.wildcards.target,
    resize=sm.params.transforms["resize"],
    crop=sm.params.transforms["crop"],
    batch_size=vgg["extract"]["batch_size"],
    compression=vgg["extract"]["compression"],
    threads=sm.threads,
    device=sm.config["device"],
)
