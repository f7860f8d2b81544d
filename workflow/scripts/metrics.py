"""Rules metrics and metrics_initial: one tidy metric table per checkpoint of one run on one
target; a source's run also writes its step-0 table, the untrained model's (computed once)."""

from transferability.artifacts import write_csv
from transferability.jobs.finetune import share_initial
from transferability.jobs.logs import setup_logging
from transferability.jobs.metric_jobs import metric_table
from transferability.run.config import features_max_bytes, metric_plugins

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
metric_plugins(sm.config)  # the config's own metrics, registered before use
n_layers = len(sm.params.layers)
reuse = {}  # the input layer's rows, computed once for all checkpoints of the run
for i, (step, out) in enumerate(zip(sm.params.steps, sm.output.tables, strict=True)):
    layer_files = sm.input.activations[i * n_layers : (i + 1) * n_layers]
    table = metric_table(
        layer_files, sm.params.metrics, sm.input.logits[i], reuse=reuse,
        features_max_bytes=features_max_bytes(sm.config),
    )  # fmt: skip
    table.insert(0, "step", step)
    identity = {**dict(sm.wildcards.items()), "source": sm.params.source}
    for column in ("seed", "source", "target", "track"):
        table.insert(0, column, identity[column])
    write_csv(table, out)
if "initial" in sm.input.keys():
    share_initial(sm.input.initial, sm.output.initial, source=sm.wildcards.source)
