"""The small fleet of the test suite (5 daemons x 5 targets x 100 distributions) and the
Prometheus scraping it, shared by test_fleet.py and test_victoriametrics.py.

The pieces are the fleet benchmark's (bench/fleet_parts.py, bench/fleet_queries.py): the same
trees, daemons and dashboard queries, smaller, scraped every second, and nothing timed.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support import tool

from bench.fleet_parts import (
    JOB,
    Process,
    Processes,
    Size,
    build_trees,
    fleet_configs,
    prometheus_config,
    running,
    start_daemons,
    start_prometheus,
    wait_until,
)
from bench.fleet_queries import (
    Macros,
    PromAPI,
    dashboard_range,
    defaults,
    panel_queries,
    seconds,
    substitute,
    variable_queries,
)

REPO = Path(__file__).resolve().parent.parent
SMALL = Size(daemons=5, targets=5, distributions=100)
INTERVAL = "1s"
# The committed rules and dashboard: they select job="python-status", the fleet's job.
RULES = REPO / "prometheus" / "rules.yml"
DASHBOARD = REPO / "grafana" / "dashboards" / "python-fleet.json"


@dataclass
class SmallFleet:
    """The daemons, the processes that run them, and where they listen."""

    size: Size
    daemons: list[Process]
    processes: Processes
    base: Path

    @property
    def addresses(self) -> list[str]:
        """host:port of every daemon."""
        return [d.address for d in self.daemons]


@contextlib.contextmanager
def small_fleet(base: Path, size: Size = SMALL) -> Iterator[SmallFleet]:
    """The daemons of the small fleet, running until the block ends."""
    roots = build_trees(base / "trees", size)
    with running(base / "logs") as processes:
        daemons = start_daemons(processes, fleet_configs(base, size, roots), timeout=60)
        yield SmallFleet(size, daemons, processes, base)


def run_prometheus(
    fleet: SmallFleet, name: str = "prometheus", labels: dict[str, str] | None = None
) -> PromAPI:
    """A Prometheus scraping every daemon each second with the committed rules; returns its
    API once every daemon is up. It stops with the fleet's processes."""
    config = prometheus_config(
        fleet.base / f"{name}.yml", fleet.addresses, RULES, interval=INTERVAL
    )
    if labels:
        data = json.loads(config.read_text())
        data["scrape_configs"][0]["static_configs"][0]["labels"] = labels
        config.write_text(json.dumps(data))
    _, url = start_prometheus(fleet.processes, tool("prometheus"), config, fleet.base / name, 60)
    api = PromAPI(url, timeout=10)
    wait_until(
        lambda: len(api.query(f'up{{job="{JOB}"}} == 1')) == fleet.size.daemons,
        "Prometheus to scrape every daemon",
        30,
    )
    return api


def dashboard() -> dict[str, Any]:
    """The committed dashboard."""
    return dict(json.loads(DASHBOARD.read_text()))


@dataclass(frozen=True)
class Query:
    """A dashboard query as the dashboard sends it by default, for a one-second scrape."""

    name: str
    expr: str
    instant: bool


def dashboard_queries(board: dict[str, Any]) -> tuple[list[Query], Macros]:
    """Every panel query, variables at their defaults, macros for the default range."""
    macros = Macros.for_range(dashboard_range(board), seconds(INTERVAL))
    variables = defaults(board)
    queries = [
        Query(q.name, substitute(q.expr, variables, macros), q.instant)
        for q in panel_queries(board)
    ]
    return queries, macros


def variable_selectors(board: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(name, selector, label) of every query variable, with the defaults substituted."""
    macros = Macros.for_range(dashboard_range(board), seconds(INTERVAL))
    variables = defaults(board)
    return [
        (v.name, substitute(v.selector, variables, macros), v.label)
        for v in variable_queries(board)
    ]
