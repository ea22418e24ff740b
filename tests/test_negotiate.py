"""Choosing the exposition format and encoding from request headers."""

from __future__ import annotations

import pytest

from exporter.negotiate import accepts_gzip, prefers_json, wants_openmetrics

PROMETHEUS_2 = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("", False),
        ("*/*", False),
        ("text/plain", False),
        (PROMETHEUS_2, True),
        ("application/openmetrics-text", True),
        ("application/openmetrics-text; version=0.0.1", True),
        ("application/openmetrics-text; version=2.0.0", False),
        ("text/plain;q=1, application/openmetrics-text;q=0.5", False),
        ("application/openmetrics-text;q=0", False),
        ("application/openmetrics-text;q=bogus", False),
        ("APPLICATION/OPENMETRICS-TEXT", True),
    ],
)
def test_openmetrics_negotiation(accept, expected):
    """OpenMetrics is chosen when the client ranks it at least as high as plain text."""
    assert wants_openmetrics(accept) is expected


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [
        ("", False),
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("deflate", False),
        ("gzip;q=0", False),
        ("*", True),
        ("identity", False),
    ],
)
def test_gzip_negotiation(encoding, expected):
    """gzip is used when Accept-Encoding allows it with a q above zero."""
    assert accepts_gzip(encoding) is expected


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("", False),
        ("*/*", False),
        ("application/json", True),
        ("APPLICATION/JSON", True),
        ("application/json, text/plain, */*", True),
        ("text/html, application/json", True),
        ("text/plain, application/json;q=0.5", False),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", False),
        ("application/json;q=0", False),
        ("application/*", False),
    ],
)
def test_json_preference(accept, expected):
    """JSON is preferred when named explicitly and ranked no lower than plain text or HTML."""
    assert prefers_json(accept) is expected
