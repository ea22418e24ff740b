"""Select the reported modules: from the chosen source, then through include/exclude globs."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence


class ModuleFilter:
    """Keeps a name when it matches an include glob (or none are given) and no exclude glob."""

    def __init__(self, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> None:
        self._include = _compile(include)
        self._exclude = _compile(exclude)

    def __call__(self, name: str) -> bool:
        """Whether ``name`` is reported."""
        if self._include is not None and not self._include.match(name):
            return False
        return self._exclude is None or not self._exclude.match(name)

    def apply(self, modules: Mapping[str, str]) -> dict[str, str]:
        """The kept entries of ``modules``, sorted by name."""
        if self._include is None and self._exclude is None:
            return {name: modules[name] for name in sorted(modules)}
        return {name: modules[name] for name in sorted(modules) if self(name)}


def _compile(globs: Sequence[str]) -> re.Pattern[str] | None:
    if not globs:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs))
