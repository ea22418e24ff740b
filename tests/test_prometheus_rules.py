"""The shipped Prometheus configuration and rules, checked by promtool."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from support import tool

PROMETHEUS = Path(__file__).resolve().parent.parent / "prometheus"
# Series that carry target="<name>" on a daemon with targets, and the recording rules
# that keep it (they group by target).
PER_TARGET = re.compile(
    r"\b(build_info|python_info|module_info|module_vulnerability_info|module_fix_info|"
    r"python_end_of_life_timestamp_seconds|status_exporter_modules|"
    r"status_exporter_modules_skipped|status_exporter_modules_dropped|"
    r"status_exporter_vulnerabilities|target_info|status_exporter_target_errors_total|"
    r"target_modules_info|target_restart_required|target_processes|"
    r"job_module:module_versions:count|job_module_version:module_info:count|"
    r"job:python_versions:count|job:build_commits:count|"
    r"job:module_fingerprints:count|job_severity:module_vulnerabilities:count)\b(?!:)"
)


@pytest.mark.parametrize(
    "args",
    [
        ("check", "config", "prometheus.yml"),
        ("check", "rules", "rules.yml"),
        ("test", "rules", "rules.test.yml"),
    ],
    ids=["check-config", "check-rules", "test-rules"],
)
def test_promtool(args):
    """promtool accepts the config and rules, and every rule unit test passes."""
    # The unit tests take some 45 s on an idle core: leave room for a busy machine.
    done = subprocess.run(
        [tool("promtool"), *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_every_alert_and_rule_is_unit_tested():
    """rules.test.yml names every alert, and checks every recording rule."""
    rules = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())
    tests = (PROMETHEUS / "rules.test.yml").read_text()
    for group in rules["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule["record"]
            assert name in tests, name
            if "alert" in rule:
                assert {"summary", "description", "runbook"} <= set(rule["annotations"]), name


def test_every_alert_on_per_target_series_is_unit_tested_with_a_target():
    """Each alert whose series can carry a target fires in some unit test with target set."""
    rules = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())
    per_target = {
        rule["alert"]
        for group in rules["groups"]
        for rule in group["rules"]
        if "alert" in rule and PER_TARGET.search(rule["expr"])
    }
    tests = yaml.safe_load((PROMETHEUS / "rules.test.yml").read_text())["tests"]
    with_target = {
        case["alertname"]
        for group in tests
        for case in group.get("alert_rule_test", [])
        for alert in case.get("exp_alerts") or []
        if "target" in alert["exp_labels"]
    }
    assert len(per_target) >= 12
    assert {"ModuleSetDrift", "PythonRestartRequired"} <= per_target
    assert per_target <= with_target, per_target - with_target
    # And the recording rules: some expected sample of each has a target label.
    recorded = {
        rule["record"] for group in rules["groups"] for rule in group["rules"] if "record" in rule
    }
    sampled = {
        sample["labels"].split("{")[0]
        for group in tests
        for case in group.get("promql_expr_test", [])
        for sample in case["exp_samples"]
        if "target=" in sample["labels"]
    }
    assert {r for r in recorded if PER_TARGET.fullmatch(r)} <= sampled


def test_the_alertmanager_example_is_valid_and_groups_by_the_mixins_labels():
    """amtool accepts prometheus/alertmanager.yml; it groups by alertname, job and target,
    and StatusExporterDown inhibits the other alerts of its job and instance."""
    done = subprocess.run(
        [tool("amtool"), "check-config", "alertmanager.yml"],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
    config = yaml.safe_load((PROMETHEUS / "alertmanager.yml").read_text())
    assert config["route"]["group_by"] == ["alertname", "job", "target"]
    (inhibit,) = config["inhibit_rules"]
    assert inhibit["source_matchers"] == ['alertname="StatusExporterDown"']
    assert inhibit["target_matchers"] == ['alertname!="StatusExporterDown"']
    assert inhibit["equal"] == ["job", "instance"]
    receivers = {r["name"]: r for r in config["receivers"]}
    assert receivers[config["route"]["receiver"]]["webhook_configs"][0]["send_resolved"]
