# Metrics (rules/metrics.smk): its input functions, output lists and params
# helpers, included at the top of rules/metrics.smk.


def metric_plugin_inputs(wildcards):
    """The plugin files of a track's metrics: an edited plugin re-runs the metric jobs."""
    return tconfig.metric_plugin_files(config, track_cfg(wildcards.track)["metrics"])


def metric_tables(model, track_steps):
    """The metric tables of a run folder pattern ``model``, one per step of ``track_steps``."""
    return [
        f"results/{{track}}/metrics/{{target}}/{model}/seed{{seed}}/step{step}.csv"
        for step in track_steps
    ]
