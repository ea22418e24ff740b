"""The status document of ``GET /api/v1/status/``, field for field as the original API.

The document is serialised once per change of its facts around markers standing where
``server_address`` and ``refreshed_at`` go; a request splices its Host header and the
latest refresh time in, so a response costs a concatenation (cached per Host), not a
serialisation.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from exporter.advisories.matching import vulnerable_modules
from exporter.snapshot import REDACTED, Snapshot

_MARKER = "\x00server_address\x00"  # control characters never reach a snapshot, so it is unique
_REFRESHED_MARKER = "\x00refreshed_at\x00"
# Each entry is a full copy of the body (about 40 bytes a module): keep few. Clients of one
# host send one or two Host values; more than that are concatenated per request.
_HOST_CACHE_SIZE = 4


def status_fields(snapshot: Snapshot, server_address: str) -> dict[str, Any]:
    """The status as a plain dict: the original fields first, then what this daemon adds.

    Redacted values keep their place and type (``<redacted>``, or an empty
    ``modules``), and ``redacted`` lists them, so scripts can tell.
    """
    redaction = snapshot.redaction
    fields: dict[str, Any] = {
        "api_version": snapshot.api_version,
        "commit": snapshot.commit.value,
        "server_address": REDACTED if redaction.server_address else server_address,
        "platform_info": snapshot.published_platform.as_dict(),
        "python_version": snapshot.python.version_string,
        "modules": dict(snapshot.published_modules("json")),
        "server_id": snapshot.identity.server_id,
        "started_at": _rfc3339(snapshot.identity.started_at),
        "refreshed_at": _rfc3339(snapshot.taken_at),
        "python_end_of_life": (
            snapshot.python_end_of_life.isoformat() if snapshot.python_end_of_life else None
        ),
        "vulnerabilities": _vulnerabilities(snapshot),
        "vulnerable_modules": _vulnerable_modules(snapshot),
        "advisories": advisories_fields(snapshot),
    }
    if snapshot.process is not None:
        fields["restart_required"] = snapshot.process.restart_required
        fields["process"] = process_fields(snapshot)
    redacted = [
        name
        for name, hidden in (
            ("server_address", redaction.server_address),
            ("platform_info.node", redaction.hostname),
            ("modules", redaction.modules_hidden_from("json")),
        )
        if hidden
    ]
    if redacted:
        fields["redacted"] = redacted
    return fields


def _vulnerabilities(snapshot: Snapshot) -> list[dict[str, object]] | None:
    """The findings; null when no advisory database is configured (not checked is not clean).

    A discovered target's findings say whether its processes map the module's native
    code: ``loaded`` is true, or "unknown" (pure Python does not show in maps)."""
    findings = snapshot.published_vulnerabilities("json")
    if findings is None:
        return None
    if snapshot.process is None:
        return [f.as_dict() for f in findings]
    loaded = snapshot.process.loaded
    return [{**f.as_dict(), "loaded": True if f.module in loaded else "unknown"} for f in findings]


def process_fields(snapshot: Snapshot) -> dict[str, Any] | None:
    """What a discovered target's processes add: how many, since when, and what changed on
    disk under them; null for any other environment."""
    p = snapshot.process
    if p is None:
        return None
    return {
        "processes": p.processes,
        "oldest_started_at": _rfc3339(p.started_at),
        "restart_required": p.restart_required,
        "changed_modules": [
            {"module": module, "version": version, "change": change}
            for module, version, change in p.changed
        ],
        "stale_files": [{"path": path, "reason": reason} for path, reason in p.stale],
        "loaded_modules": sorted(p.loaded),
    }


def _vulnerable_modules(snapshot: Snapshot) -> list[dict[str, object]] | None:
    """Each module with findings and the one version to upgrade it to; null as findings are."""
    findings = snapshot.published_vulnerabilities("json")
    return None if findings is None else [m.as_dict() for m in vulnerable_modules(findings)]


def advisories_fields(snapshot: Snapshot) -> dict[str, Any] | None:
    """The advisory database's state: whether the findings can be trusted, and how fresh the
    data is; null when no database is configured."""
    if not snapshot.advisory_paths:
        return None
    db = snapshot.advisories
    return {
        "loaded": db.loaded,
        "error": snapshot.advisories_problem,
        "failing_since": _rfc3339(db.failing_since) if db.failing_since is not None else None,
        "loaded_at": _rfc3339(db.loaded_at) if db.loaded_at is not None else None,
        "advisories": db.advisories,
        "skipped": db.skipped,
        "newest": _rfc3339(db.newest_modified) if db.newest_modified is not None else None,
        "stale": snapshot.advisories_stale,
    }


class StatusDocument:
    """Pre-serialised JSON that takes the request's Host per call.

    The document is serialised with markers where ``server_address`` and ``refreshed_at``
    go. When ``previous`` was made from the same facts, its serialisation is reused and
    only the new refresh time is spliced in: an unchanged target costs no encoding. The
    indented form is made on its first request (``json.dumps(indent=2)`` is the
    pure-Python encoder, and rarely asked for).
    """

    __slots__ = ("_cache", "_compact", "_key", "_refreshed", "_shared", "_static")
    _compact: tuple[bytes, ...]
    _shared: _Indented

    def __init__(self, snapshot: Snapshot, previous: StatusDocument | None = None) -> None:
        self._static = snapshot.redaction.server_address
        # An RFC 3339 time is digits and "-:.TZ": as a JSON string, only quoted.
        self._refreshed = b'"%s"' % _rfc3339(snapshot.taken_at).encode()
        self._key = _reuse_key(snapshot)
        self._cache: dict[tuple[str, bool], bytes] = {}
        if previous is not None and previous._key == self._key:
            self._compact, self._shared = previous._compact, previous._shared
            return
        fields = status_fields(snapshot, _MARKER)
        fields["refreshed_at"] = _REFRESHED_MARKER
        self._compact = _split(json.dumps(fields, separators=(",", ":")), self._static)
        self._shared = _Indented(fields, self._static)

    def body(self, server_address: str, *, pretty: bool = False) -> bytes:
        """The document with ``server_address`` filled in."""
        key = (server_address, pretty)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        parts = self._shared.parts() if pretty else self._compact
        if self._static:
            body = parts[0] + self._refreshed + parts[1]
        else:
            address = json.dumps(server_address).encode()
            body = parts[0] + address + parts[1] + self._refreshed + parts[2]
        if len(self._cache) >= _HOST_CACHE_SIZE:
            self._cache.clear()  # hostile Host headers cannot grow it without bound
        self._cache[key] = body
        return body


class _Indented:
    """The indented form, made once on first use and shared by documents that reuse it."""

    __slots__ = ("_fields", "_parts", "_static")

    def __init__(self, fields: dict[str, Any], static: bool) -> None:
        self._fields: dict[str, Any] | None = fields
        self._parts: tuple[bytes, ...] | None = None
        self._static = static

    def parts(self) -> tuple[bytes, ...]:
        if self._parts is None:
            assert self._fields is not None
            self._parts = _split(json.dumps(self._fields, indent=2) + "\n", self._static)
            self._fields = None
        return self._parts


def _reuse_key(snapshot: Snapshot) -> tuple[object, ...]:
    """Everything the document says but the refresh time: equal keys, equal bytes."""
    db = snapshot.advisories
    return (
        snapshot.facts(),
        snapshot.commit.value,
        snapshot.identity,
        snapshot.advisory_paths,
        db.loaded_at,
        db.last_error,
        db.failing_since,
        db.advisories,
        db.skipped,
        db.newest_modified,
        snapshot.advisories_stale,
    )


def _split(text: str, static: bool) -> tuple[bytes, ...]:
    """``text`` cut at its markers: [head, mid, tail] around server_address and refreshed_at,
    or [head, tail] around refreshed_at alone when server_address is redacted."""
    markers = ([] if static else [json.dumps(_MARKER)]) + [json.dumps(_REFRESHED_MARKER)]
    parts: list[bytes] = []
    rest = text
    for marker in markers:
        head, found, rest = rest.partition(marker)
        if not found or marker in rest:
            raise ValueError(f"marker {marker!r} must appear exactly once")
        parts.append(head.encode())
    parts.append(rest.encode())
    return tuple(parts)


def _rfc3339(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
