"""Pick a response format from request headers: pure functions over header strings.

Results are cached by header value; a scraper sends the same headers every
time, and the cache is bounded so varied hostile headers only evict entries.
"""

from __future__ import annotations

from functools import lru_cache

_OPENMETRICS_VERSIONS = ("", "0.0.1", "1.0.0")


@lru_cache(maxsize=256)
def metrics_variant(accept: str, accept_encoding: str) -> tuple[bool, bool]:
    """``(openmetrics, gzip)`` for a request's Accept and Accept-Encoding headers."""
    return wants_openmetrics(accept), accepts_gzip(accept_encoding)


@lru_cache(maxsize=256)
def wants_openmetrics(accept: str) -> bool:
    """Whether ``accept`` ranks OpenMetrics 1.0 (or 0.0.1) at least as high as plain text."""
    best_openmetrics = best_text = 0.0
    for media, params in _parse_list(accept):
        q = _quality(params)
        if media == "application/openmetrics-text":
            if params.get("version", "") in _OPENMETRICS_VERSIONS:
                best_openmetrics = max(best_openmetrics, q)
        elif media in ("text/plain", "text/*", "*/*"):
            best_text = max(best_text, q)
    return best_openmetrics > 0 and best_openmetrics >= best_text


@lru_cache(maxsize=256)
def prefers_html(accept: str) -> bool:
    """Whether ``accept`` names HTML explicitly and ranks it above JSON (a browser, not curl).

    ``*/*`` alone means JSON: the API's answer stays what scripts always got.
    """
    html = json = 0.0
    for media, params in _parse_list(accept):
        q = _quality(params)
        if media in ("text/html", "application/xhtml+xml"):
            html = max(html, q)
        elif media == "application/json":
            json = max(json, q)
    return html > 0 and html > json


@lru_cache(maxsize=256)
def prefers_json(accept: str) -> bool:
    """Whether ``accept`` names JSON explicitly and ranks it no lower than plain text or HTML.

    For answers that have no single format of their own, such as a 404: ``*/*``
    alone (curl) means plain text.
    """
    json = other = 0.0
    for media, params in _parse_list(accept):
        q = _quality(params)
        if media == "application/json":
            json = max(json, q)
        elif media in ("text/plain", "text/html", "application/xhtml+xml"):
            other = max(other, q)
    return json > 0 and json >= other


@lru_cache(maxsize=256)
def accepts_gzip(accept_encoding: str) -> bool:
    """Whether ``accept_encoding`` allows gzip (``gzip``, ``x-gzip`` or ``*`` with q > 0)."""
    return any(
        coding in ("gzip", "x-gzip", "*") and _quality(params) > 0
        for coding, params in _parse_list(accept_encoding)
    )


def _parse_list(header: str) -> list[tuple[str, dict[str, str]]]:
    items = []
    for part in header.split(","):
        token, *raw_params = part.split(";")
        params = {}
        for raw in raw_params:
            key, _, value = raw.partition("=")
            params[key.strip().lower()] = value.strip().strip('"')
        if token.strip():
            items.append((token.strip().lower(), params))
    return items


def _quality(params: dict[str, str]) -> float:
    try:
        q = float(params.get("q", "1"))
    except ValueError:
        return 0.0
    return q if 0.0 <= q <= 1.0 else 0.0
