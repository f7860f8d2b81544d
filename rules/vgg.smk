# The VGG track (SPEC §6.2): sources loaded from weight files, image-folder targets, one model
# per (source, seed) at step "final". Paths are literal results/vgg/... so they never compete
# with the CNN rules.


rule vgg_weights:
    """Weights trained here for a source declared with pretrain_on (tiny configs); the file is
    then loaded by vgg_source exactly like an external weight file."""
    input:
        lambda wc: dataset_file(vgg_source_cfg(wc.source)["pretrain_on"]),
    output:
        "results/vgg/weights/{source}.pt",
    log:
        "results/vgg/logs/weights/{source}.log",
    benchmark:
        "results/vgg/benchmarks/weights/{source}.tsv"
    conda:
        "../envs/transferability.yaml"
    threads: config["threads_per_job"]
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=TRAINING_GPUS,
    params:
        source=lambda wc: vgg_source_cfg(wc.source),
    script:
        "../workflow/scripts/vgg_weights.py"


rule vgg_images:
    """A small image-folder target built from a known dataset (make_from; tiny configs)."""
    input:
        lambda wc: dataset_file(vgg_target_cfg(wc.target)["make_from"]),
    output:
        directory("results/vgg/images/{target}"),
    log:
        "results/vgg/logs/images/{target}.log",
    benchmark:
        "results/vgg/benchmarks/images/{target}.tsv"
    conda:
        "../envs/transferability.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        per_class=lambda wc: vgg_target_cfg(wc.target)["make_per_class"],
    script:
        "../workflow/scripts/vgg_images.py"


rule vgg_split:
    """The target's fixed 80/20 stratified split and its extraction subset."""
    input:
        vgg_target_inputs,
    output:
        index="results/vgg/splits/{target}.csv",
        subset="results/vgg/subsets/{target}.csv",
    log:
        "results/vgg/logs/split/{target}.log",
    benchmark:
        "results/vgg/benchmarks/split/{target}.tsv"
    group:
        "prepare"
    conda:
        "../envs/transferability.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        root=lambda wc: vgg_target_cfg(wc.target)["root"],
        split=VGG.get("split", {}),
        per_class=lambda wc: vgg_target_cfg(wc.target).get(
            "per_class", VGG["extract"]["per_class"]
        ),
        subset_seed=lambda wc: VGG["extract"]["seed"],
        subset_split=lambda wc: vgg_target_cfg(wc.target)["extract_split"],
        test_fraction=lambda wc: vgg_target_cfg(wc.target).get(
            "test_fraction", VGG["split"]["test_fraction"]
        ),
    script:
        "../workflow/scripts/vgg_split.py"


rule vgg_source:
    """A source's weights checked against its architecture and saved as the track's
    checkpoint (with the metadata to rebuild it), plus a one-row description."""
    input:
        vgg_weight_inputs,
    output:
        checkpoint="results/vgg/checkpoints/{source}/seed{seed}/final.pt",
        history="results/vgg/checkpoints/{source}/seed{seed}/history.csv",
    log:
        "results/vgg/logs/source/{source}/seed{seed}.log",
    benchmark:
        "results/vgg/benchmarks/source/{source}/seed{seed}.tsv"
    conda:
        "../envs/transferability.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        source=lambda wc: vgg_source_cfg(wc.source),
        weights=lambda wc: tconfig.vgg_weights(config, wc.source),
    script:
        "../workflow/scripts/vgg_source.py"


rule vgg_extract:
    """Every configured layer and the source head's logits of one model on one target."""
    input:
        checkpoint="results/vgg/checkpoints/{source}/seed{seed}/final.pt",
        subset="results/vgg/subsets/{target}.csv",
        images=vgg_target_inputs,
    output:
        activations=[
            f"results/vgg/activations/{{target}}/{{source}}/seed{{seed}}/stepfinal/{layer}.h5"
            for layer in VGG_LAYERS_FULL
        ],
        logits="results/vgg/activations/{target}/{source}/seed{seed}/stepfinal/logits.h5",
    log:
        "results/vgg/logs/extract/{target}/{source}/seed{seed}.log",
    benchmark:
        "results/vgg/benchmarks/extract/{target}/{source}/seed{seed}.tsv"
    wildcard_constraints:
        source=VGG_FULL_SOURCES,
    conda:
        "../envs/transferability.yaml"
    threads: config["threads_per_job"]
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=TRAINING_GPUS,
    params:
        layers=VGG_LAYERS_FULL,
        root=lambda wc: vgg_target_cfg(wc.target)["root"],
        transforms=lambda wc: tconfig.vgg_transforms(config, wc.source),
    script:
        "../workflow/scripts/vgg_extract.py"


use rule vgg_extract as vgg_extract_features with:
    output:
        activations=[
            f"results/vgg/activations/{{target}}/{{source}}/seed{{seed}}/stepfinal/{layer}.h5"
            for layer in VGG_LAYERS_FEATURES
        ],
    wildcard_constraints:
        source=VGG_FEATURE_SOURCES,
    params:
        layers=VGG_LAYERS_FEATURES,
        root=lambda wc: vgg_target_cfg(wc.target)["root"],
        transforms=lambda wc: tconfig.vgg_transforms(config, wc.source),


rule vgg_metrics:
    input:
        activations=vgg_activation_inputs,
        logits=vgg_logits_inputs,
    output:
        "results/vgg/metrics/{target}/{source}/seed{seed}/stepfinal.csv",
    log:
        "results/vgg/logs/metrics/{target}/{source}/seed{seed}.log",
    benchmark:
        "results/vgg/benchmarks/metrics/{target}/{source}/seed{seed}.tsv"
    group:
        "metrics"
    conda:
        "../envs/transferability.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        metrics=VGG.get("metrics", []),
    script:
        "../workflow/scripts/vgg_metrics.py"


rule vgg_finetune:
    """One source (or the from-scratch baseline, source "scratch") fine-tuned on one target."""
    input:
        checkpoint=vgg_finetune_checkpoint,
        index="results/vgg/splits/{target}.csv",
        images=vgg_target_inputs,
    output:
        "results/vgg/finetune/{target}/{source}/seed{seed}/stepfinal.csv",
    log:
        "results/vgg/logs/finetune/{target}/{source}/seed{seed}.log",
    benchmark:
        "results/vgg/benchmarks/finetune/{target}/{source}/seed{seed}.tsv"
    conda:
        "../envs/transferability.yaml"
    threads: config["threads_per_job"]
    resources:
        mem_mb=8000,
        runtime=720,
        gpu=TRAINING_GPUS,
    params:
        protocol=lambda wc: tconfig.vgg_finetune_protocol(config, wc.target),
        transforms=lambda wc: tconfig.vgg_transforms(config, wc.source),
        root=lambda wc: vgg_target_cfg(wc.target)["root"],
        extras=lambda wc: vgg_target_cfg(wc.target).get("extras"),
        scratch=VGG.get("scratch"),
    script:
        "../workflow/scripts/vgg_finetune.py"
