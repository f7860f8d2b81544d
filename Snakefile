from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "schemas/config.schema.yaml")


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/pretrain.smk"
include: "rules/extract.smk"
include: "rules/metrics.smk"
include: "rules/finetune.smk"
include: "rules/studies.smk"
include: "rules/images.smk"
include: "rules/analysis.smk"


rule all:
    default_target: True
    input:
        all_outputs(),
