"""Stage 5 — the studies' science: random tasks (:mod:`.tasks`), QUANTA's layer
interpolation (:mod:`.quanta`) and layer-wise transfer (:mod:`.layer_transfer`). Their jobs are
in :mod:`transferability.jobs.studies`.

May import every stage below it: data, metrics, models, training, evaluation, artifacts.
"""

#: The old ``transferability.studies`` module held the studies' jobs, now
#: :mod:`transferability.jobs.studies` (this package never imports it: jobs are above studies).
_OLD_JOBS = ("run_quanta", "quanta_tables", "run_layer_transfer", "layer_transfer_table",
             "random_tasks", "random_task_references", "random_tasks_tables")  # fmt: skip


def __getattr__(name: str):
    if name in _OLD_JOBS:
        raise ImportError(
            f"transferability.studies.{name} moved (issue 26, docs/layout.md): "
            f"import it from transferability.jobs.studies"
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
