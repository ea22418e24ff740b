"""The JSON about a host's targets: ``/api/v1/targets`` and the module index the landing
page searches ("where does module X run, and at which version?")."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from exporter.host import Host, Target
from exporter.vulnerabilities import count_by_severity


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
        **target_urls(target.name),
    }


def render_targets_index(host: Host) -> bytes:
    """``{"targets": [...]}``, in configured order."""
    return json.dumps(
        {"targets": [target_summary(t) for t in host.targets]}, separators=(",", ":")
    ).encode()


def render_module_index(host: Host) -> bytes:
    """``{"modules": {name: [{"target", "version"}, ...]}}`` over every target's published
    modules, names sorted: what the landing page's search reads."""
    index: dict[str, list[dict[str, str]]] = {}
    for target in host.targets:
        if target.snapshot is None:
            continue
        for module, version in target.snapshot.published_modules("json").items():
            index.setdefault(module, []).append({"target": target.name, "version": version})
    return json.dumps({"modules": dict(sorted(index.items()))}, separators=(",", ":")).encode()
