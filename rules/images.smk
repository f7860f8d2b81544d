# The image tracks (SPEC §6.2): the thesis's VGG track and the model zoo. Sources are
# loaded from weight files or trained here, targets are image folders (or torchvision layouts),
# one model per (source, seed) at step "final"; models of every family go through
# transferability.models.


include: "functions/images.smk"


rule image_weights:
    """Weights trained here for a source declared with pretrain_on; the file is then loaded by
    image_source exactly like an external weight file."""
    input:
        image_pretrain_dataset,
    output:
        weights="results/{track}/weights/{source}.pt",
        info="results/{track}/weights/{source}.json",
    log:
        "results/{track}/logs/weights/{source}.log",
    benchmark:
        "results/{track}/benchmarks/weights/{source}.tsv"
    wildcard_constraints:
        track=IMAGE_TRACK_RE,
    conda:
        "../envs/transferability.yaml"
    threads: config["threads_per_job"]
    resources:
        mem_mb=attempt_scaled("image_weights", "mem_mb"),
        runtime=attempt_scaled("image_weights", "runtime"),
        gpu=TRAINING_GPUS,
    params:
        source=lambda wc: image_source_cfg(wc.track, wc.source),
    script:
        "../workflow/scripts/image_weights.py"


rule image_folder:
    """A small image-folder target built from a known dataset (make_from)."""
    input:
        image_folder_dataset,
    output:
        directory("results/{track}/images/{target}"),
    log:
        "results/{track}/logs/images/{target}.log",
    benchmark:
        "results/{track}/benchmarks/images/{target}.tsv"
    wildcard_constraints:
        track=IMAGE_TRACK_RE,
    conda:
        "../envs/transferability.yaml"
    threads: 1
    resources:
        mem_mb=attempt_scaled("image_folder", "mem_mb"),
        runtime=attempt_scaled("image_folder", "runtime"),
    params:
        per_class=lambda wc: image_target_cfg(wc.track, wc.target)["make_per_class"],
    script:
        "../workflow/scripts/image_folder.py"


rule image_split:
    """The target's fixed 80/20 stratified split and its extraction subset."""
    input:
        image_target_inputs,
    output:
        index="results/{track}/splits/{target}.csv",
        subset="results/{track}/subsets/{target}.csv",
    log:
        "results/{track}/logs/split/{target}.log",
    benchmark:
        "results/{track}/benchmarks/split/{target}.tsv"
    wildcard_constraints:
        track=IMAGE_TRACK_RE,
    group:
        "prepare"
    conda:
        "../envs/transferability.yaml"
    threads: 1
    resources:
        mem_mb=attempt_scaled("image_split", "mem_mb"),
        runtime=attempt_scaled("image_split", "runtime"),
    params:
        target=lambda wc: image_target_cfg(wc.track, wc.target),
        split=lambda wc: track_cfg(wc.track).get("split", {}),
        extract=lambda wc: track_cfg(wc.track)["extract"],
    script:
        "../workflow/scripts/image_split.py"


rule image_source:
    """A source's weights checked against its architecture and saved as the track's
    checkpoint (with the metadata to rebuild it), plus a one-row description."""
    input:
        unpack(image_weight_inputs),
    output:
        checkpoint="results/{track}/checkpoints/{source}/seed{seed}/final.pt",
        history="results/{track}/checkpoints/{source}/seed{seed}/history.csv",
    log:
        "results/{track}/logs/source/{source}/seed{seed}.log",
    benchmark:
        "results/{track}/benchmarks/source/{source}/seed{seed}.tsv"
    wildcard_constraints:
        track=IMAGE_TRACK_RE,
    conda:
        "../envs/transferability.yaml"
    threads: 1
    resources:
        mem_mb=attempt_scaled("image_source", "mem_mb"),
        runtime=attempt_scaled("image_source", "runtime"),
    params:
        source=lambda wc: image_source_cfg(wc.track, wc.source),
        weights=lambda wc: tconfig.image_weights(config, wc.track, wc.source),
    script:
        "../workflow/scripts/image_source.py"


for _name, _track, _layers, _head, _sources in EXTRACT_RULES:

    rule:
        """Every configured layer (and the source head's logits) of one model on one target."""
        name:
            _name
        input:
            checkpoint=f"results/{_track}/checkpoints/{{source}}/seed{{seed}}/final.pt",
            subset=f"results/{_track}/subsets/{{target}}.csv",
            images=image_extract_images(_track),
        output:
            **image_extract_outputs(_track, _layers, _head),
        log:
            f"results/{_track}/logs/extract/{{target}}/{{source}}/seed{{seed}}.log",
        benchmark:
            f"results/{_track}/benchmarks/extract/{{target}}/{{source}}/seed{{seed}}.tsv"
        wildcard_constraints:
            source=_sources,
        conda:
            "../envs/transferability.yaml"
        threads: config["threads_per_job"]
        resources:
            mem_mb=attempt_scaled("image_extract", "mem_mb"),
            runtime=attempt_scaled("image_extract", "runtime"),
            gpu=TRAINING_GPUS,
        params:
            track=_track,
            layers=_layers,
            target=lambda wc, track=_track: image_target_cfg(track, wc.target),
            transforms=image_extract_transforms(_track),
        script:
            "../workflow/scripts/image_extract.py"


rule image_metrics:
    input:
        activations=image_activation_inputs,
        logits=image_logits_inputs,
        plugins=metric_plugin_inputs,
    output:
        "results/{track}/metrics/{target}/{source}/seed{seed}/stepfinal.csv",
    log:
        "results/{track}/logs/metrics/{target}/{source}/seed{seed}.log",
    benchmark:
        "results/{track}/benchmarks/metrics/{target}/{source}/seed{seed}.tsv"
    wildcard_constraints:
        track=IMAGE_TRACK_RE,
    group:
        "metrics"
    conda:
        "../envs/transferability.yaml"
    threads: 1
    resources:
        mem_mb=attempt_scaled("image_metrics", "mem_mb"),
        runtime=attempt_scaled("image_metrics", "runtime"),
    params:
        metrics=lambda wc: track_cfg(wc.track).get("metrics", []),
    script:
        "../workflow/scripts/image_metrics.py"


rule image_finetune:
    """One source (or the from-scratch baseline, source "scratch") fine-tuned on one target."""
    input:
        checkpoint=image_finetune_checkpoint,
        index="results/{track}/splits/{target}.csv",
        images=image_target_inputs,
    output:
        "results/{track}/finetune/{target}/{source}/seed{seed}/stepfinal.csv",
    log:
        "results/{track}/logs/finetune/{target}/{source}/seed{seed}.log",
    benchmark:
        "results/{track}/benchmarks/finetune/{target}/{source}/seed{seed}.tsv"
    wildcard_constraints:
        track=IMAGE_TRACK_RE,
    conda:
        "../envs/transferability.yaml"
    threads: config["threads_per_job"]
    resources:
        mem_mb=attempt_scaled("image_finetune", "mem_mb"),
        runtime=attempt_scaled("image_finetune", "runtime"),
        gpu=TRAINING_GPUS,
    params:
        protocol=lambda wc: tconfig.image_finetune_protocol(config, wc.track, wc.target),
        policy=lambda wc: tconfig.image_policy(config, wc.track, wc.target),
        transforms=lambda wc: tconfig.image_transforms(config, wc.track, wc.source),
        target=lambda wc: image_target_cfg(wc.track, wc.target),
        scratch=lambda wc: track_cfg(wc.track).get("scratch"),
    script:
        "../workflow/scripts/image_finetune.py"
