# Data: the datasets (MNIST, FashionMNIST and the sets derived from MNIST) and each CNN
# target's extraction subset.


include: "functions/data.smk"


rule dataset:
    input:
        dataset_inputs,
    output:
        f"{DATA_DIR}/{{dataset}}/data.npz",
    log:
        "results/logs/dataset/{dataset}.log",
    benchmark:
        "results/benchmarks/dataset/{dataset}.tsv"
    conda:
        "../envs/transferability.yaml"
    threads: 1
    resources:
        mem_mb=attempt_scaled("dataset", "mem_mb"),
        runtime=attempt_scaled("dataset", "runtime"),
    params:
        # allow_download is read in the script: how a file is obtained must not re-run it
        seed=config["noise_seed"],
    script:
        "../workflow/scripts/dataset.py"


rule target_subset:
    input:
        target_dataset,
    output:
        "results/{track}/subsets/{target}.csv",
    log:
        "results/{track}/logs/subset/{target}.log",
    benchmark:
        "results/{track}/benchmarks/subset/{target}.tsv"
    wildcard_constraints:
        track=CNN,
    group:
        "prepare"
    conda:
        "../envs/transferability.yaml"
    threads: 1
    resources:
        mem_mb=attempt_scaled("target_subset", "mem_mb"),
        runtime=attempt_scaled("target_subset", "runtime"),
    params:
        per_class=lambda wc: track_cfg(wc.track)["extract"]["per_class"],
        seed=lambda wc: track_cfg(wc.track)["extract"]["seed"],
    script:
        "../workflow/scripts/target_subset.py"
