"""The direct family writer: byte for byte what prometheus_client writes, or nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest as text_generate
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_generate
from prometheus_client.registry import Collector
from support import FakeEnvironment, make_config, quiet_sources

from exporter.host import take_host
from exporter.refresh import RefreshStats
from exporter.render.exposition import go_float, write_families
from exporter.render.prometheus import HealthCollector, MetricsPages
from exporter.render.target_metrics import TargetHealthCollector, module_allowance
from exporter.snapshot import Identity

DATA = Path(__file__).resolve().parent / "data" / "osv"
VALUES = [0, 1, 3, 1.5, -2.25, 0.1, 1e7, 123456789.0, 1234567.5, 1e-9, 1e22, float("inf")]
VALUES += [float("-inf"), float("nan"), True, 2**53]
HOSTILE = ['q"uote', "back\\slash", "new\nline", "é-ß", "", "}{,=", 'all\\"\n']


class Fixed(Collector):
    """Yields the families it was given."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        """The families, as given."""
        return self.families


def reference(families: list[Metric]) -> tuple[bytes, bytes]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed(families))
    openmetrics = openmetrics_generate(registry)
    assert openmetrics.endswith(b"# EOF\n")
    return text_generate(registry), openmetrics[: -len(b"# EOF\n")]


def every_kind() -> list[Metric]:
    gauge = GaugeMetricFamily("g_values", 'help "quoted" \\ and\nnewline', labels=("v",))
    for index, value in enumerate(VALUES):
        gauge.add_metric((str(index),), value)
    labelled = CounterMetricFamily("c_things", "Counted.", labels=("b", "a"))
    for index, hostile in enumerate(HOSTILE):
        labelled.add_metric((hostile, str(index)), index)
    info = InfoMetricFamily("i_thing", "An info; é.", labels=("z", "a"))
    info.add_metric(("1", 'x"y'), {"m": "n\\"})
    return [
        gauge,
        labelled,
        info,
        GaugeMetricFamily("g_plain", "", value=4),
        CounterMetricFamily("c_plain_total", "Named with its suffix.", value=7),
        InfoMetricFamily("i_plain", "No labels.", value={}),
        GaugeMetricFamily("g_empty", "No samples.", labels=("x",)),
    ]


def test_every_handled_kind_is_written_as_prometheus_client_writes_it():
    """Gauges, counters and infos, hostile label values and help texts, every float form:
    both formats equal prometheus_client's bytes."""
    families = every_kind()
    written = write_families(families)
    assert written is not None
    assert written[:2] == reference(families)


@pytest.mark.parametrize(
    "family",
    [
        SummaryMetricFamily("s_latency", "A summary.", count_value=1, sum_value=2.0),
        CounterMetricFamily("c_created", "With _created.", value=1, created=1.0),
        GaugeMetricFamily("g_unit_seconds", "With a unit.", value=1, unit="seconds"),
        GaugeMetricFamily("colon:name", "A colon.", value=1),
    ],
    ids=["summary", "created", "unit", "colon"],
)
def test_what_the_writer_does_not_handle_is_left_to_prometheus_client(family):
    """A family needing another kind, a _created sample, a unit or an escaped name: None."""
    assert write_families([GaugeMetricFamily("ok", "Fine.", value=1), family]) is None


def test_a_family_whose_samples_did_not_change_is_reused():
    """Equal samples reuse the previous lines (the same object); a changed value is written
    again, and the result still equals prometheus_client's."""
    first = write_families(every_kind())
    assert first is not None
    changed = every_kind()
    changed[3] = GaugeMetricFamily("g_plain", "", value=5)
    again = write_families(changed, first[2])
    assert again is not None
    assert again[2]["g_values"] is first[2]["g_values"]
    assert again[2]["g_plain"] is not first[2]["g_plain"]
    assert again[:2] == reference(changed)


def test_go_float_is_prometheus_clients_float_to_go_string():
    """Every value form is written as floatToGoString writes it."""
    from prometheus_client.utils import floatToGoString

    for value in [*VALUES, 1e6, 9999999.0, 10000000.5, 5e-324, -1e300]:
        assert go_float(value) == floatToGoString(value)


def test_the_health_block_of_a_host_with_targets_is_unchanged(tmp_path):
    """A host with targets, findings and an unreadable target: the health block in /metrics
    is prometheus_client's rendering of the health collectors, on a first and a later
    refresh (reused families)."""
    web, worker = FakeEnvironment(tmp_path / "web"), FakeEnvironment(tmp_path / "worker")
    web.install("aiohttp", "3.7.3")
    worker.install("aiohttp", "3.7.4")
    environments = [
        {"name": "web", "paths": [str(web.path)]},
        {"name": "worker", "paths": [str(worker.path)]},
        {"name": "gone", "paths": [str(tmp_path / "missing")]},
    ]
    config = make_config(targets={"environments": environments}, advisories={"paths": [str(DATA)]})
    host = take_host(config, Identity.new(), sources=quiet_sources())
    stats = RefreshStats(refreshes=3, errors=1, last_duration_seconds=0.0123)
    first = MetricsPages(host, stats)
    later_stats = RefreshStats(refreshes=4, errors=1, last_duration_seconds=0.5)
    later = MetricsPages(host, later_stats, first)
    for pages, used in ((first, stats), (later, later_stats)):
        collectors = [
            HealthCollector(host.own, used, with_environment=False),
            TargetHealthCollector(host, module_allowance(host, host.max_module_series)),
        ]
        expected = reference([f for c in collectors for f in c.collect()])
        assert (pages._health.text, pages._health.openmetrics) == expected


def test_the_health_block_of_a_single_environment_is_unchanged(fake_env):
    """Without targets: the health block equals prometheus_client's HealthCollector rendering."""
    fake_env.install("Django", "4.2.1")
    host = take_host(make_config(modules={"paths": [str(fake_env.path)]}), Identity.new())
    stats = RefreshStats(refreshes=1, last_success_timestamp=1767225600.25)
    pages = MetricsPages(host, stats)
    expected = reference(list(HealthCollector(host.own, stats).collect()))
    assert (pages._health.text, pages._health.openmetrics) == expected
