"""The live software bill of materials: a CycloneDX 1.6 JSON document of one snapshot.

Plain dicts and ``json.dumps``; cyclonedx-python-lib is never imported here
(it costs most of a second to import). The document is built again only when
the snapshot's facts change (``Snapshot.facts``: the components, the vulnerabilities,
the metadata). Each such change is a revised BOM, so ``version`` grows by one and
``timestamp`` is the time of the refresh that saw the change; otherwise the
previous bytes are served as they are.

Licences are SPDX ids or expressions where the metadata gives valid SPDX
(``exporter.render.spdx``); ``dependencies`` is the graph of ``Requires-Dist`` between
the components (``exporter.render.dependencies``), for the ``installed`` source only.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import sys
from collections.abc import Iterable
from gzip import compress as gzip_compress
from typing import Any

from exporter.advisories.matching import Finding
from exporter.collectors.packages import PackageInfo
from exporter.render.dependencies import dependency_graph, marker_environment, roots
from exporter.render.spdx import classifier_license, license_choice
from exporter.snapshot import UNKNOWN_VERSION, Snapshot

CONTENT_TYPE = "application/vnd.cyclonedx+json; version=1.6"
SPEC_VERSION = "1.6"
_OSV_URL = "https://osv.dev/vulnerability/"
_PURL_SAFE = re.compile(r"[^A-Za-z0-9.\-_~]")
APPLICATION_REF = "application"
INTERPRETER_REF = "python-interpreter"
_SITE_DIRECTORIES = ("site-packages", "dist-packages")


def purl(name: str, version: str) -> str:
    """``pkg:pypi/<name>@<version>`` as the purl spec writes PyPI names.

    Lower case with ``_`` as ``-``, dots kept (``zope.interface``), and
    percent-encoding (``1.0%2Blocal``): what cyclonedx-py and the purl
    libraries write, so that scanners match our components with theirs.
    """
    return f"pkg:pypi/{_encode(name.lower().replace('_', '-'))}@{_encode(version)}"


def _encode(text: str) -> str:
    return _PURL_SAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), text)


class SbomDocument:
    """The SBOM of a snapshot, plain and gzip; reused whole while its content holds."""

    __slots__ = ("body", "content", "gzip", "version", "withheld")
    body: bytes
    gzip: bytes
    version: int
    withheld: bool
    content: tuple[Any, ...] | None

    def __init__(self, snapshot: Snapshot, previous: SbomDocument | None = None) -> None:
        self.withheld = snapshot.redaction.modules_hidden_from("json")
        self.content = None if self.withheld else snapshot.environment_facts()
        if previous is not None and previous.content == self.content:
            self.version, self.body, self.gzip = previous.version, previous.body, previous.gzip
            return
        self.version = (previous.version + 1) if previous is not None else 1
        if self.content is None:
            self.body = self.gzip = b""
            return
        document = _document(snapshot, self.version)
        self.body = json.dumps(document, separators=(",", ":")).encode()
        self.gzip = gzip_compress(self.body, compresslevel=1, mtime=0)  # rare downloads: speed


def _document(s: Snapshot, version: int) -> dict[str, Any]:
    libraries = dict(_components(s))
    components = [_interpreter(s), *libraries.values()]
    document: dict[str, Any] = {
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": f"urn:uuid:{s.identity.server_id}",
        "version": version,
        "metadata": {
            "timestamp": _rfc3339(s.taken_at),
            "tools": {
                "components": [
                    {
                        "type": "application",
                        "name": "status-exporter",
                        "version": s.identity.exporter_version,
                    }
                ]
            },
            "component": _application(s),
            "properties": [
                {"name": "status-exporter:host", "value": s.published_platform.node},
                *(
                    {"name": f"status-exporter:platform:{key}", "value": value}
                    for key, value in s.published_platform.as_dict().items()
                    if key != "node" and value
                ),
                {"name": "status-exporter:modules:source", "value": s.module_source},
            ],
        },
        "components": components,
    }
    if s.module_source == "installed":
        document["dependencies"] = _dependencies(s, libraries)
    if s.vulnerabilities is not None:
        refs = {module: c["bom-ref"] for module, c in libraries.items()}
        document["vulnerabilities"] = _vulnerabilities(s.vulnerabilities, refs)
    return document


def _application(s: Snapshot) -> dict[str, Any]:
    """The application: ``app.distribution`` (with its purl) when configured; else the
    inspected Python environment, named ``python-environment:<its directory>``.

    The directory (``environment_location``) is what stays the same across restarts,
    refreshes and the replicas of one deployment, where a host name would not, and it
    tells two applications on one host apart. ``version`` is ``app.version`` or the
    distribution's installed version, left out when neither is known.
    """
    location = environment_location(s)
    component: dict[str, Any] = {
        "type": "application",
        "bom-ref": APPLICATION_REF,
        "name": s.app_distribution or f"python-environment:{location}",
    }
    if s.app_version != UNKNOWN_VERSION:
        component["version"] = s.app_version
    if not s.app_distribution:
        python = s.python
        component["description"] = (
            f"The {python.implementation} {python.version} environment at {location}"
        )
    elif s.app_version != UNKNOWN_VERSION:
        component["purl"] = purl(s.app_distribution, s.app_version)
    component["properties"] = [{"name": "status-exporter:commit", "value": s.commit.value}]
    return component


def environment_location(s: Snapshot) -> str:
    """The directory of the inspected environment: the prefix of the first scanned
    ``site-packages`` (or Debian's ``dist-packages``) directory, ``/srv/app/.venv`` for
    ``/srv/app/.venv/lib/python3.11/site-packages``; else the first directory scanned;
    else (``loaded``, or nothing scanned) this interpreter's ``sys.prefix``."""
    scanned = [d.path for d in s.installed_scan.directories] if s.installed_scan else []
    for path in scanned:
        if os.path.basename(path) in _SITE_DIRECTORIES:
            parent = os.path.dirname(path)  # pythonX.Y, python3, or Lib on Windows
            if os.path.basename(parent).lower().startswith("python"):
                parent = os.path.dirname(parent)  # lib, lib64
            if os.path.basename(parent).lower() in ("lib", "lib64"):
                return os.path.dirname(parent)
            return path
    return scanned[0] if scanned else sys.prefix


def _interpreter(s: Snapshot) -> dict[str, Any]:
    python = s.python
    component: dict[str, Any] = {
        "type": "platform",
        "bom-ref": INTERPRETER_REF,
        "name": python.implementation,
        "version": python.version,
        "description": python.version_string,
    }
    if python.implementation == "CPython":
        # The CPE vulnerability databases (NVD) file CPython's own advisories under.
        component["cpe"] = f"cpe:2.3:a:python:python:{python.version}:*:*:*:*:*:*:*"
    return component


def _components(s: Snapshot) -> Iterable[tuple[str, dict[str, Any]]]:
    """(module, component) for each published module."""
    for name, version in s.modules.items():
        info = s.packages.get(name)
        component: dict[str, Any] = {"type": "library", "name": name, "version": version}
        if s.module_source == "installed":
            component["name"] = info.name if info and info.name else name
            component["purl"] = purl(component["name"], version)
        elif info is not None:
            component["purl"] = purl(info.name, version)
        component["bom-ref"] = component.get("purl") or f"module:{name}@{version}"
        licenses = _licenses(info) if info else []
        if licenses:
            component["licenses"] = licenses
        yield name, component


def _licenses(info: PackageInfo) -> list[dict[str, Any]]:
    """License-Expression; else the License field; else the classifiers. Each an SPDX id
    or expression when it is valid SPDX (in the list's spelling), else a name."""
    if info.license_expression:
        return [license_choice(info.license_expression)]
    if info.license:
        return [license_choice(info.license)]
    found = [classifier_license(c) for c in dict.fromkeys(info.license_classifiers)]
    return list({tuple(c["license"].items()): c for c in found}.values())  # each id once


def _dependencies(s: Snapshot, libraries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per component, as cyclonedx-py writes them: ``ref``, and ``dependsOn``
    (the bom-refs of the installed requirements) when there are any.

    The application depends on the interpreter and on the distributions nothing else
    requires (what the environment was installed for; one of each cycle besides), so
    that every component is reachable from ``metadata.component``.
    """
    requires = {
        module: info.requires_block if (info := s.packages.get(module)) else b""
        for module in libraries
    }
    graph = dependency_graph(requires, marker_environment(s.python, s.platform))
    refs = {module: component["bom-ref"] for module, component in libraries.items()}
    top = [INTERPRETER_REF, *(refs[module] for module in roots(graph))]
    entries: list[dict[str, Any]] = [
        {"ref": APPLICATION_REF, "dependsOn": top},
        {"ref": INTERPRETER_REF},
    ]
    entries.extend(
        {"ref": refs[module], "dependsOn": [refs[r] for r in required]}
        if required
        else {"ref": refs[module]}
        for module, required in graph.items()
    )
    return entries


def _vulnerabilities(findings: tuple[Finding, ...], refs: dict[str, str]) -> list[dict[str, Any]]:
    """One entry per vulnerability id, affecting every component that has it."""
    by_id: dict[str, list[Finding]] = {}
    for finding in findings:
        by_id.setdefault(finding.id, []).append(finding)
    entries = []
    for ident, group in by_id.items():
        first = group[0]
        rating: dict[str, Any] = {"severity": first.severity}
        if first.cvss is not None:
            rating |= {
                "method": first.cvss.method,
                "score": first.cvss.score,
                "vector": first.cvss.vector,
            }
        entry: dict[str, Any] = {
            "bom-ref": f"vulnerability:{ident}",
            "id": ident,
            "source": {"name": "OSV", "url": _OSV_URL + ident},
            "references": [
                {"id": alias, "source": {"name": "OSV", "url": _OSV_URL + alias}}
                for alias in first.aliases
            ],
            "ratings": [rating],
            "description": first.summary,
            "affects": [
                {
                    "ref": refs[f.module],
                    "versions": [{"version": f.version, "status": "affected"}],
                }
                for f in group
                if f.module in refs
            ],
        }
        fixes = sorted({f"{f.module} {f.fixed}" for f in group if f.fixed})
        entry["recommendation"] = (
            "Upgrade to " + ", ".join(fixes) + " or later."
            if fixes
            else "No fixed version is known: remove the package or accept the risk."
        )
        if first.url:
            entry["advisories"] = [{"url": first.url}]
        if not entry["references"]:
            del entry["references"]
        entries.append(entry)
    return entries


def _rfc3339(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
