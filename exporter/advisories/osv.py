"""One OSV record, reduced to what matching and output need, for the ``PyPI`` ecosystem.

The parsed document is dropped once read: an :class:`Advisory` keeps its ids,
one summary line, one reference and the severity; per PEP 503 package name an
:class:`Affected` keeps the ``ECOSYSTEM`` ranges as one string (each event
checked to be a PEP 440 version; parsed and sorted the first time a match
needs them) and the explicit ``versions`` list as one newline-joined string,
probed with the few spellings an installed version can have. Twenty thousand
records then cost tens of megabytes and no version parsing at load, where
parsed versions would cost seconds and several times the memory.
"""

from __future__ import annotations

import datetime
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from packaging.version import InvalidVersion, Version

from exporter.collectors.installed import canonical_name

MAX_SUMMARY_LENGTH = 200
_GITHUB_SEVERITY = {"CRITICAL": "critical", "HIGH": "high", "MODERATE": "medium", "LOW": "low"}
_EVENT_KINDS = ("introduced", "fixed", "last_affected", "limit")
_REFERENCE_PREFERENCE = ("ADVISORY", "WEB", "REPORT", "FIX", "ARTICLE", "PACKAGE")
_NUMBER = r"(?:0|[1-9][0-9]*)"
# A version written as packaging's str(Version(...)) writes it; anything else is
# looked up by its canonical form instead (rare: ~0.7% of the PyPA database's entries).
_NORMAL_VERSION = (
    rf"(?:[1-9][0-9]*!)?{_NUMBER}(?:\.{_NUMBER})*(?:(?:a|b|rc){_NUMBER})?"
    rf"(?:\.post{_NUMBER})?(?:\.dev{_NUMBER})?"
    rf"(?:\+(?:[a-z0-9]*[a-z][a-z0-9]*|{_NUMBER})(?:\.(?:[a-z0-9]*[a-z][a-z0-9]*|{_NUMBER}))*)?"
)
_NORMAL = re.compile(_NORMAL_VERSION)
_IRREGULAR = re.compile(rf"^(?!(?:{_NORMAL_VERSION})$)[^\n]+$", re.MULTILINE)
_LOWEST = Version("0.dev0")  # no PEP 440 version sorts below it: where introduced "0" sorts
_KINDS = {"i": "introduced", "f": "fixed", "l": "last_affected", "m": "limit"}


class RecordError(ValueError):
    """A record that cannot be used: the reason says which field is wrong."""


@dataclass(frozen=True, slots=True)
class Cvss:
    """A CVSS vector and the base score it gives."""

    method: str  # CycloneDX's names: CVSSv3, CVSSv31, CVSSv4
    score: float
    vector: str


@dataclass(frozen=True, slots=True)
class Range:
    """One ``ECOSYSTEM`` range: its events sorted by PEP 440, and its limits."""

    events: tuple[tuple[str, Version | None], ...]  # None stands for introduced "0"
    limits: tuple[Version, ...]

    @classmethod
    def parse(cls, encoded: str) -> Range:
        """Parse a range as ``_events`` encoded it (validated on load) and sort its events."""
        parsed: list[tuple[str, Version | None]] = []
        limits: list[Version] = []
        for event in encoded.split(","):
            kind, text = _KINDS[event[0]], event[1:]
            if kind == "limit":
                limits.append(Version(text))
            else:
                parsed.append(
                    (kind, None if (kind == "introduced" and text == "0") else Version(text))
                )
        # Stable sort: "0" first, then PEP 440 order, ties in the order written.
        parsed.sort(key=lambda e: _LOWEST if e[1] is None else e[1])
        return cls(tuple(parsed), tuple(limits))

    def contains(self, version: Version) -> bool:
        """The OSV evaluation of one range (``IncludedInRanges`` for this range)."""
        if self.limits and not any(version < limit for limit in self.limits):
            return False
        affected = False
        for kind, at in self.events:
            if kind == "introduced":
                if at is None or version >= at:
                    affected = True
            elif at is not None and (
                (kind == "fixed" and version >= at) or (kind == "last_affected" and version > at)
            ):
                affected = False
        return affected

    def fixes(self) -> tuple[Version, ...]:
        """The versions this range names as fixed."""
        return tuple(at for kind, at in self.events if kind == "fixed" and at is not None)


class Affected:
    """What one advisory says of one package.

    Kept as written when loaded (a database holds tens of thousands of these,
    and most never meet an installed version); the events are parsed, and the
    explicit list's unnormalised entries found, the first time one is matched.
    """

    __slots__ = ("_canonical", "_events", "_ranges", "versions")

    def __init__(self, events: str, versions: str) -> None:
        # "i0,f1.2|i3.0,l3.1": ranges split by "|", events by ",", each a kind letter and
        # a version (a PEP 440 version holds neither character): one string, not 20 objects.
        self._events = events
        self.versions = versions  # "\n1.0\n1.1\n": the explicit list as written
        self._ranges: tuple[Range, ...] | None = None
        self._canonical: frozenset[str] | None = None

    def ranges(self) -> tuple[Range, ...]:
        """The ranges, parsed on first use."""
        if self._ranges is None:
            self._ranges = tuple(Range.parse(r) for r in self._events.split("|") if r)
        return self._ranges

    def canonical_versions(self) -> frozenset[str]:
        """Canonical forms of the explicit entries not written in normal form."""
        if self._canonical is None:
            self._canonical = frozenset(_canonical_entries(_IRREGULAR.findall(self.versions)))
        return self._canonical

    def contains(self, installed: InstalledVersion) -> bool:
        """Whether ``installed`` is affected, by the explicit list or by a range."""
        if any(f"\n{spelling}\n" in self.versions for spelling in installed.spellings):
            return True
        parsed = installed.parsed
        if parsed is None:
            return False
        if self.versions and installed.canonical in self.canonical_versions():
            return True
        return any(r.contains(parsed) for r in self.ranges())

    def fixes(self) -> tuple[Version, ...]:
        """Every fixed version named by the ranges."""
        return tuple(v for r in self.ranges() for v in r.fixes())


@dataclass(frozen=True, slots=True)
class Advisory:
    """One OSV record, reduced."""

    id: str
    aliases: tuple[str, ...]
    summary: str
    url: str
    severity: str
    cvss: Cvss | None
    modified: float | None


class Record(NamedTuple):
    """A parsed record: the advisory, and what it says per PEP 503 package name."""

    advisory: Advisory
    affected: Mapping[str, tuple[Affected, ...]]


@dataclass(frozen=True, slots=True)
class InstalledVersion:
    """An installed version and the spellings under which an explicit list may name it."""

    raw: str
    parsed: Version | None
    canonical: str
    spellings: tuple[str, ...]

    @classmethod
    def of(cls, raw: str) -> InstalledVersion:
        """Parse ``raw``; one PEP 440 cannot parse is matched only by its exact spelling."""
        try:
            parsed = Version(raw)
        except InvalidVersion:
            return cls(raw, None, raw, (raw,))
        return cls(raw, parsed, canonical_version(parsed), _spellings(raw, parsed))


def canonical_version(version: Version) -> str:
    """The normal form with the release's trailing zeros dropped: one string per PEP 440 value."""
    release = list(version.release)
    while len(release) > 1 and release[-1] == 0:
        release.pop()
    return _with_release(version, release)


def _with_release(version: Version, release: list[int]) -> str:
    text = str(version)
    epoch = f"{version.epoch}!" if version.epoch else ""
    written = ".".join(map(str, version.release))
    return epoch + ".".join(map(str, release)) + text[len(epoch) + len(written) :]


def _spellings(raw: str, version: Version) -> tuple[str, ...]:
    """The raw text, and the normal form padded with zeros to up to four release parts."""
    release = list(version.release)
    while len(release) > 1 and release[-1] == 0:
        release.pop()
    found = {raw}
    for length in range(len(release), max(4, len(version.release)) + 1):
        found.add(_with_release(version, release + [0] * (length - len(release))))
    return tuple(found)


def parse_record(record: object) -> Record | None:
    """Reduce one OSV record; None when it names no PyPI package or is withdrawn.

    Raises :class:`RecordError` for a record that breaks the schema in a way
    that matters here.
    """
    if not isinstance(record, dict):
        raise RecordError("not an OSV record (expected a JSON object)")
    ident = _text(record, "id")
    if record.get("withdrawn"):
        return None
    aliases = record.get("aliases") or []
    try:
        "".join(aliases)  # a C-speed check that every alias is a string
    except TypeError:
        raise RecordError(f"{ident}: aliases must be a list of strings") from None
    if not isinstance(aliases, list):
        raise RecordError(f"{ident}: aliases must be a list of strings")
    affected: dict[str, list[Affected]] = {}
    entries = record.get("affected") or []
    if not isinstance(entries, list):
        raise RecordError(f"{ident}: affected must be a list")
    for entry in entries:
        name = _pypi_package(entry, ident)
        if name is not None:
            affected.setdefault(name, []).append(_affected(entry, ident))
    if not affected:
        return None
    cvss = _cvss_of(record, entries)
    advisory = Advisory(
        id=ident,
        aliases=tuple(dict.fromkeys(a for a in aliases if a != ident)),
        summary=_summary(record),
        url=_reference(record),
        severity=_severity(record, ident, cvss),
        cvss=cvss,
        modified=_timestamp(record.get("modified")),
    )
    return Record(advisory, {name: tuple(items) for name, items in affected.items()})


def _text(record: dict[str, Any], key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value or not value.isprintable():
        raise RecordError(f"{key} is missing or not a printable string")
    return value


def _pypi_package(entry: object, ident: str) -> str | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("package"), dict):
        raise RecordError(f"{ident}: affected[].package is missing")
    package = entry["package"]
    if package.get("ecosystem") != "PyPI":
        return None
    name = package.get("name")
    if not isinstance(name, str) or not name:
        raise RecordError(f"{ident}: affected[].package.name is missing")
    return canonical_name(name)


def _affected(entry: dict[str, Any], ident: str) -> Affected:
    ranges = []
    for item in entry.get("ranges") or ():
        if not isinstance(item, dict):
            raise RecordError(f"{ident}: a range is not an object")
        kind = item.get("type")
        if kind == "GIT":
            continue  # commit hashes say nothing about an installed version
        if kind not in ("ECOSYSTEM", "SEMVER"):
            raise RecordError(f"{ident}: unknown range type {kind!r}")
        ranges.append(_events(item.get("events"), ident))
    versions = entry.get("versions") or []
    if not isinstance(versions, list):
        raise RecordError(f"{ident}: versions must be a list of strings")
    try:
        joined = "\n" + "\n".join(versions) + "\n" if versions else ""
    except TypeError:
        raise RecordError(f"{ident}: versions must be a list of strings") from None
    return Affected("|".join(ranges), joined)


def _canonical_entries(versions: list[str]) -> list[str]:
    found = []
    for text in versions:
        try:
            found.append(canonical_version(Version(text)))
        except InvalidVersion:
            continue  # still matched by its exact spelling
    return found


def _events(events: object, ident: str) -> str:
    """A range's events encoded for Affected, each checked to be a PEP 440 version."""
    if not isinstance(events, list) or not events:
        raise RecordError(f"{ident}: a range has no events")
    found: list[str] = []
    for event in events:
        try:
            ((kind, value),) = event.items()
        except (AttributeError, ValueError):
            raise RecordError(
                f"{ident}: an event must have exactly one of {_EVENT_KINDS}"
            ) from None
        if kind not in _EVENT_KINDS or not isinstance(value, str):
            raise RecordError(f"{ident}: unknown event {kind!r}")
        if kind == "limit" and "*" in value:
            continue  # "*" is infinity: no limit
        if not (value.replace(".", "").isdigit() or _NORMAL.fullmatch(value)):
            try:
                value = str(Version(value))
            except InvalidVersion:
                raise RecordError(f"{ident}: {kind} {value!r} is not a PEP 440 version") from None
        found.append(kind[0] + value if kind != "limit" else "m" + value)
    if not any(event[0] == "i" for event in found):
        raise RecordError(f"{ident}: a range has no introduced event")
    return ",".join(found)


def _summary(record: dict[str, Any]) -> str:
    text = record.get("summary") or record.get("details") or ""
    if not isinstance(text, str):
        return ""
    line = text[: MAX_SUMMARY_LENGTH * 2]
    if "\n" in line or "  " in line or "\t" in line or "\r" in line:
        line = " ".join(line.split())
    line = line.strip()
    return line if len(line) <= MAX_SUMMARY_LENGTH else line[: MAX_SUMMARY_LENGTH - 3] + "..."


def _reference(record: dict[str, Any]) -> str:
    first: dict[object, str] = {}
    for reference in record.get("references") or ():
        if isinstance(reference, dict):
            url = reference.get("url")
            if isinstance(url, str) and url.startswith(("https://", "http://")):
                first.setdefault(reference.get("type"), url)
    for kind in _REFERENCE_PREFERENCE:
        if kind in first:
            return first[kind]
    return next(iter(first.values()), "")


def _severity(record: dict[str, Any], ident: str, cvss: Cvss | None) -> str:
    if ident.startswith("MAL-"):
        return "critical"  # a malicious package is never a small risk
    if cvss is not None:
        return _band(cvss.score)
    specific = record.get("database_specific")
    if isinstance(specific, dict):
        return _GITHUB_SEVERITY.get(str(specific.get("severity", "")).upper(), "unknown")
    return "unknown"


def _band(score: float) -> str:
    """CVSS's qualitative bands (the same for v3 and v4); 0.0 ("none") counts as low."""
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "medium"
    return "low"


def _cvss_of(record: dict[str, Any], entries: list[Any]) -> Cvss | None:
    """The highest-scored CVSS v3 or v4 vector, top-level or per package; None if none parse."""
    if "severity" not in record and not any(
        isinstance(e, dict) and "severity" in e for e in entries
    ):
        return None
    items = list(record.get("severity") or [])
    for entry in entries:
        if isinstance(entry, dict):
            items.extend(entry.get("severity") or [])
    best: Cvss | None = None
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("score"), str):
            continue
        scored = _score(str(item.get("type")), item["score"])
        if scored is not None and (best is None or scored.score > best.score):
            best = scored
    return best


@functools.lru_cache(maxsize=4096)
def _score(kind: str, vector: str) -> Cvss | None:
    import cvss  # type: ignore[import-untyped]  # only loaded when a record carries a vector

    try:
        if kind == "CVSS_V3":
            v3 = cvss.CVSS3(vector)
            method = "CVSSv31" if vector.startswith("CVSS:3.1/") else "CVSSv3"
            return Cvss(method, float(v3.scores()[0]), vector)
        if kind == "CVSS_V4":
            return Cvss("CVSSv4", float(cvss.CVSS4(vector).base_score), vector)
    except cvss.CVSSError:
        return None
    return None


def _timestamp(value: object) -> float | None:
    if isinstance(value, datetime.datetime):  # YAML parses unquoted timestamps itself
        moment = value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
        return moment.timestamp()
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(value)  # 3.11 reads the "Z" suffix
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)).timestamp()
