"""Rule <track>_extract: every configured layer (and the head's logits) of one model on a
target."""

import torch  # noqa: F401  (imported before the start-up is logged: it is overhead)

from transferability.jobs.extract import extract_images as extract
from transferability.jobs.logs import setup_logging

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
settings = sm.config["tracks"][sm.params.track]["extract"]
extract(
    sm.input.checkpoint,
    sm.params.target["root"],
    sm.input.subset,
    dict(zip(sm.params.layers, sm.output.activations, strict=True)),
    sm.output.get("logits"),
    target=sm.wildcards.target,
    resize=sm.params.transforms.get("resize"),
    crop=sm.params.transforms.get("crop"),
    batch_size=settings["batch_size"],
    compression=settings["compression"],
    target_format=sm.params.target["format"],
    threads=sm.threads,
    device=sm.config["device"],
)
