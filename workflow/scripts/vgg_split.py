"""Rule vgg_split: the target's fixed 80/20 split and its extraction subset."""

from transferability.pipeline import setup_logging
from transferability.pipeline_vgg import split_target

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
split_target(
    sm.params.root,
    sm.output.index,
    sm.output.subset,
    test_fraction=sm.params.test_fraction,
    seed=sm.params.split["seed"],
    per_class=sm.params.per_class,
    subset_seed=sm.params.subset_seed,
    subset_split=sm.params.subset_split,
)
