"""The status document of ``GET /api/v1/status/``, field for field as the original API.

The document is serialised once per refresh around a marker standing where
``server_address`` goes; a request splices its Host header in, so a response
costs a concatenation (cached per Host), not a serialisation.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from exporter.snapshot import REDACTED, Snapshot
from exporter.vulnerabilities import vulnerable_modules

_MARKER = "\x00server_address\x00"  # control characters never reach a snapshot, so it is unique
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
    """The findings; null when no advisory database is configured (not checked is not clean)."""
    findings = snapshot.published_vulnerabilities("json")
    return None if findings is None else [f.as_dict() for f in findings]


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
    """Pre-serialised JSON, compact and pretty, that takes the request's Host per call."""

    __slots__ = ("_cache", "_compact", "_pretty", "_static")

    def __init__(self, snapshot: Snapshot) -> None:
        fields = status_fields(snapshot, _MARKER)
        compact = json.dumps(fields, separators=(",", ":"))
        pretty = json.dumps(fields, indent=2) + "\n"
        if snapshot.redaction.server_address:  # no Host to splice in: the bytes are final
            self._compact, self._pretty = (compact.encode(), b""), (pretty.encode(), b"")
        else:
            self._compact, self._pretty = _split(compact), _split(pretty)
        self._static = snapshot.redaction.server_address
        self._cache: dict[tuple[str, bool], bytes] = {}

    def body(self, server_address: str, *, pretty: bool = False) -> bytes:
        """The document with ``server_address`` filled in."""
        if self._static:
            return (self._pretty if pretty else self._compact)[0]
        key = (server_address, pretty)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        head, tail = self._pretty if pretty else self._compact
        body = head + json.dumps(server_address).encode() + tail
        if len(self._cache) >= _HOST_CACHE_SIZE:
            self._cache.clear()  # hostile Host headers cannot grow it without bound
        self._cache[key] = body
        return body


def _split(text: str) -> tuple[bytes, bytes]:
    head, marker, tail = text.partition(json.dumps(_MARKER))
    if not marker or json.dumps(_MARKER) in tail:
        raise ValueError("server_address marker must appear exactly once")
    return head.encode(), tail.encode()


def _rfc3339(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
