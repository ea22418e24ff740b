"""End to end with targets: two daemons with two targets each, scraped by a real Prometheus
with the mixin's rules for job myapp.

Targets web and worker run on both hosts; web's Django differs between the hosts (drift),
worker's does not, and web differs from worker on each host (not drift). Each target is a
real virtual environment made by ``python -m venv``, so its Python (and end of life) is
read from its ``pyvenv.cfg``.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml
from support import Daemon, make_venv, tool
from test_e2e_prometheus import JOB, OSV, Fleet, generate_mixin, running_prometheus, substitute


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    tool("prometheus")
    base = tmp_path_factory.mktemp("targets")
    generated = base / "generated"
    generate_mixin(generated)
    envs, daemons = [], []
    try:
        for host, web_django in enumerate(("4.2.1", "3.2.0")):
            web, worker = make_venv(base / f"h{host}-web"), make_venv(base / f"h{host}-worker")
            web.install("Django", web_django)
            worker.install("Django", "5.0.0")
            worker.install("celery", "5.3.0")
            if host == 0:
                web.install("evil-pkg", "1.0.0")  # MAL-2024-0001: critical, in web only
            config = base / f"exporter{host}.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "modules": {"paths": [str(base / "empty")]},
                        "refresh": {"interval_seconds": 0.5},
                        "advisories": {"paths": [str(OSV)]},
                        "targets": {
                            "environments": [
                                {
                                    "name": "web",
                                    "paths": [str(base / f"h{host}-web")],
                                    "commit": {"value": "aaaaaaa"},
                                    "app": {"version": "1.0.0"},
                                },
                                {
                                    "name": "worker",
                                    "paths": [str(base / f"h{host}-worker")],
                                    "commit": {"value": "ccccccc"},
                                    "app": {"version": "2.0.0"},
                                },
                            ]
                        },
                    }
                )
            )
            (base / "empty").mkdir(exist_ok=True)
            envs += [web, worker]
            daemons.append(Daemon(config))
        with running_prometheus(base, daemons, generated) as api:
            fleet = Fleet(envs, daemons, api, generated)
            fleet.wait_for(
                lambda: len(fleet.query(f'up{{job="{JOB}"}} == 1')) == 2, "both exporters up"
            )
            yield fleet
    finally:
        for daemon in daemons:
            daemon.stop()
            daemon.__exit__()


def test_each_target_arrives_with_its_labels(fleet):
    """target_info says kind and path; module_info and build_info carry the target."""
    targets = fleet.wait_for(lambda: fleet.query("target_info"), "target_info")
    assert {(t["metric"]["instance"], t["metric"]["target"]) for t in targets} == {
        (d.address, name) for d in fleet.daemons for name in ("web", "worker")
    }
    assert {t["metric"]["kind"] for t in targets} == {"environment"}
    assert all(t["metric"]["path"].endswith(f"-{t['metric']['target']}") for t in targets)
    commits = {
        (r["metric"]["instance"], r["metric"]["target"]): r["metric"]["commit"]
        for r in fleet.query("build_info")
    }
    assert set(commits.values()) == {"aaaaaaa", "ccccccc"}
    assert len(commits) == 4
    assert len(fleet.query('module_info{module="celery", target="worker"}')) == 2
    assert fleet.query('module_info{target=""}') == []  # no series without its target


def test_drift_is_counted_per_target(fleet):
    """web's Django drifts between the hosts, worker's does not, and web vs worker on one
    host is not drift: ModuleVersionDrift goes pending for web only."""

    def counts() -> dict[str, str]:
        results = fleet.query('job_module:module_versions:count{module="django"}')
        return {r["metric"]["target"]: r["value"][1] for r in results}

    fleet.wait_for(lambda: counts() == {"web": "2", "worker": "1"}, "django counted per target")

    def drifting() -> set[tuple[str, str]]:
        return {
            (a["labels"].get("target", ""), a["labels"].get("module", ""))
            for a in fleet.alerts()
            if a["labels"]["alertname"] == "ModuleVersionDrift"
        }

    found = fleet.wait_for(
        lambda: drifting() if ("web", "django") in drifting() else None, "drift for web"
    )
    assert not any(target == "worker" for target, _ in found)


def test_a_vulnerability_alert_names_its_target(fleet):
    """The malicious package in host 0's web makes the critical alert pending there, with
    target web."""
    alerts = fleet.wait_for(
        lambda: [
            a for a in fleet.alerts() if a["labels"]["alertname"] == "ModuleVulnerabilityCritical"
        ],
        "the critical vulnerability alert",
    )
    assert [(a["labels"]["instance"], a["labels"]["target"]) for a in alerts] == [
        (fleet.instance(0), "web")
    ]
    assert "(target web)" in alerts[0]["annotations"]["summary"]


def test_every_dashboard_query_returns_data_with_targets(fleet):
    """Each PromQL expression of the dashboard, with All substituted, has data from daemons
    with targets, and the target variable lists web and worker."""
    dashboard = json.loads((fleet.generated / "dashboards/python-fleet.json").read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for expr in expressions:
        if "status_exporter_target_errors" in expr:
            fleet.query(substitute(expr))  # zero until a target fails: the next test
            continue
        substituted = substitute(expr)
        assert fleet.wait_for(lambda e=substituted: fleet.query(e), f"data for {expr}"), expr
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "target"]
    match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["definition"])
    assert match, variable["definition"]
    values = {s["target"] for s in fleet.series(substitute(match.group(1)))}
    assert values == {"web", "worker"}


def test_an_unreadable_target_is_counted_and_alerted_alone(fleet):
    """Removing host 1's worker makes its error counter grow and StatusExporterTargetUnreadable
    pending for that target only; its last good facts stay."""
    worker = fleet.envs[3].path.parents[2]  # <venv>/lib/pythonX.Y/site-packages
    shutil.rmtree(worker)
    instance = fleet.instance(1)
    fleet.wait_for(
        lambda: fleet.query(
            f'status_exporter_target_errors_total{{instance="{instance}", target="worker"}} > 0'
        ),
        "the error to be counted",
    )
    alerts = fleet.wait_for(
        lambda: [
            a
            for a in fleet.alerts()
            if a["labels"]["alertname"] == "StatusExporterTargetUnreadable"
        ],
        "StatusExporterTargetUnreadable",
    )
    assert {(a["labels"]["instance"], a["labels"]["target"]) for a in alerts} == {
        (instance, "worker")
    }
    assert fleet.query(f'module_info{{instance="{instance}", target="worker", module="celery"}}')
    assert (
        fleet.query(f'status_exporter_target_errors_total{{instance="{fleet.instance(0)}"}} > 0')
        == []
    )
