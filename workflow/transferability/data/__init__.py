"""Stage 1 — targets and sources as data: MNIST-like arrays (:mod:`.arrays`) and how they are
obtained without internet (:mod:`.obtain`), image folders and their split index
(:mod:`.folders`), torchvision's dataset layouts (:mod:`.layouts`), a model's input images and
transforms (:mod:`.transforms`), and the one interface every job reads a target through
(:mod:`.targets`).

May import: :mod:`transferability.artifacts` only. Modules here import torch only where they
hand out tensors (``folders``, ``targets``); ``arrays``, ``obtain`` and ``transforms`` stay light
enough for the configuration check.
"""


def __getattr__(name: str):
    # The flat layout's `transferability.data` module is today's `.arrays` and `.obtain`: its
    # names still work.
    if not name.startswith("_"):
        import importlib

        for module in ("arrays", "obtain"):
            module = importlib.import_module(f"transferability.data.{module}")
            if hasattr(module, name):
                return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
