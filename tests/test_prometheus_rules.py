"""The shipped Prometheus configuration and rules, checked by promtool."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from support import tool

PROMETHEUS = Path(__file__).resolve().parent.parent / "prometheus"


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
    done = subprocess.run(
        [tool("promtool"), *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_every_alert_and_rule_is_unit_tested():
    """rules.test.yml names every alert, and checks every recording rule."""
    import yaml

    rules = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())
    tests = (PROMETHEUS / "rules.test.yml").read_text()
    for group in rules["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule["record"]
            assert name in tests, name
            if "alert" in rule:
                assert {"summary", "description", "runbook"} <= set(rule["annotations"]), name
