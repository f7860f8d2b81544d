"""The old name of :mod:`transferability.models` (issue 26 moved the families there): every name
and submodule imported from ``transferability.families`` is the one in ``transferability.models``
(the same objects, so registering or patching through either name affects both)."""

import importlib
import sys

from transferability.models.registry import *  # noqa: F403
from transferability.models.registry import __all__  # noqa: F401

for _name in ("base", "policies", "spec", "weights", "thesis_cnn", "timm_family",
              "torchvision_family"):  # fmt: skip
    _module = importlib.import_module(f"transferability.models.{_name}")
    sys.modules[f"{__name__}.{_name}"] = globals()[_name] = _module


def __getattr__(name: str):
    return getattr(importlib.import_module("transferability.models.registry"), name)
