rule tables:
    """Tidy tables over all runs of a track: the only place that expands over sources."""
    input:
        histories=lambda wc: history_files(wc.track),
        metrics=lambda wc: metric_files(wc.track),
        finetune=lambda wc: finetune_files(wc.track),
        quanta_scores=lambda wc: quanta_scores_input(wc.track),
    output:
        **{name: f"results/{{track}}/tables/{name}.csv" for name in TABLES},
    log:
        "results/{track}/logs/tables.log",
    benchmark:
        "results/{track}/benchmarks/tables.tsv"
    conda:
        "../envs/transferability.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        metrics=lambda wc: track_cfg(wc.track)["metrics"],
        quanta_lambda_init=lambda wc: (study_cfg("quanta", wc.track) or {}).get(
            "score_lambda_init", 0.9
        ),
    script:
        "../workflow/scripts/tables.py"


rule figure:
    input:
        unpack(figure_tables),
    output:
        png="results/{track}/figures/{figure}.png",
        pdf="results/{track}/figures/{figure}.pdf",
    log:
        "results/{track}/logs/figures/{figure}.log",
    benchmark:
        "results/{track}/benchmarks/figures/{figure}.tsv"
    wildcard_constraints:
        figure="|".join(FIGURES + list(STUDY_FIGURE_OF)),
    conda:
        "../envs/transferability.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow/scripts/figure.py"
