"""End to end: three exporters scraped by a real Prometheus with the repository's rules.

Runs Debian's prometheus binary on 127.0.0.1 with free ports; mandatory in CI
(STATUS_EXPORTER_REQUIRE_TOOLS=1). Every wait is bounded.
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from support import Daemon, FakeEnvironment, free_port, tool, wait_until

REPO = Path(__file__).resolve().parent.parent
JOB = "python-status"
# Grafana variables as "All" selects them, and its interval macros.
GRAFANA_SUBSTITUTIONS = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "5m",
    "$job": ".+",
    "$instance": ".+",
    "$module": ".+",
}


@dataclass
class Fleet:
    """Three exporters, their environments, and the Prometheus scraping them."""

    envs: list[FakeEnvironment]
    daemons: list[Daemon]
    api: str

    def instance(self, index: int) -> str:
        """The host:port of exporter ``index``."""
        return self.daemons[index].address

    def query(self, expr: str) -> list[dict]:
        """An instant query; fails on a PromQL error."""
        url = f"{self.api}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{expr!r}: {error.read().decode()}") from None
        assert body["status"] == "success", body
        return body["data"]["result"]

    def series(self, match: str) -> list[dict]:
        """The label sets of series matching ``match``."""
        url = f"{self.api}/api/v1/series?" + urllib.parse.urlencode({"match[]": match})
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)["data"]

    def alerts(self) -> list[dict]:
        """Alerts pending or firing now."""
        with urllib.request.urlopen(f"{self.api}/api/v1/alerts", timeout=10) as response:
            return json.load(response)["data"]["alerts"]

    def wait_for(self, check, what: str, timeout: float = 30.0):
        """Retry ``check`` until it returns something truthy; fail after ``timeout`` s."""
        return wait_until(check, what, timeout)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    prometheus = tool("prometheus")
    base = tmp_path_factory.mktemp("fleet")
    layouts = [("4.2.1", "aaaaaaa"), ("4.2.1", "aaaaaaa"), ("3.2.0", "bbbbbbb")]
    envs, daemons = [], []
    server = None
    try:
        for index, (django, commit) in enumerate(layouts):
            env = FakeEnvironment(base / f"env{index}")
            env.install("Django", django)
            env.install("requests", "2.31.0")
            config = base / f"exporter{index}.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "modules": {"paths": [str(env.path)]},
                        "commit": {"value": commit},
                        "app": {"version": "1.0.0"},
                        "refresh": {"interval_seconds": 0.5},
                    }
                )
            )
            envs.append(env)
            daemons.append(Daemon(config))
        port = free_port()
        prom_config = base / "prometheus.yml"
        prom_config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(REPO / "prometheus" / "rules.yml")],
                    "scrape_configs": [
                        {
                            "job_name": JOB,
                            "static_configs": [{"targets": [d.address for d in daemons]}],
                        }
                    ],
                }
            )
        )
        server = subprocess.Popen(
            [
                prometheus,
                f"--config.file={prom_config}",
                f"--storage.tsdb.path={base / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        fleet = Fleet(envs, daemons, f"http://127.0.0.1:{port}")

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"{fleet.api}/-/ready", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return server.poll() is not None  # exited: stop waiting, fail below

        fleet.wait_for(ready, "Prometheus to start")
        assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
        fleet.wait_for(
            lambda: len([r for r in fleet.query(f'up{{job="{JOB}"}} == 1')]) == 3,
            "all three targets up",
        )
        yield fleet
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        for daemon in daemons:
            daemon.stop()
            daemon.__exit__()


def by_instance(results: list[dict]) -> dict[str, dict[str, str]]:
    return {r["metric"]["instance"]: r["metric"] for r in results}


def test_every_target_is_up(fleet):
    """Prometheus scrapes all three exporters successfully."""
    results = fleet.query(f'up{{job="{JOB}"}}')
    assert {r["metric"]["instance"] for r in results} == {d.address for d in fleet.daemons}
    assert all(r["value"][1] == "1" for r in results)


def test_info_metrics_arrive_with_their_labels(fleet):
    """build_info, python_info, platform_info and module_info carry the expected labels."""
    build = by_instance(fleet.query("build_info"))
    assert build[fleet.instance(0)]["commit"] == "aaaaaaa"
    assert build[fleet.instance(2)]["commit"] == "bbbbbbb"
    assert {b["version"] for b in build.values()} == {"1.0.0"}
    assert {b["api_version"] for b in build.values()} == {"1"}
    python = by_instance(fleet.query("python_info"))
    assert {p["version"] for p in python.values()} == {platform.python_version()}
    assert {p["implementation"] for p in python.values()} == {platform.python_implementation()}
    plat = by_instance(fleet.query("platform_info"))
    assert {p["system"] for p in plat.values()} == {platform.system()}
    assert {p["machine"] for p in plat.values()} == {platform.machine()}
    django = by_instance(fleet.query('module_info{module="django"}'))
    assert {i: m["version"] for i, m in django.items()} == {
        fleet.instance(0): "4.2.1",
        fleet.instance(1): "4.2.1",
        fleet.instance(2): "3.2.0",
    }
    assert len(fleet.query('module_info{module="requests", version="2.31.0"}')) == 3


def test_drift_rules_see_the_module_that_differs(fleet):
    """The recording rule counts two django versions and one requests; drift alerts go pending."""

    def versions() -> dict[str, str]:
        results = fleet.query("job_module:module_versions:count")
        return {r["metric"]["module"]: r["value"][1] for r in results}

    # The first evaluations may predate some targets' first scrape: wait for the settled value.
    expected = {"django": "2", "requests": "1"}
    fleet.wait_for(lambda: versions() == expected, f"the recording rule to give {expected}")

    def pending() -> set[tuple[str, str]]:
        return {(a["labels"]["alertname"], a["labels"].get("module", "")) for a in fleet.alerts()}

    found = fleet.wait_for(
        lambda: (
            pending()
            if {("ModuleVersionDrift", "django"), ("CommitDrift", "")} <= pending()
            else None
        ),
        "drift alerts",
    )
    assert ("ModuleVersionDrift", "requests") not in found
    assert ("PythonVersionDrift", "") not in found
    assert ("StatusExporterDown", "") not in found


def test_every_dashboard_query_parses_and_returns_data(fleet):
    """Each PromQL expression of the Grafana dashboard, with variables substituted, has data."""
    dashboard = json.loads((REPO / "grafana/dashboards/python-fleet.json").read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(expressions) >= 10
    for expr in expressions:
        substituted = substitute(expr)
        # increase() needs two samples inside the window; wait for them where needed.
        results = fleet.wait_for(lambda e=substituted: fleet.query(e), f"data for {expr}")
        assert results, expr
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["definition"])
        assert match, variable["definition"]
        selector, label = substitute(match.group(1)), match.group(2)
        values = {s[label] for s in fleet.series(selector) if label in s}
        assert values, variable["name"]


def test_every_rule_and_readme_query_evaluates(fleet):
    """Every expression in rules.yml and in the README's PromQL examples is valid PromQL."""
    rules = yaml.safe_load((REPO / "prometheus/rules.yml").read_text())
    expressions = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    readme = (REPO / "README.md").read_text()
    for block in re.findall(r"```promql\n(.*?)```", readme, re.S):
        expressions += [
            line for line in block.splitlines() if line.strip() and not line.startswith("#")
        ]
    assert len(expressions) > 12
    for expr in expressions:
        fleet.query(expr)
    recorded = [r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r]
    for name in recorded:
        assert fleet.wait_for(lambda n=name: fleet.query(n), name)


def test_a_changed_environment_replaces_its_series(fleet):
    """After an upgrade on one host, Prometheus sees the new version and the old series is stale."""
    env, instance = fleet.envs[2], fleet.instance(2)
    env.upgrade("Django", "4.2.1")
    env.install("flask", "3.0.0")

    def current() -> set[str]:
        results = fleet.query(f'module_info{{instance="{instance}", module="django"}}')
        return {r["metric"]["version"] for r in results}

    fleet.wait_for(lambda: current() == {"4.2.1"}, "the upgrade to show in Prometheus")
    assert fleet.query('module_info{version="3.2.0"}') == []
    assert fleet.wait_for(
        lambda: fleet.query(f'module_info{{instance="{instance}", module="flask"}}'), "flask"
    )
    fleet.wait_for(
        lambda: fleet.query('job_module:module_versions:count{module="django"} == 1'),
        "the drift to clear",
    )
    changes = fleet.wait_for(
        lambda: fleet.query(
            f'status_exporter_module_changes_total{{instance="{instance}", change="upgraded"}} > 0'
        ),
        "the upgrade to be counted",
    )
    assert changes[0]["value"][1] == "1"


def substitute(expr: str) -> str:
    """Replace Grafana's variables and macros with what 'All' and a short range give."""
    for name in sorted(GRAFANA_SUBSTITUTIONS, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_SUBSTITUTIONS[name])
    return expr
