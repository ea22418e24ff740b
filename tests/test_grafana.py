"""The Grafana dashboard and provisioning: structure, and only metrics the exporter serves."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from support import (
    FakeEnvironment,
    env_config,
    tool,
    wait_until,
)

from bench.fleet_parts import Processes, prometheus_config, start_prometheus
from bench.fleet_queries import PromAPI, QueryError
from monitoring.dashboard import fleet_dashboard
from monitoring.render import rendered_files
from monitoring.rules import rule_groups
from monitoring.settings import Settings

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "grafana" / "dashboards" / "python-fleet.json"
PROMQL_FUNCTIONS = {
    "sum",
    "count",
    "max",
    "min",
    "time",
    "increase",
    "label_replace",
    "label_join",
    "vector",
    "by",
}
# Series that carry target="<name>" on a daemon with targets (the metric contract of
# "a host and its targets"); the other series of the exporter are once per daemon.
PER_TARGET = {
    "build_info",
    "python_info",
    "module_info",
    "module_vulnerability_info",
    "module_fix_info",
    "python_end_of_life_timestamp_seconds",
    "status_exporter_modules",
    "status_exporter_modules_skipped",
    "status_exporter_modules_dropped",
    "status_exporter_vulnerabilities",
    "target_info",
    "status_exporter_target_errors_total",
    "target_modules_info",
    "target_restart_required",
}
# Recorded by the mixin's rules, per job and target: the drift and module panels read them.
RECORDED = {r["record"] for g in rule_groups(Settings()) for r in g["rules"] if "record" in r}
PER_TARGET |= RECORDED - {"job:status_exporter_up:sum"}
# Published only for discovered targets (targets.discover), which these daemons do not use.
DISCOVERY_ONLY = {"target_restart_required"}
SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}")
TARGET_FILTER = 'target=~"$target"'


def load_dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panel_queries(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, expression) of every panel target."""
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]


def test_dashboard_has_the_fleet_panels_and_variables():
    """The fleet and target tables, module matrix and table, drift and health panels exist."""
    dashboard = load_dashboard()
    titles = {p["title"] for p in dashboard["panels"]}
    assert {
        "Instances",
        "Targets",
        "Module versions by target",
        "Modules by target",
        "Drifting modules",
        "Modules per instance",
        "Refresh duration",
        "Refresh errors",
        "Target read errors",
        "Instances with critical or high vulnerabilities",
        "Vulnerabilities by instance and severity",
        "Vulnerable modules",
        "Upgrades that fix every known vulnerability",
        "Python end of life",
    } <= titles
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert list(variables) == ["datasource", "job", "instance", "target", "module"]
    assert variables["datasource"]["type"] == "datasource"
    matrix = next(p for p in dashboard["panels"] if p["title"] == "Module versions by target")
    assert matrix["transformations"][0]["id"] == "groupingToMatrix"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_the_target_variable_lists_targets_and_its_all_matches_no_target():
    """$target comes from target_info, is multi with All, and All is .* (matches no label too)."""
    variables = {v["name"]: v for v in load_dashboard()["templating"]["list"]}
    target = variables["target"]
    assert re.fullmatch(r"label_values\(target_info\{[^}]*\}, target\)", target["definition"])
    assert target["query"]["query"] == target["definition"]
    assert (target["multi"], target["includeAll"], target["allValue"]) == (True, True, ".*")
    assert TARGET_FILTER in variables["module"]["definition"]


def test_the_module_table_has_module_version_target_and_instances():
    """The module x version x target table shows those columns and the number of instances,
    in that order, from the recorded series (not module_info: a row per instance is too many
    at fleet scale)."""
    panel = next(p for p in load_dashboard()["panels"] if p["title"] == "Modules by target")
    (target,) = panel["targets"]
    assert (target["format"], target["instant"]) == ("table", True)
    assert "by (module, version, target) (job_module_version:module_info:count{" in target["expr"]
    organize = panel["transformations"][0]["options"]
    assert organize["indexByName"] == {"module": 0, "version": 1, "target": 2, "instances": 3}
    assert organize["excludeByName"] == {"Time": True}
    assert organize["renameByName"] == {"Value": "instances"}


def test_every_panel_uses_the_datasource_variable_and_the_filters():
    """Each query goes to ${datasource} and honours the job and instance variables."""
    for panel in load_dashboard()["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert '$job"' in target["expr"], (panel["title"], target["expr"])
            assert '$instance"' in target["expr"], (panel["title"], target["expr"])


def test_per_target_series_are_filtered_by_target_and_daemon_series_are_not():
    """Every per-target series a panel reads has target=~"$target"; a daemon's own never has."""
    per_target = daemon = 0
    for title, expr in panel_queries(load_dashboard()):
        for name, matchers in SELECTOR.findall(expr):
            if name in PER_TARGET:
                assert TARGET_FILTER in matchers, (title, expr)
                per_target += 1
            else:
                # A daemon's own series has no target: a filter would hide it for one target.
                assert "target" not in matchers, (title, expr)
                daemon += 1
    assert (per_target >= 15, daemon >= 10) == (True, True), (per_target, daemon)


async def test_dashboard_uses_only_metrics_the_exporter_serves(fake_env, start_client, tmp_path):
    """Every metric name in the dashboard is served by an exporter with or without targets."""
    fake_env.install("django", "4.2.1")
    fake_env.install("evil-pkg", "1.0.0")
    worker = FakeEnvironment(tmp_path / "worker")
    worker.install("aiohttp", "3.7.3")
    advisories = {"paths": [str(REPO / "tests" / "data" / "osv")]}
    targets = {
        "environments": [
            {"name": "web", "paths": [str(fake_env.path)]},
            {"name": "worker", "paths": [str(worker.path)]},
        ]
    }
    served = {"up"}
    for config in (
        env_config(fake_env, advisories=advisories),
        env_config(fake_env, advisories=advisories, targets=targets),
    ):
        client = await start_client(config)
        text = await (await client.get("/metrics")).text()
        served |= set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, re.M))
    dashboard = load_dashboard()
    queries = [expr for _, expr in panel_queries(dashboard)]
    queries += [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    used = set()
    for query in queries:
        used |= set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", query))
    assert {"target_info", "status_exporter_target_errors_total", "module_fix_info"} <= used
    assert used - PROMQL_FUNCTIONS - DISCOVERY_ONLY - RECORDED <= served, used - served


def test_provisioning_points_at_the_dashboards_and_prometheus():
    """Provisioning loads the dashboards folder, and the datasource is the compose Prometheus."""
    provider = yaml.safe_load(
        (REPO / "grafana/provisioning/dashboards/status-exporter.yml").read_text()
    )
    path = provider["providers"][0]["options"]["path"]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    grafana_volumes = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{path}:ro" in grafana_volumes
    datasource = yaml.safe_load(
        (REPO / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert "prometheus" in compose["services"]


# The dashboard against a real Prometheus, over expositions written from the metric contract:
# hosts a and b report targets web and worker (web's django differs between them, worker's
# does not); host c is a daemon without targets, whose series have no target label.
JOB = "fleet"
MODULES = {
    ("a", "web"): {"django": "4.2.1", "requests": "2.31.0"},
    ("a", "worker"): {"django": "3.2.0", "requests": "2.28.0"},
    ("b", "web"): {"django": "3.2.0", "requests": "2.31.0"},
    ("b", "worker"): {"django": "3.2.0", "requests": "2.28.0"},
    ("c", ""): {"django": "4.2.1", "requests": "2.31.0"},
}


def exposition(host: str, scrapes: int) -> str:
    """What host ``host`` serves on its ``scrapes``-th scrape; a's worker cannot be read."""
    now = time.time()
    targets = [t for h, t in MODULES if h == host]
    lines = [
        f'platform_info{{machine="x86_64",node="{host}",release="6.1.0",system="Linux"}} 1',
        'status_exporter_build_info{version="3.0.0"} 1',
        f"process_start_time_seconds {now - 100}",
        f"status_exporter_last_refresh_timestamp_seconds {now}",
        "status_exporter_refresh_interval_seconds 60",
        "status_exporter_refresh_duration_seconds 0.01",
        "status_exporter_refresh_errors_total 0",
        'status_exporter_module_changes_total{change="upgraded"} 0',
        f"status_exporter_advisories_newest_timestamp_seconds {now - 86400}",
        f"status_exporter_advisories_load_timestamp_seconds {now}",
        "status_exporter_advisories_load_errors_total 0",
    ]
    if targets != [""]:
        lines.append(f"status_exporter_targets {len(targets)}")
    for target in targets:
        t = f'target="{target}",' if target else ""
        alone = f'{{target="{target}"}}' if target else ""
        modules = MODULES[host, target]
        lines += [
            f'build_info{{{t}api_version="1",commit="{host}{target}",version="2.0"}} 1',
            f'python_info{{{t}implementation="CPython",major="3",minor="11",patchlevel="7",'
            'version="3.11.7"} 1',
            f'python_end_of_life_timestamp_seconds{{{t}version="3.11"}} 1824854400',
            f"status_exporter_modules{alone} {len(modules)}",
            f"status_exporter_modules_skipped{alone} 0",
            f"status_exporter_modules_dropped{alone} 0",
        ]
        lines += [f'module_info{{{t}module="{m}",version="{v}"}} 1' for m, v in modules.items()]
        fingerprint = ",".join(f"{m}={v}" for m, v in sorted(modules.items()))
        lines.append(f'target_modules_info{{{t}fingerprint="{fingerprint}"}} 1')
        if modules["django"] == "3.2.0":
            lines += [
                f'status_exporter_vulnerabilities{{{t}severity="high"}} 1',
                f'module_vulnerability_info{{{t}module="django",version="3.2.0",'
                'id="PYSEC-2021-7",aliases="",severity="high",fixed="3.2.1"} 1',
                f'module_fix_info{{{t}module="django",version="3.2.0",fixed="3.2.1",'
                'severity="high"} 1',
            ]
        if target:
            errors = scrapes if (host, target) == ("a", "worker") else 0
            lines += [
                f'target_info{{target="{target}",kind="environment",path="/srv/{target}"}} 1',
                f'status_exporter_target_errors_total{{target="{target}"}} {errors}',
            ]
    return "\n".join(lines) + "\n"


@dataclass
class Prometheus:
    """A Prometheus scraping the three hosts, and each host's address."""

    api: str
    instances: dict[str, str]

    def query(self, expr: str) -> list[dict]:
        """An instant query; fails on a PromQL error."""
        return PromAPI(self.api).query(expr)

    def series(self, match: str) -> list[dict[str, str]]:
        """The label sets of the series matching ``match``."""
        return PromAPI(self.api).series(match, 0, time.time())

    def host(self, instance: str) -> str:
        """The host name (a, b, c) of a scraped instance."""
        return next(h for h, i in self.instances.items() if i == instance)


def _serve(host: str) -> ThreadingHTTPServer:
    scrapes = 0

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            nonlocal scrapes
            scrapes += 1
            body = exposition(host, scrapes).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory) -> Iterator[Prometheus]:
    binary = tool("prometheus")
    base = tmp_path_factory.mktemp("targets")
    servers = {host: _serve(host) for host in ("a", "b", "c")}
    instances = {h: f"127.0.0.1:{s.server_address[1]}" for h, s in servers.items()}
    # The mixin's rules for the job: the drift and module panels read recorded series.
    for path, text in rendered_files(
        Settings(selector=f'job="{JOB}"'), base, committed=False
    ).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    config = prometheus_config(
        base / "prometheus.yml",
        list(instances.values()),
        base / "rules.yml",
        interval="1s",
        job=JOB,
    )
    processes = Processes(base / "logs")
    try:
        process, url = start_prometheus(processes, binary, config, base / "data", 30)
        server = Prometheus(url, instances)

        def scraped_twice() -> bool:
            if process.popen.poll() is not None:
                raise AssertionError(f"prometheus exited with {process.popen.returncode}")
            try:
                # Two samples of every host: increase() over a window has data.
                expr = f'count_over_time(up{{job="{JOB}"}}[1m]) > 1'
                # Every module version recorded twice, by every shard's group (each
                # evaluates at its own offset): as many as module_info has.
                recorded = server.query(
                    "count(count_over_time(job_module_version:module_info:count[1m]) > 1)"
                )
                versions = server.query(
                    f'count(count by (job, target, module, version) (module_info{{job="{JOB}"}}))'
                )
                return (
                    len(server.query(expr)) == len(instances)
                    and bool(recorded)
                    and bool(versions)
                    and recorded[0]["value"][1] == versions[0]["value"][1]
                )
            except (OSError, AssertionError, QueryError):
                return False

        wait_until(scraped_twice, "Prometheus to scrape every host twice", 30)
        yield server
    finally:
        processes.stop_all()
        for s in servers.values():
            s.shutdown()
            s.server_close()


# "All" for $target: the value the generated dashboard tells Grafana to send for it.
ALL = "$__all"


def substitute(expr: str, target: str) -> str:
    """Grafana's variables as All gives them (``$target`` as given), and interval macros."""
    if target == ALL:
        variables = generated_dashboard()["templating"]["list"]
        target = next(v["allValue"] for v in variables if v["name"] == "target")
    values = {
        "$__rate_interval": "1m",
        "$__range": "5m",
        "$job": ".+",
        "$instance": ".+",
        "$module": ".+",
        "$target": target,
    }
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(name, values[name])
    return expr


def generated_dashboard() -> dict:
    return fleet_dashboard(Settings(selector=f'job="{JOB}"'))


def panel_query(title: str, kind: str = "table") -> str:
    """The one query of the generated dashboard's panel ``title`` of type ``kind``."""
    (expr,) = [
        t["expr"]
        for p in generated_dashboard()["panels"]
        if (p["title"], p["type"]) == (title, kind)
        for t in p["targets"]
    ]
    return expr


def rows(results: list[dict], *labels: str) -> set[tuple[str, ...]]:
    """The values of ``labels`` (empty when absent) of each result."""
    return {tuple(r["metric"].get(label, "") for label in labels) for r in results}


@pytest.mark.parametrize("target", [ALL, "web", "(web|worker)"])
def test_every_dashboard_query_has_data_for_hosts_with_and_without_targets(prometheus, target):
    """Each panel query returns data from a real Prometheus, with All or some targets chosen."""
    queries = panel_queries(generated_dashboard())
    assert len(queries) >= 20
    for title, expr in queries:
        substituted = substitute(expr, target)
        results = wait_until(
            lambda e=substituted: prometheus.query(e), f"data for {title}: {substituted}", 10
        )
        assert results, (title, expr)


def _module_table(
    prometheus: Prometheus, target: str, instance: str = ".+"
) -> set[tuple[str, ...]]:
    """(module, version, target, instances) rows of the module table for ``$target``."""
    expr = substitute(panel_query("Modules by target").replace("$instance", instance), target)
    columns = ("module", "version", "target")
    return {
        (*(r["metric"].get(c, "") for c in columns), r["value"][1]) for r in prometheus.query(expr)
    }


def test_all_targets_include_the_daemons_without_targets(prometheus):
    """With All, the module table lists every target's modules and versions, and the
    target-less host's, with the number of instances running each."""
    expected: dict[tuple[str, str, str], int] = {}
    for (_, target), modules in MODULES.items():
        for module, version in modules.items():
            key = (module, version, target)
            expected[key] = expected.get(key, 0) + 1
    assert _module_table(prometheus, ALL) == {(*k, str(n)) for k, n in expected.items()}
    assert ("django", "4.2.1", "", "1") in _module_table(prometheus, ALL)


def test_choosing_a_target_shows_only_its_series(prometheus):
    """With $target=web, per-target panels show web on a and b, and not c or worker."""
    assert _module_table(prometheus, "web") == {
        ("django", "4.2.1", "web", "1"),
        ("django", "3.2.0", "web", "1"),
        ("requests", "2.31.0", "web", "2"),
    }
    up = prometheus.query(substitute(panel_query("Instances up", "stat"), "web"))
    assert up[0]["value"][1] == "3"  # a daemon's own series: not filtered by target


def test_choosing_an_instance_shows_its_targets(prometheus):
    """The module panels read recorded series of job and target: $instance picks the targets
    that run on the chosen instances (counted over all of the job's instances)."""
    c = prometheus.instances["c"]
    assert _module_table(prometheus, ALL, c) == {
        ("django", "4.2.1", "", "1"),
        ("requests", "2.31.0", "", "1"),
    }
    a = prometheus.instances["a"]
    assert {row[2] for row in _module_table(prometheus, ALL, a)} == {"web", "worker"}


def test_drift_is_per_target_across_hosts(prometheus):
    """Drifting modules: web's django differs between a and b; web and worker on a host do not."""
    table = prometheus.query(substitute(panel_query("Drifting modules"), ALL))
    assert rows(table, "job", "target", "module") == {(JOB, "web", "django")}
    assert table[0]["value"][1] == "2"
    stat = prometheus.query(substitute(panel_query("Drifting modules", "stat"), ALL))
    assert stat[0]["value"][1] == "1"


def test_the_version_matrix_has_a_column_per_target(prometheus):
    """Matrix columns are the targets (empty for a daemon without any), cells the number of
    versions: web's django is in 2, everything else in 1."""
    results = prometheus.query(substitute(panel_query("Module versions by target"), ALL))
    cells = {(r["metric"]["module"], r["metric"].get("target", "")): r["value"][1] for r in results}
    assert cells == {
        ("django", "web"): "2",
        ("django", "worker"): "1",
        ("django", ""): "1",
        ("requests", "web"): "1",
        ("requests", "worker"): "1",
        ("requests", ""): "1",
    }


def test_the_target_variable_lists_the_targets(prometheus):
    """label_values(target_info{...}, target) gives web and worker; c reports none."""
    variables = {v["name"]: v for v in generated_dashboard()["templating"]["list"]}
    match = re.fullmatch(r"label_values\((.+), (\w+)\)", variables["target"]["definition"])
    assert match
    found = prometheus.series(substitute(match.group(1), ALL))
    assert {s[match.group(2)] for s in found} == {"web", "worker"}
    assert {prometheus.host(s["instance"]) for s in found} == {"a", "b"}


def test_target_read_errors_show_the_target_that_fails(prometheus):
    """The target read errors panel shows a's worker increasing, the other targets at 0."""
    expr = substitute(panel_query("Target read errors", "timeseries"), ALL)

    def failing() -> set[tuple[str, str]]:
        return {
            (prometheus.host(r["metric"]["instance"]), r["metric"]["target"])
            for r in prometheus.query(expr)
            if float(r["value"][1]) > 0
        }

    assert wait_until(failing, "a's worker to fail", 10) == {("a", "worker")}
