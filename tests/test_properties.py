"""Property-based tests: the config loader never crashes; labels always round-trip."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from types import ModuleType

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text
from support import make_config

from exporter.config import Config, ConfigError, config_from_mapping, load_config
from exporter.refresh import RefreshStats
from exporter.render.json import StatusDocument
from exporter.render.prometheus import Fragment, MetricsPages
from exporter.snapshot import Identity, Sources, take_snapshot

KEYS = st.sampled_from(
    [
        "web",
        "app",
        "commit",
        "modules",
        "refresh",
        "redact",
        "listen_address",
        "api_version",
        "version",
        "value",
        "env",
        "file",
        "git_dir",
        "source",
        "paths",
        "include",
        "exclude",
        "interval_seconds",
        "hostname",
        "max",
        "uvloop",
        "bogus",
        "",
    ]
)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(KEYS, st.text(max_size=5)), inner, max_size=4),
    ),
    max_leaves=20,
)


def outcome_of(load):
    """The loaded Config, or the ConfigError it raised; any other exception propagates."""
    try:
        return load()
    except ConfigError as exc:
        return exc


@settings(max_examples=300, deadline=None)
@given(st.one_of(VALUES, st.dictionaries(KEYS, VALUES, max_size=6)))
def test_any_parsed_structure_gives_a_config_or_a_readable_error(data):
    """Whatever YAML parses to, the loader returns a Config or a ConfigError with messages."""
    outcome = outcome_of(lambda: config_from_mapping(data))
    if isinstance(outcome, ConfigError):
        assert outcome.problems
        assert all(isinstance(p, str) and p.startswith("config: ") for p in outcome.problems)
    else:
        assert isinstance(outcome, Config)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_any_file_text_gives_a_config_or_a_readable_error(text):
    """Any file content, YAML or not, loads or is refused with a message naming the file."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "config.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        outcome = outcome_of(lambda: load_config(path))
        if isinstance(outcome, ConfigError):
            assert all(str(path) in p for p in outcome.problems)
        else:
            assert isinstance(outcome, Config)


PRINTABLE = st.text(
    st.characters(categories=["L", "N", "P", "S", "Zs"], exclude_characters="\x85"),
    min_size=1,
    max_size=40,
).filter(str.isprintable)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(PRINTABLE, PRINTABLE, min_size=1, max_size=8))
def test_any_printable_name_and_version_round_trip(modules):
    """Quotes, backslashes and any printable text survive both exposition formats and JSON."""
    fake = {}
    for name, version in modules.items():
        module = ModuleType("m")
        module.__version__ = version
        fake[name] = module
    snapshot = take_snapshot(
        make_config(modules={"source": "loaded"}, commit={"value": "c", "env": []}),
        Identity.new(),
        sources=Sources(environ={}, sys_modules=lambda: fake),
    )
    assert dict(snapshot.modules) == dict(sorted(modules.items()))
    pages = MetricsPages(snapshot, RefreshStats())
    text = pages.body(Fragment(b"", b""), (False, False)).decode()
    (family,) = [f for f in parse_text(text) if f.name == "module_info"]
    assert {s.labels["module"]: s.labels["version"] for s in family.samples} == modules
    om = pages.body(Fragment(b"", b""), (True, False)).decode()
    (family,) = [f for f in parse_openmetrics(om) if f.name == "module"]
    assert {s.labels["module"]: s.labels["version"] for s in family.samples} == modules
    body = json.loads(StatusDocument(snapshot).body('h"o\\st'))
    assert body["modules"] == modules
    assert body["server_address"] == 'h"o\\st'
