"""Which installed distribution requires which: the SBOM's dependency graph.

From each distribution's ``Requires-Dist`` lines (``PackageInfo.requires``), as
``cyclonedx-py environment`` draws it: an edge to every requirement that is
installed (and published), none to one that is not, none to itself (an extra that
requires its own distribution). An extra's requirements count when installed, as
cyclonedx-py counts them: which extras were asked for at install time is not
recorded anywhere, and a requirement of an extra that is installed was most likely
installed for it.

One difference: an environment marker is evaluated for the inspected environment
(its Python's version and implementation, the host's platform), so that
``tomli; python_version < "3.11"`` is no dependency on 3.11 even when tomli is
installed for another reason. cyclonedx-py evaluates no marker. A marker that
cannot be evaluated keeps its edge, as cyclonedx-py would.

``packaging.markers`` (40 ms to import) is imported only when a requirement that is
installed has a marker. Each distribution's requirements are parsed once per process
(by their bytes) and filtered by their markers once per marker environment, so that a
render after an install costs a dictionary look-up per distribution.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from exporter.collectors.installed import canonical_name
from exporter.collectors.packages import requirement_lines
from exporter.collectors.platform import PlatformInfo
from exporter.collectors.python import PythonInfo

_NAME = re.compile(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")
_QUOTED = re.compile(r"""'([^']*)'|"([^"]*)\"""")
# Requires-Dist block -> its (canonical name, marker) pairs; and by marker environment,
# marker -> whether it holds and block -> the names it then requires. Kept across
# renders, which meet the same blocks again and again.
_parsed: dict[bytes, tuple[tuple[str, str], ...]] = {}
_applicable: dict[
    tuple[tuple[str, str], ...], tuple[dict[str, bool], dict[bytes, tuple[str, ...]]]
] = {}
_MAX_PARSED = 20_000  # blocks, one per distribution: many environments' worth
_MAX_ENVIRONMENTS = 4
# sys.platform where it is not platform.system() in lower case.
_SYS_PLATFORM = {"Windows": "win32", "Darwin": "darwin", "Java": "java"}


def marker_environment(python: PythonInfo, platform: PlatformInfo) -> dict[str, str]:
    """The PEP 508 marker environment of the inspected Python on this host.

    The Python's version and implementation come from the snapshot (another venv's
    when ``modules.paths`` lie in one); the platform values from the host's ``uname``,
    which a sidecar shares with the container it inspects. ``implementation_version`` is
    the Python version (exact for CPython; PyPy's own version is not known here).
    """
    system = platform.system
    sys_platform = _SYS_PLATFORM.get(system) or (
        "cygwin" if system.startswith("CYGWIN") else system.lower()
    )
    return {
        "implementation_name": python.implementation.lower(),
        "implementation_version": python.version,
        "os_name": "nt" if system == "Windows" else "posix",
        "platform_machine": platform.machine,
        "platform_python_implementation": python.implementation,
        "platform_release": platform.release,
        "platform_system": system,
        "platform_version": platform.version,
        "python_full_version": python.version,
        "python_version": f"{python.major}.{python.minor}",
        "sys_platform": sys_platform,
        "extra": "",
    }


def requirements_of(block: bytes) -> tuple[tuple[str, str], ...]:
    """(canonical name, marker) of each requirement of a ``PackageInfo.requires_block``;
    the marker is "" when there is none. Parsed once per distinct block."""
    found = _parsed.get(block)
    if found is None:
        if len(_parsed) >= _MAX_PARSED:
            _parsed.clear()
        parsed = (_parse(line) for line in requirement_lines(block))
        found = _parsed[block] = tuple(p for p in parsed if p is not None)
    return found


def dependency_graph(
    requires: Mapping[str, bytes], environment: Mapping[str, str]
) -> dict[str, list[str]]:
    """Canonical name -> the canonical names it requires, for every name of ``requires``.

    ``requires`` maps each published distribution (by canonical name) to its
    ``PackageInfo.requires_block``; a requirement on a name outside it is left out.
    Requirements are listed once each, in the order first written.
    """
    key = tuple(sorted(environment.items()))
    cache = _applicable.get(key)
    if cache is None or len(cache[1]) >= _MAX_PARSED:
        if len(_applicable) >= _MAX_ENVIRONMENTS:
            _applicable.clear()
        cache = _applicable[key] = ({}, {})
    markers, applicable = cache
    graph: dict[str, list[str]] = {}
    for name, block in requires.items():
        names = applicable.get(block)
        if names is None:
            names = applicable[block] = _applicable_names(block, markers, environment)
        graph[name] = [r for r in names if r in requires and r != name]
    return graph


def _applicable_names(
    block: bytes, markers: dict[str, bool], environment: Mapping[str, str]
) -> tuple[str, ...]:
    """The names ``block`` requires in ``environment``, once each in the order written;
    ``markers`` caches whether each marker holds there."""
    found: dict[str, None] = {}
    for required, marker in requirements_of(block):
        if required in found:
            continue
        if marker:
            applies = markers.get(marker)
            if applies is None:
                applies = markers[marker] = _applies(marker, environment)
            if not applies:
                continue
        found[required] = None
    return tuple(found)


def _parse(line: str) -> tuple[str, str] | None:
    """The canonical name and the marker ("" when none) of a PEP 508 requirement; None
    when it names nothing.

    A URL requirement (``name @ url ; marker``) is parsed whole, since a URL may hold
    a ``;``; any other has its marker after the first ``;``.
    """
    match = _NAME.match(line)
    if match is None:
        return None
    name = canonical_name(match.group(1))
    semicolon = line.find(";")
    at = line.find("@", match.end())
    if at >= 0 and (semicolon < 0 or at < semicolon):
        from packaging.requirements import InvalidRequirement, Requirement

        try:
            parsed = Requirement(line)
        except InvalidRequirement:
            return name, line.rpartition(";")[2].strip() if semicolon >= 0 else ""
        return name, str(parsed.marker) if parsed.marker is not None else ""
    return name, line[semicolon + 1 :].strip() if semicolon >= 0 else ""


def _applies(marker: str, environment: Mapping[str, str]) -> bool:
    """Whether ``marker`` holds in ``environment`` for the base install or for any extra it
    names; True when it cannot be parsed or evaluated."""
    from packaging.markers import (
        InvalidMarker,
        Marker,
        UndefinedComparison,
        UndefinedEnvironmentName,
    )

    try:
        parsed = Marker(marker)
    except InvalidMarker:
        return True
    extras = [""]
    if "extra" in marker:
        extras += [a or b for a, b in _QUOTED.findall(marker)]
    try:
        return any(parsed.evaluate({**environment, "extra": extra}) for extra in extras)
    except (UndefinedComparison, UndefinedEnvironmentName, ValueError, TypeError):
        return True


def roots(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """The names no other name requires, then one name of each cycle not reachable from
    them: every name of ``graph`` is reachable from the result."""
    required: set[str] = set()
    for deps in graph.values():
        required.update(deps)
    top = [name for name in graph if name not in required]
    seen: set[str] = set()
    cycles = []
    for index, start in enumerate([*top, *graph]):
        if start in seen:
            continue
        if index >= len(top):
            cycles.append(start)  # in a cycle that nothing outside it requires
        stack = [start]
        while stack:
            name = stack.pop()
            if name not in seen:
                seen.add(name)
                stack.extend(graph.get(name, ()))
    return top + cycles
