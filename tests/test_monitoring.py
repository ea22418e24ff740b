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

from monitoring.dashboard import MODULE_SET, fleet_dashboard
from monitoring.render import rendered_files
from monitoring.rules import (
    ADVISORY_LINK,
    IN_TARGET,
    PROCESS_IDENTITY,
    TARGET_MATCHER,
    module_shard_matchers,
    rule_groups,
)
from monitoring.settings import DEFAULT_SELECTOR, Settings

REPO = Path(__file__).resolve().parent.parent
CUSTOM = 'job="myapp"'
# The exporter's own metric names: every selector of one must carry the mixin's selector.
EXPORTER_METRIC = re.compile(
    # Not the metric part of a recorded name (job_module_version:module_info:count).
    r"(?<!:)\b(up|build_info|python_info|platform_info|module_info|module_vulnerability_info|"
    r"module_fix_info|target_\w+|python_end_of_life_timestamp_seconds|"
    r"process_start_time_seconds|status_exporter_\w+)"
    r"(\{[^}]*\})?"
)
# The series that carry target="<name>" on a daemon with targets.
PER_TARGET = re.compile(
    r"\b(build_info|python_info|module_info|module_vulnerability_info|module_fix_info|"
    r"python_end_of_life_timestamp_seconds|status_exporter_modules(_skipped|_dropped)?|"
    r"status_exporter_vulnerabilities|target_info|status_exporter_target_errors_total|"
    r"target_modules_info|target_restart_required)\{"
)
# The series that carry an instance label: every one but the fleet-wide recording rules.
# Over the instances of a job: recorded series, or an aggregation by job that has no instance.
FLEET_WIDE = re.compile(r"\bjob(_\w+)?:\w+:\w+\b|\bby \(job, (?![^)]*\binstance\b)[^)]*\)")


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
            [promtool, *args], cwd=tmp_path, capture_output=True, text=True, timeout=240
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


def test_recording_rules_of_per_target_series_group_by_job_and_target():
    """Every aggregation in a rule over per-target series keeps job and target: drift per target."""
    rules = [r for g in rule_groups(Settings()) for r in g["rules"] if "record" in r]
    checked = 0
    for rule in rules:
        if not PER_TARGET.search(rule["expr"]):
            continue
        groupings = re.findall(r"\bby \(([^)]*)\)", rule["expr"])
        assert groupings, rule["record"]
        for grouping in groupings:
            assert {"job", "target"} <= {label.strip() for label in grouping.split(",")}, rule
        checked += 1
    # module_info in each shard, fingerprints, Python versions, commits, vulnerabilities.
    assert checked == len(module_shard_matchers()) + 4


def test_alerts_on_per_target_series_name_the_target():
    """An alert whose series can carry a target says which in its summary; drift runbooks too."""
    groups = rule_groups(Settings())
    recorded = {r["record"] for g in groups for r in g["rules"] if "record" in r}
    alerts = [r for g in groups for r in g["rules"] if "alert" in r]
    per_target = [
        a
        for a in alerts
        if PER_TARGET.search(a["expr"]) or any(name in a["expr"] for name in recorded)
    ]
    assert len(per_target) >= 10
    for alert in per_target:
        assert "$labels.target" in alert["annotations"]["summary"], alert["alert"]
    drift = [a for a in alerts if a["expr"].split(" ")[0] in recorded]
    assert [a["alert"] for a in drift] == [
        "ModuleVersionDrift",
        "ModuleSetDrift",
        "PythonVersionDrift",
        "CommitDrift",
    ]
    for alert in drift:
        assert IN_TARGET in alert["annotations"]["summary"], alert["alert"]
        assert TARGET_MATCHER in alert["annotations"]["runbook"], alert["alert"]


def test_the_unreadable_target_alert_follows_its_setting():
    """StatusExporterTargetUnreadable reads the target error counter for target_unreadable_for."""
    groups = rule_groups(Settings(selector=CUSTOM, target_unreadable_for="42m"))
    (alert,) = [
        r for g in groups for r in g["rules"] if r.get("alert") == "StatusExporterTargetUnreadable"
    ]
    assert alert["expr"] == f"increase(status_exporter_target_errors_total{{{CUSTOM}}}[15m]) > 0"
    assert alert["for"] == "42m"
    assert alert["labels"] == {"severity": "warning"}


def _alerts(settings: Settings) -> dict[str, dict]:
    return {r["alert"]: r for g in rule_groups(settings) for r in g["rules"] if "alert" in r}


def test_every_alert_names_its_instance_and_target_in_summary_and_description():
    """An alert on per-instance series names the instance in both texts, one on per-target
    series the target in both; the alerts over a job's instances (drift, the lower-severity
    findings) name the job, and the target where the series have one."""
    alerts = _alerts(Settings())
    assert len(alerts) >= 17
    for name, alert in alerts.items():
        texts = alert["annotations"]["summary"], alert["annotations"]["description"]
        if FLEET_WIDE.search(alert["expr"]):
            assert all("$labels.job" in t for t in texts), name
            if PER_TARGET.search(alert["expr"]):
                assert all("$labels.target" in t for t in texts), name
            continue
        assert all("$labels.instance" in t for t in texts), name
        if PER_TARGET.search(alert["expr"]):
            assert all("$labels.target" in t for t in texts), name


def test_vulnerability_alerts_render_module_version_fix_and_advisory_link():
    """Each finding's alert says module, version, fixed version and OSV's link to its id."""
    findings = {n: a for n, a in _alerts(Settings()).items() if "module_vulnerability" in a["expr"]}
    assert set(findings) == {
        "ModuleVulnerabilityCritical",
        "ModuleVulnerabilityHigh",
        "ModuleVulnerability",
    }
    for name, alert in findings.items():
        description = alert["annotations"]["description"]
        for needle in ("$labels.module", "$labels.version", "$labels.fixed", ADVISORY_LINK):
            assert needle in description, (name, needle)
        assert "$labels.id" in alert["annotations"]["summary"], name


def test_the_restart_alert_follows_its_setting_and_joins_the_identity():
    """PythonRestartRequired reads target_restart_required for restart_required_for and
    copies target_info's unit, namespace, pod and container, keeping targets without one."""
    alert = _alerts(Settings(selector=CUSTOM, restart_required_for="7m"))["PythonRestartRequired"]
    stale = f"(target_restart_required{{{CUSTOM}}} == 1)"
    assert alert["expr"] == (
        f"{stale} * on (job, instance, target) group_left (unit, namespace, pod, container) "
        f"target_info{{{CUSTOM}}} or on (job, instance, target) {stale}"
    )
    assert PROCESS_IDENTITY == ("unit", "namespace", "pod", "container")
    assert alert["for"] == "7m"
    assert alert["labels"] == {"severity": "warning"}
    assert "7m" in alert["annotations"]["description"]
    assert Settings().restart_required_for == "15m"


def test_module_set_drift_yields_to_module_drift():
    """ModuleSetDrift fires on differing fingerprints only where no module has two versions."""
    alert = _alerts(Settings(module_set_drift_for="3h"))["ModuleSetDrift"]
    assert alert["expr"] == (
        "job:module_fingerprints:count > 1 "
        "unless on (job, target) job_module:module_versions:count > 1"
    )
    assert alert["for"] == "3h"
    recorded = {
        r["record"]: r["expr"] for g in rule_groups(Settings()) for r in g["rules"] if "record" in r
    }
    assert recorded["job:module_fingerprints:count"] == (
        "count by (job, target) "
        '(count by (job, target, fingerprint) (target_modules_info{job="python-status"}))'
    )


def test_the_drift_panels_read_the_recorded_drift_series():
    """The drifting-modules table and stat read the recorded versions per module and, for
    unpublished modules, the recorded fingerprints (rows labelled as a module set); never
    module_info, which has a series per module of every instance."""
    panels = [p for p in fleet_dashboard(Settings())["panels"] if p["title"] == "Drifting modules"]
    assert sorted(p["type"] for p in panels) == ["stat", "table"]
    for panel in panels:
        (target,) = panel["targets"]
        assert "job_module:module_versions:count{" in target["expr"], panel["type"]
        assert "job:module_fingerprints:count{" in target["expr"], panel["type"]
        assert not re.search(r"(?<!:)\bmodule_info\b", target["expr"]), panel["type"]
        assert f'"module", "{MODULE_SET}"' in target["expr"], panel["type"]


def test_only_the_shards_read_module_info():
    """module_info, the largest series set, is read once per evaluation, in shards: one rule
    per shard group records instances per job, target, module and version; nothing in the
    dashboard reads it but the module variable (series metadata, not samples)."""
    groups = rule_groups(Settings())
    readers = [
        (g["name"], r.get("record") or r.get("alert"))
        for g in groups
        for r in g["rules"]
        if re.search(r"(?<!:)\bmodule_info\b", r["expr"])
    ]
    shards = [g for g in groups if g["name"].startswith("status-exporter.modules-")]
    assert len(shards) == len(module_shard_matchers()) >= 2
    assert readers == [(g["name"], "job_module_version:module_info:count") for g in shards]
    for group in shards:
        assert [r["record"] for r in group["rules"]] == ["job_module_version:module_info:count"]
        (matcher,) = {
            re.search(r"module[!=]~\"[^\"]+\"", r["expr"]).group(0) for r in group["rules"]
        }
        assert matcher in module_shard_matchers()
    dashboard = fleet_dashboard(Settings())
    panels = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert not [e for e in panels if re.search(r"(?<!:)\bmodule_info\b", e)]


@pytest.mark.parametrize(
    "module",
    [
        "django", "requests", "pyyaml", "numpy", "six", "urllib3", "package-00042", "aiohttp",
        "zope-interface", "x", "0", "foo-", "Upper", "name.with.dots", "naïve", "ends-in-é",
    ],
)  # fmt: skip
def test_each_module_is_in_exactly_one_shard(module):
    """Every module name, canonical or not, is read by one shard and one only (the last
    shard takes what the others do not match). RE2's full-match semantics, as Python's
    fullmatch for these classes. A module label is never empty (Prometheus drops an empty
    label) and never holds a control character (the exporter refuses the name)."""
    assert all("!~" not in m for m in module_shard_matchers())  # see module_shard_matchers
    hits = [m for m in module_shard_matchers() if re.fullmatch(m.split('"')[1], module)]
    assert len(hits) == 1, hits
