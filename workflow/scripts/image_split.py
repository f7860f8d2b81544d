"""Rule image_split: the target's fixed 80/20 split and its extraction subset."""

from transferability.jobs.logs import setup_logging
from transferability.jobs.targets import split_target

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
target, extract = sm.params.target, sm.params.extract
split_target(
    target["root"],
    sm.output.index,
    sm.output.subset,
    test_fraction=target.get("test_fraction", sm.params.split["test_fraction"]),
    seed=sm.params.split["seed"],
    per_class=target.get("per_class", extract["per_class"]),
    subset_seed=extract["seed"],
    subset_split=target["extract_split"],
    target_format=target["format"],
    allow_download=sm.config["allow_download"],
)
