"""The package's import graph is a tree (no cycles), counting the imports inside functions too:
a module never imports one that imports it back (issue 16)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "workflow" / "transferability"


def _module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module → the package's modules it imports (``from a.b import c`` counts ``a.b.c`` when
    that is a module, else ``a.b``)."""
    modules = {_module_name(p, package): p for p in package.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [
                    f"{node.module}.{a.name}"
                    if f"{node.module}.{a.name}" in modules
                    else node.module
                    for a in node.names
                ]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_package_imports_form_no_cycle():
    graph = import_graph()
    assert "transferability.models.torchvision_family" in graph
    assert cycles(graph) == [], cycles(graph)


#: The stages in the order of the pipeline (docs/layout.md). A module may import its own
#: package and the packages of lower stages only; packages of one stage do not import each other.
#: ``families`` is the old name of ``models`` (an alias package), counted as ``models``.
STAGES = {
    "transferability": 0,  # the package root: __version__
    "artifacts": 0,
    "data": 1,
    "metrics": 1,
    "models": 2,
    "training": 3,
    "evaluation": 4,
    "studies": 5,
    "report": 6,
    "run": 7,
    "jobs": 8,
    "rank": 9,
    "cli": 10,
}


ALIASES = {"families": "models"}


def stage_of(module: str) -> str:
    parts = module.split(".")
    name = parts[1] if len(parts) > 1 else parts[0]
    return ALIASES.get(name, name)


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """``a -> b`` for every import of a module of a stage not below the importer's own (other
    than its own package)."""
    found = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            a, b = stage_of(module), stage_of(target)
            if a != b and STAGES[b] >= STAGES[a] and b != "transferability":
                found.append(
                    f"{module} ({a}, stage {STAGES[a]}) -> {target} ({b}, stage {STAGES[b]})"
                )
    return found


def test_every_module_belongs_to_a_stage():
    assert {stage_of(m) for m in import_graph()} <= set(STAGES)


def test_stage_checker_sees_an_upward_import():
    graph = {
        "transferability.metrics.linear": {"transferability.training.loop"},
        "transferability.data.arrays": {"transferability.metrics.stats"},
        "transferability.jobs.extract": {"transferability.data.arrays"},
    }
    assert len(upward_imports(graph)) == 2


def test_a_lower_stage_never_imports_a_higher_one():
    graph = import_graph()
    assert upward_imports(graph) == [], "\n".join(upward_imports(graph))
    # the examples, spelled out
    for module, targets in graph.items():
        stages = {stage_of(t) for t in targets}
        if stage_of(module) == "metrics":
            assert not stages & {"training", "models", "jobs"}, module
        if stage_of(module) not in ("jobs", "rank", "cli"):
            assert "jobs" not in stages, module


def test_old_module_names_fail_naming_the_new_import():
    import importlib

    import pytest

    with pytest.raises(ModuleNotFoundError, match=r"transferability.pipeline moved .*jobs"):
        importlib.import_module("transferability.pipeline")
    with pytest.raises(ModuleNotFoundError, match=r"import transferability.data.folders"):
        importlib.import_module("transferability.imagefolder")
    with pytest.raises(ImportError, match=r"import it from transferability.jobs.studies"):
        from transferability.studies import run_quanta  # noqa: F401
    # and the public ones keep working: the same objects under the old names
    from transferability import families, models
    from transferability.data import load_dataset
    from transferability.data.arrays import load_dataset as arrays_load_dataset
    from transferability.families.spec import ModelSpec
    from transferability.models.spec import ModelSpec as models_spec

    assert families.build_model is models.build_model and ModelSpec is models_spec
    assert load_dataset is arrays_load_dataset
    from transferability.data import prepare_dataset  # the old data module: arrays and obtain
    from transferability.data.obtain import prepare_dataset as obtain_prepare_dataset
    from transferability.models import ThesisCNN  # the old models module: the thesis CNN
    from transferability.models.thesis_cnn import ThesisCNN as thesis_cnn_class
    from transferability.training import configure_torch  # the old training module: loop
    from transferability.training.loop import configure_torch as loop_configure_torch

    assert prepare_dataset is obtain_prepare_dataset and ThesisCNN is thesis_cnn_class
    assert configure_torch is loop_configure_torch
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        models.nonexistent  # noqa: B018
