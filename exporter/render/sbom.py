"""The live software bill of materials: a CycloneDX 1.6 JSON document of one snapshot.

Plain dicts and ``json.dumps``; cyclonedx-python-lib is never imported here
(it costs most of a second to import). The document is built again only when
the snapshot's facts change (``Snapshot.facts``: the components, the vulnerabilities,
the metadata). Each such change is a revised BOM, so ``version`` grows by one and
``timestamp`` is the time of the refresh that saw the change; otherwise the
previous bytes are served as they are.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterable
from gzip import compress as gzip_compress
from typing import Any

from exporter.collectors.packages import PackageInfo
from exporter.snapshot import Snapshot
from exporter.vulnerabilities import Finding

CONTENT_TYPE = "application/vnd.cyclonedx+json; version=1.6"
SPEC_VERSION = "1.6"
_OSV_URL = "https://osv.dev/vulnerability/"
_PURL_SAFE = re.compile(r"[^A-Za-z0-9.\-_~]")
# Classifiers that name exactly one SPDX licence; any other is given by name.
_CLASSIFIER_SPDX = {
    "MIT License": "MIT",
    "ISC License (ISCL)": "ISC",
    "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "The Unlicense (Unlicense)": "Unlicense",
    "Python Software Foundation License": "PSF-2.0",
    "Boost Software License 1.0 (BSL-1.0)": "BSL-1.0",
    "zlib/libpng License": "Zlib",
}


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
        self.content = None if self.withheld else snapshot.facts()
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
    if s.vulnerabilities is not None:
        refs = {module: c["bom-ref"] for module, c in libraries.items()}
        document["vulnerabilities"] = _vulnerabilities(s.vulnerabilities, refs)
    return document


def _application(s: Snapshot) -> dict[str, Any]:
    name = s.app_distribution or "application"
    component: dict[str, Any] = {
        "type": "application",
        "bom-ref": "application",
        "name": name,
        "version": s.app_version,
        "properties": [{"name": "status-exporter:commit", "value": s.commit.value}],
    }
    if s.app_distribution and s.app_version != "unknown":
        component["purl"] = purl(s.app_distribution, s.app_version)
    return component


def _interpreter(s: Snapshot) -> dict[str, Any]:
    python = s.python
    component: dict[str, Any] = {
        "type": "platform",
        "bom-ref": "python-interpreter",
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
    """License-Expression as an SPDX expression; else the License field or the classifiers."""
    if info.license_expression:
        return [{"expression": info.license_expression}]
    if info.license:
        return [{"license": {"name": info.license}}]
    found = []
    for classifier in dict.fromkeys(info.license_classifiers):
        spdx = _CLASSIFIER_SPDX.get(classifier)
        found.append({"license": {"id": spdx} if spdx else {"name": classifier}})
    return found


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
