"""Metrics written outside the package: the config's ``metric_plugins:`` and
``transferability rank --metric-plugin`` (docs/plugins.md).

A plugin is a Python file or an importable module whose import registers its functions with
:func:`transferability.metrics.register_metric`. Loading one is idempotent; an edited file is
re-imported (its previous names forgotten first). Problems raise :class:`PluginError` naming
the plugin: a file that fails to import, a name that clashes with a built-in metric or another
plugin's, a plugin that registers nothing.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from transferability.metrics import METRICS
from transferability.metrics._base import plugin_registration, unregister

__all__ = ["Plugin", "PluginError", "load_plugin", "load_plugins", "plugin_path"]


class PluginError(ValueError):
    """A metric plugin could not be used; the message names the plugin and the problem."""


@dataclass(frozen=True)
class Plugin:
    """One loaded plugin: as given (``spec``), the file that holds it, the names it registered."""

    spec: str
    path: Path
    names: tuple[str, ...]


#: Resolved file → (content digest, plugin): a file is imported again only after an edit.
_LOADED: dict[Path, tuple[str, Plugin]] = {}


def _is_file_spec(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or os.sep in spec


def plugin_path(spec: str, base: str | os.PathLike | None = None) -> Path:
    """The file of plugin ``spec``: a ``.py`` path (relative to ``base``, default the working
    directory) or an importable module's source file."""
    if not isinstance(spec, str) or not spec.strip():
        raise PluginError(f"metric plugin {spec!r}: expected a .py file or a module name")
    if _is_file_spec(spec):
        path = Path(spec).expanduser()
        if not path.is_absolute():
            path = Path(base or ".") / path
        if not path.is_file():
            raise PluginError(f"metric plugin {spec!r}: no such file {path}")
        return path.resolve()
    try:
        found = importlib.util.find_spec(spec)
    except (ImportError, ValueError) as err:
        raise PluginError(f"metric plugin {spec!r}: cannot find module: {err}") from None
    if found is None or not found.origin or not Path(found.origin).is_file():
        raise PluginError(
            f"metric plugin {spec!r}: neither a .py file nor an importable module with a "
            "source file"
        )
    return Path(found.origin).resolve()


def load_plugin(spec: str, base: str | os.PathLike | None = None) -> Plugin:
    """Import plugin ``spec`` once (again after its file changed) and return what it registered."""
    path = plugin_path(spec, base)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if path in _LOADED:
        known_digest, plugin = _LOADED[path]
        if known_digest == digest:
            return plugin
        unregister(plugin.names)
    module_name = spec if not _is_file_spec(spec) else f"_metric_plugin_{path.stem}_{digest[:12]}"
    with plugin_registration(str(path)) as names:
        try:
            module_spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[module_name] = module
            module_spec.loader.exec_module(module)
        except Exception as err:  # the user's code: anything can go wrong, name the file
            sys.modules.pop(module_name, None)
            unregister(names)
            raise PluginError(
                f"metric plugin {path} failed to import: {type(err).__name__}: {err}"
            ) from err
    if not names:
        raise PluginError(
            f"metric plugin {path} registers no metric (decorate a function with "
            "transferability.metrics.register_metric)"
        )
    plugin = Plugin(spec=spec, path=path, names=tuple(names))
    _LOADED[path] = (digest, plugin)
    return plugin


def load_plugins(
    specs: Iterable[str] | None, base: str | os.PathLike | None = None
) -> list[Plugin]:
    """:func:`load_plugin` for every entry of a ``metric_plugins:`` list (None: none)."""
    return [load_plugin(spec, base) for spec in specs or []]


def plugin_of(name: str) -> str | None:
    """The plugin file that registered metric ``name`` (None: a built-in or unknown name)."""
    fn = METRICS.get(name)
    return getattr(fn, "plugin", None)
