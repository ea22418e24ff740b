"""The exposition: both formats parse, hostile strings round-trip, gzip splices, promtool agrees."""

from __future__ import annotations

import subprocess

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest as text_generate
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_generate
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text
from support import env_config, gunzip, quiet_sources, tool

from exporter.refresh import RefreshStats
from exporter.render.prometheus import FactsCollector, Fragment, MetricsPages, ProcessMetrics
from exporter.snapshot import Identity, take_snapshot

HOSTILE = {
    'quote"name': 'v"1',
    "back\\slash": "1.0\\",
    "<script>alert(1)</script>": "</script><b>",
    "unicode-é": "1.0-ß",
}


def pages_for(env, previous=None, **config):
    snapshot = take_snapshot(env_config(env, **config), Identity.new(), sources=quiet_sources())
    return snapshot, MetricsPages(snapshot, RefreshStats(refreshes=1), previous)


def families(text, openmetrics=False):
    parse = parse_openmetrics if openmetrics else parse_text
    return {f.name: f for f in parse(text)}


def test_both_formats_carry_every_fact(fake_env):
    """Text and OpenMetrics expositions hold the same facts under the documented names."""
    fake_env.install("Django", "4.2.1")
    snapshot, pages = pages_for(fake_env, app={"version": "2.3.0"})
    text = families(pages.body(Fragment(b"", b""), (False, False)).decode())
    om = families(pages.body(Fragment(b"", b""), (True, False)).decode(), openmetrics=True)
    (build,) = text["build_info"].samples
    assert build.labels == {"api_version": "1", "commit": "abc1234", "version": "2.3.0"}
    assert om["build"].type == "info"
    (python,) = text["python_info"].samples
    assert python.labels == snapshot.python.labels()
    (plat,) = om["platform"].samples
    assert plat.labels == snapshot.platform.as_dict()
    assert [s.labels for s in text["module_info"].samples] == [
        {"module": "django", "version": "4.2.1"}
    ]
    assert text["status_exporter_modules"].samples[0].value == 1
    assert {s.labels["change"] for s in om["status_exporter_module_changes"].samples} == {
        "added",
        "removed",
        "upgraded",
        "downgraded",
        "changed",
        "excluded",
        "included",
    }
    assert "every 60 seconds" in text["module_info"].documentation


def test_hostile_strings_round_trip_through_both_parsers(fake_env):
    """Quotes, backslashes, markup and non-ASCII in names and versions survive escaping."""
    for i, (name, version) in enumerate(HOSTILE.items()):
        fake_env.install_raw(f"h{i}", f"Name: {name}\nVersion: {version}\n".encode())
    _, pages = pages_for(fake_env)
    expected = {n.lower(): v for n, v in HOSTILE.items()}
    for openmetrics in (False, True):
        body = pages.body(Fragment(b"", b""), (openmetrics, False)).decode()
        parsed = families(body, openmetrics)
        family = parsed["module" if openmetrics else "module_info"]
        assert {s.labels["module"]: s.labels["version"] for s in family.samples} == expected


@pytest.mark.parametrize("openmetrics", [False, True])
def test_gzip_body_is_the_plain_body(fake_env, openmetrics):
    """The spliced gzip member decompresses to exactly the plain body, process part included."""
    for i in range(300):
        fake_env.install(f"pkg{i}", f"1.{i}")
    _, pages = pages_for(fake_env)
    process = ProcessMetrics().current()
    plain = pages.body(process, (openmetrics, False))
    zipped = pages.body(process, (openmetrics, True))
    assert gunzip(zipped) == plain
    assert len(zipped) < len(plain) / 3
    assert b"process_resident_memory_bytes" in plain
    assert plain.endswith(b"# EOF\n") == openmetrics
    assert plain.count(b"# EOF") == int(openmetrics)


def test_process_metrics_are_cached_for_max_age():
    """The process part is re-rendered only once max_age has passed."""
    now = [100.0]
    process = ProcessMetrics(max_age=1.0, clock=lambda: now[0])
    first = process.current()
    now[0] += 0.5
    assert process.current() is first
    now[0] += 0.6
    assert process.current() is not first


@pytest.mark.needs_promtool
def test_promtool_accepts_the_exposition(fake_env):
    """promtool check metrics reports no problem on a body with hostile labels."""
    promtool = tool("promtool")
    fake_env.install("Django", "4.2.1")
    for i, (name, version) in enumerate(HOSTILE.items()):
        fake_env.install_raw(f"h{i}", f"Name: {name}\nVersion: {version}\n".encode())
    _, pages = pages_for(fake_env)
    body = pages.body(ProcessMetrics().current(), (False, False))
    done = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=30
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == b""
    assert done.stderr.strip() == b""


def test_facts_are_rendered_again_only_when_they_change(fake_env):
    """Unchanged facts reuse the previous rendering; a changed module renders anew."""
    fake_env.install("pkg", "1.0")
    _, first = pages_for(fake_env)
    _, second = pages_for(fake_env, previous=first)
    assert second.facts_rendering is first.facts_rendering
    fake_env.upgrade("pkg", "2.0")
    _, third = pages_for(fake_env, previous=second)
    assert third.facts_rendering is not second.facts_rendering
    text = third.body(Fragment(b"", b""), (False, False)).decode()
    assert 'module_info{module="pkg",version="2.0"}' in text
    assert 'version="1.0"' not in text


@pytest.mark.parametrize("openmetrics", [False, True])
def test_direct_module_rendering_matches_prometheus_client(fake_env, openmetrics):
    """The hand-written module_info family is byte for byte prometheus_client's, hostile or not."""
    fake_env.install("django", "4.2.1")
    for i, (name, version) in enumerate(HOSTILE.items()):
        fake_env.install_raw(f"h{i}", f"Name: {name}\nVersion: {version}\n".encode())
    snapshot = take_snapshot(env_config(fake_env), Identity.new(), sources=quiet_sources())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FactsCollector(snapshot))
    if openmetrics:
        expected = openmetrics_generate(registry).removesuffix(b"# EOF\n")
    else:
        expected = text_generate(registry)
    _, pages = pages_for(fake_env)
    ours = pages.body(Fragment(b"", b""), (openmetrics, False))
    assert ours.startswith(expected)
