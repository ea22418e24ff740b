"""The Grafana dashboard and provisioning: structure, and only metrics the exporter serves."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from support import env_config

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
    "vector",
    "by",
}


def load_dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_dashboard_has_the_fleet_panels_and_variables():
    """The fleet table, module matrix, drift list and health panels exist, with variables."""
    dashboard = load_dashboard()
    titles = {p["title"] for p in dashboard["panels"]}
    assert {
        "Instances",
        "Module versions by instance",
        "Drifting modules",
        "Modules per instance",
        "Refresh duration",
        "Refresh errors",
        "Instances with critical or high vulnerabilities",
        "Vulnerabilities by instance and severity",
        "Vulnerable modules",
        "Python end of life",
    } <= titles
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) == {"datasource", "job", "instance", "module"}
    assert variables["datasource"]["type"] == "datasource"
    matrix = next(p for p in dashboard["panels"] if p["title"] == "Module versions by instance")
    assert matrix["transformations"][0]["id"] == "groupingToMatrix"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


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


async def test_dashboard_uses_only_metrics_the_exporter_serves(fake_env, start_client):
    """Every metric name in the dashboard is served by the exporter, or is Prometheus's up."""
    fake_env.install("django", "4.2.1")
    fake_env.install("evil-pkg", "1.0.0")
    osv = REPO / "tests" / "data" / "osv"
    client = await start_client(env_config(fake_env, advisories={"paths": [str(osv)]}))
    text = await (await client.get("/metrics")).text()
    served = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, re.M)) | {"up"}
    dashboard = load_dashboard()
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    queries += [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    used = set()
    for query in queries:
        used |= set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", query))
    assert used
    assert used - PROMQL_FUNCTIONS <= served, used - served


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
