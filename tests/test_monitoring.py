"""The monitoring mixin: committed files are its output, and any selector gives working rules."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support import tool

from monitoring.dashboard import fleet_dashboard
from monitoring.render import rendered_files
from monitoring.rules import rule_groups
from monitoring.settings import DEFAULT_SELECTOR, Settings

REPO = Path(__file__).resolve().parent.parent
CUSTOM = 'job="myapp"'
# The exporter's own metric names: every selector of one must carry the mixin's selector.
EXPORTER_METRIC = re.compile(
    r"\b(up|build_info|python_info|platform_info|module_info|module_vulnerability_info|"
    r"python_end_of_life_timestamp_seconds|process_start_time_seconds|status_exporter_\w+)"
    r"(\{[^}]*\})?"
)


def test_committed_files_are_what_the_mixin_generates():
    """prometheus/rules.yml, the dashboard and the PrometheusRule match monitoring/ exactly."""
    done = subprocess.run(
        [sys.executable, "-m", "monitoring", "--check"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_make_monitoring_writes_the_files_for_a_selector(tmp_path):
    """make monitoring SELECTOR=... OUT=... writes rules, PrometheusRule and dashboards there."""
    make = shutil.which("make") or pytest.fail("make is needed")
    done = subprocess.run(
        [make, "-s", "monitoring", f"SELECTOR={CUSTOM}", f"OUT={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()} == {
        "rules.yml",
        "prometheusrule.yaml",
        "dashboards/python-fleet.json",
    }
    for path in tmp_path.rglob("*.*"):
        text = path.read_text()
        assert "python-status" not in text, path
        assert "myapp" in text, path


def expressions(settings: Settings) -> list[str]:
    """Every PromQL expression the mixin ships: rules, panel targets, variable queries."""
    exprs = [r["expr"] for g in rule_groups(settings) for r in g["rules"]]
    dashboard = fleet_dashboard(settings)
    exprs += [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs


@pytest.mark.parametrize("selector", [DEFAULT_SELECTOR, CUSTOM, 'namespace="prod", app="web"'])
def test_every_query_of_an_exporter_metric_uses_the_selector(selector):
    """No rule, panel or variable reads an exporter metric without the configured selector."""
    settings = Settings(selector=selector)
    checked = 0
    for expr in expressions(settings):
        for match in EXPORTER_METRIC.finditer(expr):
            matchers = match.group(2) or ""
            assert selector in matchers, (match.group(0), expr)
            checked += 1
    assert checked > 30


@pytest.mark.needs_promtool
@pytest.mark.parametrize("selector", [DEFAULT_SELECTOR, CUSTOM])
def test_generated_rules_pass_promtool(tmp_path, selector):
    """promtool checks both rule files and runs the unit tests against each selector's rules."""
    promtool = tool("promtool")
    files = rendered_files(Settings(selector=selector), tmp_path, committed=False)
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    operator_rule = yaml.safe_load((tmp_path / "prometheusrule.yaml").read_text())
    (tmp_path / "operator-groups.yml").write_text(yaml.safe_dump(operator_rule["spec"]))
    job = selector.split('"')[1]
    tests = (REPO / "prometheus" / "rules.test.yml").read_text().replace("python-status", job)
    (tmp_path / "rules.test.yml").write_text(tests)
    for args in (
        ["check", "rules", "rules.yml"],
        ["check", "rules", "operator-groups.yml"],
        ["test", "rules", "rules.test.yml"],
    ):
        done = subprocess.run(
            [promtool, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, (args, done.stdout + done.stderr)
        assert "SUCCESS" in done.stdout + done.stderr


def test_prometheus_rule_is_an_operator_resource_with_the_same_groups():
    """The PrometheusRule names the Operator's API and carries exactly rules.yml's groups."""
    operator_rule = yaml.safe_load(
        (REPO / "deploy/kubernetes/base/prometheusrule.yaml").read_text()
    )
    assert operator_rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert operator_rule["kind"] == "PrometheusRule"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", operator_rule["metadata"]["name"])
    rules = yaml.safe_load((REPO / "prometheus/rules.yml").read_text())
    assert operator_rule["spec"]["groups"] == rules["groups"]
    kustomization = yaml.safe_load((REPO / "deploy/kubernetes/base/kustomization.yaml").read_text())
    assert "prometheusrule.yaml" in kustomization["resources"]


def test_dashboard_settings_are_applied():
    """Title, uid and refresh come from the settings; panel ids are unique."""
    dashboard = fleet_dashboard(
        Settings(dashboard_title="T", dashboard_uid="u1", dashboard_refresh="5m")
    )
    assert (dashboard["title"], dashboard["uid"], dashboard["refresh"]) == ("T", "u1", "5m")
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    json.dumps(dashboard)  # serialisable as it is
