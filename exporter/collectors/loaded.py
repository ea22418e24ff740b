"""The original status API's view of modules: every loaded module with a string ``__version__``."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from types import ModuleType

from exporter.collectors.installed import MAX_NAME_LENGTH, MAX_VERSION_LENGTH, Skipped


def collect_loaded(
    modules: Mapping[str, ModuleType | None] | None = None,
) -> tuple[dict[str, str], tuple[Skipped, ...]]:
    """Return module name -> ``__version__`` for loaded modules (default ``sys.modules``).

    Modules whose ``__version__`` is not a string are left out, as the original
    did; a string that cannot be published safely (too long, control
    characters) is skipped and reported. Unlike the original's ``getattr``,
    only a ``__version__`` set in the module's namespace is read: one served by
    a module ``__getattr__`` would run module code (lazy imports, deprecation
    warnings) from the refresh thread.
    """
    source = sys.modules if modules is None else modules
    found: dict[str, str] = {}
    skipped: list[Skipped] = []
    for name, module in sorted(list(source.items()), key=lambda item: item[0]):
        try:
            version = vars(module).get("__version__")
        except TypeError:  # not a module (sys.modules may hold any object)
            continue
        if not isinstance(version, str):
            continue
        problem = _problem(name, version)
        if problem:
            skipped.append(Skipped(f"sys.modules[{name!r}]", problem))
        else:
            found[name] = version
    return found, tuple(skipped)


def _problem(name: str, version: str) -> str | None:
    if len(name) > MAX_NAME_LENGTH or len(version) > MAX_VERSION_LENGTH:
        return "name or __version__ too long"
    if not (name.isprintable() and version.isprintable()) or not version:
        return "name or __version__ empty or with control characters"
    try:
        (name + version).encode("utf-8")
    except UnicodeEncodeError:
        return "name or __version__ is not valid Unicode"
    return None
