"""Licences as CycloneDX writes them: an SPDX id, an SPDX expression, or a name.

The SPDX list is ``packaging.licenses`` (PyPA's, the one build backends check
PEP 639 ``License-Expression`` values against; a runtime dependency already). It is
imported on the first licence looked up, not at start-up, and each distinct text is
looked up once per process: an environment repeats a handful of licences.

Matching is case-insensitive, as SPDX says; what is written is the list's canonical
spelling (``mit`` becomes ``MIT``, ``apache-2.0 or mit`` becomes ``Apache-2.0 OR MIT``).
"""

from __future__ import annotations

import functools
import re
from typing import Any

# Classifiers whose SPDX id is not in their own text (the list has ids, not full names);
# those with an id in parentheses, "(BSL-1.0)", "(MPL 2.0)", are read from the list.
_CLASSIFIER_SPDX = {
    "MIT License": "MIT",
    "ISC License (ISCL)": "ISC",
    "Python Software Foundation License": "PSF-2.0",
    "zlib/libpng License": "Zlib",
}
_PARENTHESISED = re.compile(r"\(([A-Za-z0-9][A-Za-z0-9.\- ]*)\)")
_MAX_CACHED = 4096  # distinct licence texts kept; an environment has far fewer
_MAX_CACHED_LENGTH = 1000  # characters; an SPDX expression of a real distribution is short
# The dicts returned are cached and shared between components: never mutate them.


def spdx_license(text: str) -> dict[str, Any] | None:
    """The CycloneDX licence choice for an SPDX id or expression, in the list's spelling:
    ``{"license": {"id": ...}}`` for a single listed id, ``{"expression": ...}`` for any
    other valid expression (``OR``/``AND``/``WITH``, ``GPL-2.0+``, ``LicenseRef-...``).
    None when ``text`` is not valid SPDX (unknown id, free text, bad syntax)."""
    from packaging.licenses import InvalidLicenseExpression, canonicalize_license_expression

    try:
        canonical = canonicalize_license_expression(text)
    except InvalidLicenseExpression:
        return None
    if " " in canonical or canonical.endswith("+") or canonical.startswith("LicenseRef-"):
        return {"expression": canonical}
    return {"license": {"id": canonical}}


_cached_spdx_license = functools.lru_cache(maxsize=_MAX_CACHED)(spdx_license)


def license_choice(text: str) -> dict[str, Any]:
    """``text`` (a License-Expression or License field) as an SPDX id or expression when it
    is valid SPDX, else as a licence name. Texts of up to _MAX_CACHED_LENGTH characters
    are looked up once per process; a longer one each time, so that hostile metadata
    cannot make the cache hold megabytes."""
    found = _cached_spdx_license(text) if len(text) <= _MAX_CACHED_LENGTH else spdx_license(text)
    return found or {"license": {"name": text}}


def classifier_license(classifier: str) -> dict[str, Any]:
    """The licence of the last part of a ``License ::`` classifier, ``MIT License``: an id
    where the classifier names exactly one SPDX licence, else the classifier as a name.

    An id in parentheses is looked up in the list (``Boost Software License 1.0
    (BSL-1.0)``, and ``(MPL 2.0)`` as ``MPL-2.0``); the few that carry no id are mapped by
    hand. Versionless ones (``Apache Software License``, ``BSD License``) stay names."""
    if len(classifier) > _MAX_CACHED_LENGTH:  # no trove classifier is; not worth caching
        return {"license": {"name": classifier}}
    return _classifier_license(classifier)


@functools.lru_cache(maxsize=_MAX_CACHED)
def _classifier_license(classifier: str) -> dict[str, Any]:
    for found in _PARENTHESISED.finditer(classifier):
        choice = _cached_spdx_license(found.group(1).replace(" ", "-"))
        if choice is not None and "license" in choice:
            return choice
    spdx = _CLASSIFIER_SPDX.get(classifier)
    return {"license": {"id": spdx}} if spdx else {"license": {"name": classifier}}
