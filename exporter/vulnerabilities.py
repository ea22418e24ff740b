"""Which published modules have known vulnerabilities: a pure function of modules and database.

An advisory published twice under different ids (a ``PYSEC-*`` and a
``GHSA-*`` that name each other, or share a CVE) is one finding: its ids and
aliases are merged, one id is chosen (PYSEC, then GHSA, then MAL, then any),
and the severity is the highest any of them gives.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from exporter.collectors.advisories import AdvisoryDatabase, Entry
from exporter.collectors.installed import canonical_name

if TYPE_CHECKING:  # osv loads packaging and compiles its patterns: only a database needs it
    from exporter.collectors.osv import Advisory, Cvss, InstalledVersion

SEVERITIES = ("critical", "high", "medium", "low", "unknown")

_ID_PREFERENCE = ("PYSEC-", "GHSA-", "MAL-")


@dataclass(frozen=True, slots=True)
class Finding:
    """One vulnerability of one installed module."""

    module: str
    version: str
    id: str
    aliases: tuple[str, ...]
    severity: str
    fixed: str  # the lowest fixed version above the installed one; "" when none is known
    summary: str
    url: str
    cvss: Cvss | None

    def as_dict(self) -> dict[str, object]:
        """The JSON form of the finding (``fixed`` and ``url`` null when unknown)."""
        return {
            "module": self.module,
            "version": self.version,
            "id": self.id,
            "aliases": list(self.aliases),
            "severity": self.severity,
            "fixed": self.fixed or None,
            "summary": self.summary,
            "url": self.url or None,
        }


def match_vulnerabilities(
    modules: Mapping[str, str], database: AdvisoryDatabase, ignore: Collection[str] = ()
) -> tuple[Finding, ...]:
    """Every (module, vulnerability) pair, sorted by module, severity and id.

    A vulnerability any of whose ids or aliases is in ``ignore`` is left out.
    """
    from exporter.collectors.osv import InstalledVersion

    ignored = frozenset(ignore)
    findings: list[Finding] = []
    for module, version in modules.items():
        entries = database.by_package.get(canonical_name(module))
        if not entries:
            continue
        installed = InstalledVersion.of(version)
        hits = [
            (advisory, affected) for advisory, affected in entries if affected.contains(installed)
        ]
        for group in _merge_aliases(hits):
            names = {name for advisory, _ in group for name in (advisory.id, *advisory.aliases)}
            if names & ignored:
                continue
            findings.append(_finding(module, installed, group, names))
    findings.sort(key=lambda f: (f.module, SEVERITIES.index(f.severity), f.id))
    return tuple(findings)


def count_by_severity(findings: Iterable[Finding]) -> dict[str, int]:
    """Findings per severity, every severity present (0 when none)."""
    counts = dict.fromkeys(SEVERITIES, 0)
    for finding in findings:
        counts[finding.severity] += 1
    return counts


def _merge_aliases(hits: list[Entry]) -> list[list[Entry]]:
    """Group the hits whose ids and aliases overlap (transitively)."""
    groups: list[tuple[set[str], list[Entry]]] = []
    for hit in hits:
        names = {hit[0].id, *hit[0].aliases}
        joined = [g for g in groups if g[0] & names]
        for g in joined:
            groups.remove(g)
            names |= g[0]
        groups.append((names, [h for g in joined for h in g[1]] + [hit]))
    return [entries for _, entries in groups]


def _finding(
    module: str, installed: InstalledVersion, group: list[Entry], names: set[str]
) -> Finding:
    advisories = list({advisory.id: advisory for advisory, _ in group}.values())
    chosen = min(advisories, key=_preference)
    fixes = [
        fix
        for _, affected in group
        for fix in affected.fixes()
        if installed.parsed is not None and fix > installed.parsed
    ]
    scored = [a.cvss for a in advisories if a.cvss is not None]
    return Finding(
        module=module,
        version=installed.raw,
        id=chosen.id,
        aliases=tuple(sorted(names - {chosen.id})),
        severity=min((a.severity for a in advisories), key=SEVERITIES.index),
        fixed=str(min(fixes)) if fixes else "",
        summary=_first(chosen.summary, (a.summary for a in advisories)),
        url=_first(chosen.url, (a.url for a in advisories)),
        cvss=max(scored, key=lambda c: c.score) if scored else None,
    )


def _preference(advisory: Advisory) -> tuple[int, str]:
    for rank, prefix in enumerate(_ID_PREFERENCE):
        if advisory.id.startswith(prefix):
            return rank, advisory.id
    return len(_ID_PREFERENCE), advisory.id


def _first(preferred: str, others: Iterable[str]) -> str:
    return preferred or next((o for o in others if o), "")
