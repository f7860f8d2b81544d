"""Stage 3 — training: the single-run loop on in-memory tensors and its evaluation
(:mod:`.loop`), R runs trained together (:mod:`.multirun`), and the log-spaced checkpoint grid
(:mod:`.schedule`).

May import: :mod:`transferability.models`, :mod:`transferability.data`,
:mod:`transferability.artifacts`. ``schedule`` imports neither torch nor numpy-heavy modules:
the configuration check reads it.
"""


def __getattr__(name: str):
    # The flat layout's `transferability.training` module was today's `.loop`: its names still work.
    if not name.startswith("_"):
        import importlib

        module = importlib.import_module("transferability.training.loop")
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
