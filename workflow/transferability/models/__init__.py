"""Stage 2 — the models: one interface for every family (thesis CNN, torchvision, timm as
``timm/<name>``) in :mod:`.registry` — build or load a model, list and record its layers, give
its input transform, build the fine-tuning model under a named policy — plus layer names
(:mod:`.layers`), weight files (:mod:`.weights`), policies (:mod:`.policies`) and the spec of a
model in plain data (:mod:`.spec`).

May import: :mod:`transferability.data` (input specs and transforms) and
:mod:`transferability.artifacts`. The registry's names are importable from here
(``from transferability.models import build_model``); they are loaded on first use, so that
``transferability.models.layers`` is read without importing torch. The old name
``transferability.families`` still works (an alias of this package), and so do the names of the
old ``transferability.models`` module (``ThesisCNN``, ``build_cnn``: :mod:`.thesis_cnn`).
"""

from __future__ import annotations

import importlib
from typing import Any

_REGISTRY = "transferability.models.registry"


#: Where the old ``transferability.models`` module's names (the thesis CNN) are now.
_THESIS_CNN = "transferability.models.thesis_cnn"


def __getattr__(name: str) -> Any:
    registry = importlib.import_module(_REGISTRY)
    if name in registry.__all__ or name == "_FAMILIES":
        return getattr(registry, name)
    thesis_cnn = importlib.import_module(_THESIS_CNN)
    if name in thesis_cnn.__all__:
        return getattr(thesis_cnn, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *importlib.import_module(_REGISTRY).__all__])
