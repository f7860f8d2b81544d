"""One entry point for every figure of the workflow: the tracks' figures
(:mod:`transferability.report.plots`) and the studies'
(:mod:`transferability.report.plots_studies`).

Its own module so that the two figure modules never import each other.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from transferability.artifacts import atomic_path
from transferability.report.plots import FIGURES, plt, sns
from transferability.report.plots_studies import STUDY_FIGURES

__all__ = ["draw_figure", "figure_names"]


def figure_names() -> list[str]:
    """Every figure :func:`draw_figure` knows, sorted."""
    return sorted({*FIGURES, *STUDY_FIGURES})


def draw_figure(
    name: str, table_paths: Mapping[str, str | os.PathLike], *outputs: str | Path
) -> None:
    """Draw figure ``name`` from CSV tables and save it to each output (format from suffix)."""
    draw = {**FIGURES, **{key: fn for key, (fn, _) in STUDY_FIGURES.items()}}
    if name not in draw:
        raise ValueError(f"unknown figure {name!r}; known: {figure_names()}")
    tables = {key: pd.read_csv(path) for key, path in table_paths.items()}
    sns.set_theme(style="whitegrid", context="notebook")
    fig = draw[name](tables)
    for out in outputs:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=120, bbox_inches="tight", format=Path(out).suffix[1:])
    plt.close(fig)
