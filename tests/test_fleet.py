"""The fleet benchmark's properties on a small fleet (5 daemons x 5 targets x 100
distributions) scraped every second by a real Prometheus with the committed rules: every rule
group evaluates without error, every dashboard query returns data, and the head series are
what the parts add up to. Nothing is timed; every wait is bounded (make fleet-bench times it).
"""

from __future__ import annotations

import time

import pytest
from fleet_support import (
    SMALL,
    dashboard,
    dashboard_queries,
    run_prometheus,
    small_fleet,
    variable_selectors,
)
from support import tool

from bench.fleet_parts import JOB, http_get, wait_until
from bench.fleet_queries import metric_values
from monitoring.rules import rule_groups
from monitoring.settings import Settings

# The series Prometheus adds per scraped target: up, scrape_duration_seconds,
# scrape_samples_scraped, scrape_samples_post_metric_relabeling, scrape_series_added.
SCRAPE_SERIES = 5


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    tool("prometheus")
    with small_fleet(tmp_path_factory.mktemp("fleet")) as small:
        api = run_prometheus(small)
        yield small, api


def test_every_rule_group_evaluates_without_error(fleet):
    """Each group of the committed rules has been evaluated, every rule with health ok."""
    _, api = fleet

    def evaluated() -> list[dict] | None:
        groups = api.rule_groups()
        done = all(
            r.get("lastEvaluation", "").startswith("20") and r["health"] != "unknown"
            for g in groups
            for r in g["rules"]
        )
        return groups if groups and done else None

    groups = wait_until(evaluated, "every rule evaluated", 30)
    assert {g["name"] for g in groups} == {g["name"] for g in rule_groups(Settings())}
    bad = [
        (g["name"], r["name"], r.get("lastError"))
        for g in groups
        for r in g["rules"]
        if r["health"] != "ok"
    ]
    assert bad == []


def test_every_dashboard_query_returns_data(fleet):
    """Every panel's query (variables at their defaults, the default 6 h range) and every
    variable's label values have data."""
    _, api = fleet
    board = dashboard()
    queries, macros = dashboard_queries(board)
    assert len(queries) >= 20
    end = time.time()
    for q in queries:
        if q.instant:
            fetch = lambda e=q.expr: api.query(e)  # noqa: E731
        else:
            fetch = lambda e=q.expr: api.query_range(  # noqa: E731
                e, time.time() - macros.range_seconds, time.time(), macros.interval_seconds
            )
        # increase() needs two samples inside its window: wait for them where needed.
        assert wait_until(fetch, f"data for {q.name}: {q.expr}", 30), q.name
    for name, selector, label in variable_selectors(board):
        values = api.label_values(label, selector, end - macros.range_seconds, time.time())
        assert values, name


def test_the_shards_record_every_module_version_once(fleet):
    """The shard groups together record each (job, target, module, version) of module_info
    once, with the instances running it: what one query over every module_info says."""
    _, api = fleet
    direct = f'count by (job, target, module, version) (module_info{{job="{JOB}"}})'

    def both() -> tuple[dict, dict] | None:
        recorded = {
            tuple(sorted((k, v) for k, v in r["metric"].items() if k != "module_shard")): r[
                "value"
            ][1]
            for r in api.query("job_module_version:module_info:count")
        }
        expected = {
            tuple(
                sorted({**r["metric"], "__name__": "job_module_version:module_info:count"}.items())
            ): r["value"][1]
            for r in api.query(direct)
        }
        return (recorded, expected) if recorded == expected else None

    # Each shard's group evaluates at its own offset: wait until one evaluation of each
    # has seen the same scrapes as the direct query.
    recorded, expected = wait_until(both, "the shards' versions = module_info's", 30)
    assert len(recorded) == len(expected) > SMALL.distributions


def test_head_series_are_what_the_parts_add_up_to(fleet):
    """module_info has daemons x targets x distributions series, and the head holds each
    daemon's exposition, the scrape series and the rules' outputs, nothing else."""
    small, api = fleet
    assert len(api.query(f'module_info{{job="{JOB}"}}')) == SMALL.module_series == 2500
    exposed = sum(
        sum(
            1
            for line in http_get(f"http://{a}/metrics").decode().splitlines()
            if line and not line.startswith("#")
        )
        for a in small.addresses
    )
    assert exposed > SMALL.module_series

    def counts() -> tuple[float, float]:
        # Every series the rules wrote, those gone stale included (the head keeps them): at
        # start-up a pending alert can come and go while the shards' groups evaluate one
        # after the other (ModuleSetDrift before the module versions are recorded).
        outputs = api.series(
            '{__name__=~"job.*:.+|ALERTS|ALERTS_FOR_STATE"}', time.time() - 3600, time.time()
        )
        head = metric_values(api.own_metrics(), "prometheus_tsdb_head_series")[""]
        return head, exposed + SCRAPE_SERIES * small.size.daemons + len(outputs)

    # Rule outputs settle over the first evaluations: wait for the sums to agree.
    head, expected = wait_until(lambda: (c := counts())[0] == c[1] and c, "head = parts", 30)
    assert head == expected
