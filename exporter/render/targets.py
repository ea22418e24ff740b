"""The JSON about a host's targets: ``/api/v1/targets`` and the module index the landing
page searches ("where does module X run, and at which version?")."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from exporter.advisories.matching import count_by_severity
from exporter.host import Host, Target


def target_urls(name: str) -> dict[str, str]:
    """Where a target's documents are served (names are URL-safe by the config's rule;
    quoted all the same)."""
    base = f"/api/v1/targets/{quote(name, safe='')}"
    return {
        "status_url": f"{base}/status/",
        "page_url": f"{base}/status/?format=html",
        "sbom_url": f"{base}/sbom",
    }


def target_summary(target: Target) -> dict[str, Any]:
    """One entry of ``/api/v1/targets``: what it is, its Python, commit, modules and findings."""
    s = target.snapshot
    findings = s.vulnerabilities if s is not None else None  # counts stay under redaction
    return {
        "name": target.name,
        "kind": target.spec.kind,
        "paths": list(target.spec.paths),
        "python_version": s.python.version if s is not None else None,
        "commit": s.commit.value if s is not None else None,
        "app_version": s.app_version if s is not None else None,
        "module_count": len(s.modules) if s is not None else None,
        "vulnerabilities": count_by_severity(findings) if findings is not None else None,
        "errors": target.errors,
        "error": target.last_error,
        "labels": dict(target.spec.labels),
        "processes": s.process.processes if s is not None and s.process is not None else None,
        "restart_required": (
            s.process.restart_required if s is not None and s.process is not None else None
        ),
        **target_urls(target.name),
    }


def render_targets_index(host: Host) -> bytes:
    """``{"targets": [...]}``: configured ones in configured order, then discovered ones."""
    return json.dumps(
        {"targets": [target_summary(t) for t in host.targets]}, separators=(",", ":")
    ).encode()


class ModuleIndex:
    """``{"modules": {name: [{"target", "version"}, ...]}}`` over every target's published
    modules, names sorted: what the landing page's search reads. Rebuilt only when some
    target's modules are not the very mapping they were (15,000 entries cost 50 ms)."""

    __slots__ = ("_sources", "body")

    def __init__(self, host: Host, previous: ModuleIndex | None = None) -> None:
        sources = tuple(
            (t.name, t.snapshot.published_modules("json"))
            for t in host.targets
            if t.snapshot is not None
        )
        self._sources = sources
        if previous is not None and _same(previous._sources, sources):
            self.body: bytes = previous.body
            return
        index: dict[str, list[dict[str, str]]] = {}
        for name, modules in sources:
            for module, version in modules.items():
                index.setdefault(module, []).append({"target": name, "version": version})
        self.body = json.dumps(
            {"modules": dict(sorted(index.items()))}, separators=(",", ":")
        ).encode()


def _same(
    old: tuple[tuple[str, Mapping[str, str]], ...], new: tuple[tuple[str, Mapping[str, str]], ...]
) -> bool:
    return len(old) == len(new) and all(
        a[0] == b[0] and a[1] is b[1] for a, b in zip(old, new, strict=True)
    )
