"""Memory and time each job asks its executor for, growing with the attempt.

One table, :data:`BASE`, holds every rule's first-attempt ``mem_mb`` (MB) and ``runtime``
(minutes); attempt k asks for k times as much (:func:`scaled`). A job that failed with
SLURM's ``TIMEOUT`` or ``OUT_OF_MEMORY`` is then retried (``retries:`` in profiles/slurm) with a
longer ``sbatch -t`` and a larger ``--mem`` instead of failing the same way again.

The config key ``job_resources:`` replaces base values, e.g. for a cluster whose nodes are slower
than the estimate: ``job_resources: {finetune: {runtime: 480}}``. Keys are the rules of
:data:`BASE` (``image_extract`` stands for the image tracks' extraction rules, named after their
track; the untrained model's extract, metrics and finetune rules use their stage's entry). A
profile's ``set-resources`` still wins over both, as Snakemake defines.
"""

from __future__ import annotations

from collections.abc import Mapping

RESOURCE_NAMES = ("mem_mb", "runtime")

# rule: (mem_mb, runtime in minutes) of the first attempt
BASE: dict[str, dict[str, int]] = {
    rule: dict(zip(RESOURCE_NAMES, values, strict=True))
    for rule, values in {
        "dataset": (4000, 30),
        "target_subset": (2000, 5),
        "initial_model": (2000, 5),
        "pretrain": (4000, 120),
        "extract": (4000, 30),
        "metrics": (4000, 30),
        "finetune": (4000, 240),
        "quanta": (4000, 240),
        "quanta_tables": (2000, 10),
        "layer_transfer": (4000, 240),
        "layer_transfer_table": (2000, 10),
        "random_tasks": (4000, 240),
        "random_task_references": (4000, 240),
        "random_tasks_tables": (2000, 10),
        "image_weights": (4000, 60),
        "image_folder": (2000, 10),
        "image_split": (2000, 10),
        "image_source": (4000, 10),
        "image_extract": (8000, 120),
        "image_metrics": (8000, 60),
        "image_finetune": (8000, 720),
        "tables": (4000, 10),
        "table_html": (2000, 10),
        "figure": (2000, 10),
        "model_figure": (2000, 10),
    }.items()
}


def check_overrides(overrides: Mapping) -> None:
    """Refuse a ``job_resources:`` entry that names no rule of :data:`BASE` or no resource."""
    for rule, values in (overrides or {}).items():
        if rule not in BASE:
            raise ValueError(
                f"job_resources: unknown rule {rule!r}; expected one of {sorted(BASE)}"
            )
        for name, value in (values or {}).items():
            if name not in RESOURCE_NAMES:
                raise ValueError(
                    f"job_resources.{rule}: unknown resource {name!r}; expected {RESOURCE_NAMES}"
                )
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"job_resources.{rule}.{name}: expected a positive integer, got {value!r}"
                )


def scaled(rule: str, resource: str, attempt: int, overrides: Mapping | None = None) -> int:
    """``resource`` of ``rule`` for its ``attempt`` (1, 2, ...): the base value × attempt.

    The base is ``overrides[rule][resource]`` when given, else :data:`BASE`'s.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    base = ((overrides or {}).get(rule) or {}).get(resource, BASE[rule][resource])
    return base * attempt
