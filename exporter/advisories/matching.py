"""Which published modules have known vulnerabilities: a pure function of modules and database.

An advisory published twice under different ids (a ``PYSEC-*`` and a
``GHSA-*`` that name each other, or share a CVE) is one finding: its ids and
aliases are merged, one id is chosen (PYSEC, then GHSA, then MAL, then any),
and the severity is the highest any of them gives.

Each finding also carries ``module_fixed``: the lowest version of its module
that none of the module's findings affect, the one version to upgrade to.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from exporter.advisories.database import AdvisoryDatabase, Entry
from exporter.collectors.installed import canonical_name

if TYPE_CHECKING:  # osv loads packaging and compiles its patterns: only a database needs it
    from exporter.advisories.osv import Advisory, Cvss, InstalledVersion

SEVERITIES = ("critical", "high", "medium", "low", "unknown")

_ID_PREFERENCE = ("PYSEC-", "GHSA-", "MAL-")
_DIGITS = re.compile(r"(\d+)")


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
    # The lowest version that fixes every finding of this module; "" when none is known.
    module_fixed: str = ""

    def as_dict(self) -> dict[str, object]:
        """The JSON form of the finding (``fixed`` and ``url`` null when unknown)."""
        return {
            "module": self.module,
            "version": self.version,
            "id": self.id,
            "aliases": list(self.aliases),
            "severity": self.severity,
            "fixed": self.fixed or None,
            "module_fixed": self.module_fixed or None,
            "summary": self.summary,
            "url": self.url or None,
        }


def match_vulnerabilities(
    modules: Mapping[str, str], database: AdvisoryDatabase, ignore: Collection[str] = ()
) -> tuple[Finding, ...]:
    """Every (module, vulnerability) pair, sorted by module, severity and id (numerically:
    ``PYSEC-2021-7`` before ``PYSEC-2021-109``).

    A vulnerability any of whose ids or aliases is in ``ignore`` is left out.
    """
    from exporter.advisories.osv import InstalledVersion

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
        kept: list[Entry] = []
        found: list[Finding] = []
        for group in _merge_aliases(hits):
            names = {name for advisory, _ in group for name in (advisory.id, *advisory.aliases)}
            if names & ignored:
                continue
            kept.extend(group)
            found.append(_finding(module, installed, group, names))
        if found:
            fixed = lowest_common_fix(installed, kept)
            findings.extend(replace(f, module_fixed=fixed) for f in found)
    findings.sort(key=finding_order)
    return tuple(findings)


def finding_order(finding: Finding) -> tuple[object, ...]:
    """Sort key: module, then severity (worst first), then id with its numbers compared as
    numbers."""
    return (finding.module, SEVERITIES.index(finding.severity), natural_key(finding.id))


def natural_key(text: str) -> tuple[tuple[int, str], ...]:
    """``text`` split into runs, numbers compared by value: ``X-7`` sorts before ``X-109``."""
    return tuple(
        (1, f"{int(part):020d}") if part.isdigit() else (0, part)
        for part in _DIGITS.split(text)
        if part
    )


def lowest_common_fix(installed: InstalledVersion, entries: Sequence[Entry]) -> str:
    """The lowest fixed version above ``installed`` that no entry affects; "" when none is.

    Each advisory names its own fix, often per release line (Django's 27 findings of
    3.2.0 are fixed in 3.2.1 to 3.2.25): the candidates are every fix that any of them
    names, tried from the lowest up against every range and explicit version list.
    """
    from exporter.advisories.osv import InstalledVersion

    if installed.parsed is None:
        return ""
    candidates = sorted(
        {fix for _, affected in entries for fix in affected.fixes() if fix > installed.parsed}
    )
    for candidate in candidates:
        version = InstalledVersion.of(str(candidate))
        if not any(affected.contains(version) for _, affected in entries):
            return str(candidate)
    return ""


@dataclass(frozen=True, slots=True)
class VulnerableModule:
    """One module with findings: what a person upgrades, and to which version."""

    module: str
    version: str
    fixed: str  # the lowest version that fixes every finding; "" when none is known
    severity: str  # the worst finding's
    findings: tuple[Finding, ...]

    def as_dict(self) -> dict[str, object]:
        """The JSON form (``fixed`` null when unknown; the findings by id)."""
        return {
            "module": self.module,
            "version": self.version,
            "fixed": self.fixed or None,
            "severity": self.severity,
            "findings": [f.id for f in self.findings],
        }


def vulnerable_modules(findings: Iterable[Finding]) -> list[VulnerableModule]:
    """The findings grouped by module, in the order given (matching sorts them by module)."""
    groups: dict[str, list[Finding]] = {}
    for finding in findings:
        groups.setdefault(finding.module, []).append(finding)
    return [
        VulnerableModule(
            module=module,
            version=group[0].version,
            fixed=group[0].module_fixed,
            severity=min((f.severity for f in group), key=SEVERITIES.index),
            findings=tuple(group),
        )
        for module, group in groups.items()
    ]


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
