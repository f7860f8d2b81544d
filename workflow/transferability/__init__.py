"""Transferability estimation: data, models, training, metrics and analysis.

Usable without Snakemake; the workflow's rule scripts are thin wrappers around this package.
The stage packages, in the order of the pipeline: :mod:`.data`, :mod:`.metrics`,
:mod:`.models`, :mod:`.training`, :mod:`.evaluation`, :mod:`.studies`, :mod:`.report`,
:mod:`.run`, :mod:`.jobs`; then :mod:`.rank` and :mod:`.cli` (docs/layout.md).
"""

import sys
from importlib.abc import MetaPathFinder

__version__ = "0.1.0"

#: Modules of the flat layout before issue 26 → where their contents are now. Importing an old
#: name fails with a message naming the new import. ``transferability.families`` still works (an
#: alias of :mod:`.models`), and so do the names of the old ``transferability.data`` and
#: ``transferability.training`` modules, read from the packages of the same names.
MOVED = {
    "analysis": "transferability.evaluation.analysis",
    "baselines": "transferability.evaluation.baselines",
    "config": "transferability.run.config",
    "figures": "transferability.report.figures",
    "imagefolder": "transferability.data.folders",
    "job_resources": "transferability.run.resources",
    "layer_transfer": "transferability.studies.layer_transfer",
    "layers": "transferability.models.layers",
    "multirun": "transferability.training.multirun",
    "pipeline": "transferability.jobs (sources, targets, extract, metric_jobs, finetune, tables)",
    "pipeline_images": "transferability.jobs (sources, targets, extract, finetune)",
    "plots": "transferability.report.plots",
    "plots_model": "transferability.report.plots_model",
    "plots_studies": "transferability.report.plots_studies",
    "plugins": "transferability.metrics.plugins",
    "quanta": "transferability.studies.quanta",
    "report_tables": "transferability.report.tables",
    "schedule": "transferability.training.schedule",
    "scheduler_patch": "transferability.run.scheduler_patch",
    "target_formats": "transferability.data.layouts",
    "tasks": "transferability.studies.tasks",
}


class _MovedModules(MetaPathFinder):
    """Asked last (after every real module was looked for): an old module name of
    :data:`MOVED` that no longer exists fails naming its new place."""

    def find_spec(self, fullname, path=None, target=None):
        prefix, _, rest = fullname.partition(".")
        old = rest.split(".")[0]
        if prefix == __name__ and old in MOVED and "." not in rest:
            raise ModuleNotFoundError(
                f"{fullname} moved (issue 26, docs/layout.md): import {MOVED[old]}", name=fullname
            )
        return None


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.append(_MovedModules())
