# Analysis: every track's tidy tables over all its runs (the only rules that expand over
# sources), each table as a report page, and the figures.


include: "functions/analysis.smk"


rule tables:
    """Tidy tables over all runs of a track: the only place that expands over sources."""
    input:
        histories=lambda wc: history_files(wc.track),
        metrics=lambda wc: metric_files(wc.track),
        finetune=lambda wc: finetune_files(wc.track),
        quanta_scores=lambda wc: quanta_scores_input(wc.track),
    output:
        **table_outputs(TABLES),
    log:
        "results/{track}/logs/tables.log",
    benchmark:
        "results/{track}/benchmarks/tables.tsv"
    group:
        "tables"
    conda:
        "../envs/transferability.yaml"
    threads: 1
    resources:
        mem_mb=attempt_scaled("tables", "mem_mb"),
        runtime=attempt_scaled("tables", "runtime"),
    params:
        metrics=lambda wc: track_cfg(wc.track)["metrics"],
        quanta_lambda_init=quanta_lambda_init,
        baselines=lambda wc: tconfig.baselines(config, wc.track),
        bootstrap=config["bootstrap"],
    script:
        "../workflow/scripts/tables.py"


rule table_html:
    """One result table as a page of the report: a sortable HTML table, the CSV inside for
    download (Snakemake's report offers a bare CSV only as a download). Local: a second of
    work that would otherwise wait in a cluster queue."""
    input:
        "results/{track}/tables/{name}.csv",
    output:
        report(
            "results/{track}/tables/{name}.html",
            caption="../report/table.rst",
            category="{track} track",
            subcategory=table_stage,
        ),
    log:
        "results/{track}/logs/table_html/{name}.log",
    benchmark:
        "results/{track}/benchmarks/table_html/{name}.tsv"
    wildcard_constraints:
        name="|".join(TABLE_STAGES),
    localrule: True
    conda:
        "../envs/transferability.yaml"
    threads: 1
    resources:
        mem_mb=attempt_scaled("table_html", "mem_mb"),
        runtime=attempt_scaled("table_html", "runtime"),
    script:
        "../workflow/scripts/table_html.py"


rule figure:
    input:
        unpack(figure_tables),
    output:
        png=report(
            "results/{track}/figures/{figure}.png",
            caption="../report/figure.rst",
            category="{track} track",
            subcategory=figure_stage,
        ),
        pdf="results/{track}/figures/{figure}.pdf",
    log:
        "results/{track}/logs/figures/{figure}.log",
    benchmark:
        "results/{track}/benchmarks/figures/{figure}.tsv"
    wildcard_constraints:
        figure="|".join(FIGURES + list(STUDY_FIGURE_OF)),
    group:
        "figures"
    conda:
        "../envs/transferability.yaml"
    threads: 1
    resources:
        mem_mb=attempt_scaled("figure", "mem_mb"),
        runtime=attempt_scaled("figure", "runtime"),
    script:
        "../workflow/scripts/figure.py"


rule model_figure:
    """Filters and feature maps of one source's last checkpoint for one target image."""
    input:
        unpack(model_figure_inputs),
    output:
        png=report(
            "results/{track}/figures/model_{source}.png",
            caption="../report/model.rst",
            category="{track} track",
            subcategory="models",
        ),
        pdf="results/{track}/figures/model_{source}.pdf",
    log:
        "results/{track}/logs/figures/model_{source}.log",
    benchmark:
        "results/{track}/benchmarks/figures/model_{source}.tsv"
    wildcard_constraints:
        track=CNN,
    group:
        "figures"
    conda:
        "../envs/transferability.yaml"
    threads: 1
    resources:
        mem_mb=attempt_scaled("model_figure", "mem_mb"),
        runtime=attempt_scaled("model_figure", "runtime"),
    script:
        "../workflow/scripts/model_figure.py"
