"""Which modules get a ``module_info`` series (``modules.publish``), and a module set's
fingerprint for ``target_modules_info``.

Pure functions of a snapshot: no prometheus_client, no I/O. The renderers keep what these
return with the modules mapping it was made from, and reuse it while that mapping is the
very same object (an unchanged environment keeps its mapping from refresh to refresh).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from exporter.config import ModulePublish
from exporter.host import Target
from exporter.snapshot import EMPTY, REDACTED, Snapshot

FINGERPRINT_DIGITS = 16

# A fingerprint kept with the modules mapping it was computed from, by environment name
# ("" for the exporter's own).
Fingerprints = dict[str, tuple[Mapping[str, str], str]]


def module_fingerprint(modules: Mapping[str, str]) -> str:
    """The first 16 hex digits of the SHA-256 of the ``name==version`` lines of ``modules``,
    each ending in a newline, sorted by code point, in UTF-8.

    The same as ``printf '%s==%s\\n' ... | LC_ALL=C sort | sha256sum | cut -c1-16``: equal
    module sets give equal fingerprints on any host, in any process, after any restart.
    """
    lines = sorted(f"{name}=={version}\n" for name, version in modules.items())
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()[:FINGERPRINT_DIGITS]


def fingerprints(named: Iterable[tuple[str, Snapshot]], previous: Fingerprints) -> Fingerprints:
    """The fingerprint of each named snapshot's modules, reusing ``previous``'s while the
    modules are the same mapping; ``<redacted>`` where the modules are hidden from metrics
    (a hash of the set would confirm a guess of it)."""
    found: Fingerprints = {}
    for name, snapshot in named:
        modules = snapshot.modules
        if snapshot.redaction.modules_hidden_from("metrics"):
            found[name] = (modules, REDACTED)
            continue
        cached = previous.get(name)
        if cached is not None and cached[0] is modules and cached[1] != REDACTED:
            found[name] = cached
        else:
            found[name] = (modules, module_fingerprint(modules))
    return found


def publish_mode(target: Target, snapshot: Snapshot) -> ModulePublish:
    """The ``modules.publish`` in force for ``target``: its own setting, else the host's."""
    return target.spec.publish or snapshot.module_publish


def info_modules(snapshot: Snapshot, mode: ModulePublish) -> Mapping[str, str]:
    """The modules that get a ``module_info`` series under ``mode``, in the snapshot's order;
    none when the modules are redacted from metrics."""
    modules = snapshot.published_modules("metrics")
    if mode == "all" or not modules:
        return modules
    vulnerable = _vulnerable_names(snapshot, mode)
    if not vulnerable:
        return EMPTY
    return MappingProxyType({n: v for n, v in modules.items() if n in vulnerable})


def info_count(snapshot: Snapshot, mode: ModulePublish, *, redacted: bool = True) -> int:
    """How many modules ``info_modules`` gives, without building the mapping; with
    ``redacted=False``, how many it would give if the modules were not redacted (a count
    stays published when the list is redacted)."""
    modules = snapshot.published_modules("metrics") if redacted else snapshot.modules
    if mode == "all" or not modules:
        return len(modules)
    return sum(1 for name in _vulnerable_names(snapshot, mode) if name in modules)


def _vulnerable_names(snapshot: Snapshot, mode: ModulePublish) -> frozenset[str]:
    """The modules with findings under ``vulnerable``; none under ``none``."""
    if mode != "vulnerable" or snapshot.vulnerabilities is None:
        # No advisory database configured, or none loaded yet: nothing was checked, so no
        # module is known to be vulnerable and none is published. That is no claim that
        # they are clean (not checked is not clean): while a configured database has not
        # loaded, status_exporter_advisories_loaded is 0 and the findings are absent.
        return frozenset()
    return frozenset(f.module for f in snapshot.vulnerabilities)
