"""End to end, one agent per node: a daemon that discovers three running services (real
Python processes in real venvs, one a parent with two workers), scraped by a real
Prometheus with the mixin's rules for job myapp.

Only the processes this test starts are discovered (an include matcher on a marker in
their command line), named by their venv's directory: web, worker, cron.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
import uuid

import pytest
import yaml
from support import Daemon, FakeEnvironment, make_venv, tool
from test_e2e_prometheus import OSV, Fleet, generate_mixin, running_prometheus, substitute

from exporter.sources.discovery.restart import START_SLACK

WORKERS = """
import os, time
for _ in range(2):
    if os.fork() == 0:
        time.sleep(600)
        os._exit(0)
time.sleep(600)
"""
SLEEPER = "import time; time.sleep(600)"
SERVICES = {"web": SLEEPER, "worker": WORKERS, "cron": SLEEPER}
# Dashboard expressions with no series until something fails: checked for parsing only.
ZERO_UNTIL_FAILURE = ("status_exporter_target_errors",)


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    tool("prometheus")
    base = tmp_path_factory.mktemp("agent")
    generated = base / "generated"
    generate_mixin(generated)
    marker = f"status-exporter-e2e-{uuid.uuid4().hex}"
    envs: dict[str, FakeEnvironment] = {}
    processes: list[subprocess.Popen[bytes]] = []
    daemons: list[Daemon] = []
    try:
        for name, code in SERVICES.items():
            env = envs[name] = make_venv(base / name)
            env.install("requests", "2.31.0")
            if name == "web":
                env.install("evil-pkg", "1.0.0")  # MAL-2024-0001: critical
            processes.append(
                subprocess.Popen(
                    [str(base / name / "bin" / "python"), "-c", code, marker],
                    env={"PATH": "/usr/bin:/bin", "COMMIT": f"{name[:3]}1234"},
                    start_new_session=True,
                )
            )
        (base / "empty").mkdir()
        config = base / "agent.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "modules": {"paths": [str(base / "empty")]},
                    "refresh": {"interval_seconds": 0.5},
                    "advisories": {"paths": [str(OSV)]},
                    "commit": {"env": ["COMMIT"]},
                    "targets": {
                        "discover": {
                            "processes": True,
                            "include": [{"cmdline": re.escape(marker)}],
                            "name": "{venv}",
                        }
                    },
                }
            )
        )
        daemons.append(Daemon(config))
        with running_prometheus(base, daemons, generated) as api:
            fleet = Fleet(list(envs.values()), daemons, api, generated)
            fleet.wait_for(
                lambda: len(fleet.query('target_info{kind="process"}')) == 3,
                "three discovered targets",
            )
            yield fleet, envs, processes
    finally:
        for daemon in daemons:
            daemon.stop()
            daemon.__exit__()
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def test_each_service_is_a_target_with_its_processes_and_commit(agent):
    """Every service arrives as a process target with its interpreter, its process count
    (the parent and its two workers are one target) and the commit of its environment."""
    fleet, _, _ = agent
    info = {r["metric"]["target"]: r["metric"] for r in fleet.query("target_info")}
    assert set(info) == set(SERVICES)
    assert all(m["kind"] == "process" and "python" in m["exe"] for m in info.values())
    counts = {r["metric"]["target"]: r["value"][1] for r in fleet.query("target_processes")}
    assert counts == {"web": "1", "worker": "3", "cron": "1"}
    commits = {r["metric"]["target"]: r["metric"]["commit"] for r in fleet.query("build_info")}
    assert commits == {"web": "web1234", "worker": "wor1234", "cron": "cro1234"}
    assert len(fleet.query('module_info{module="requests"}')) == 3


def test_every_dashboard_and_rule_query_returns_data_per_target(agent):
    """Each dashboard expression (All substituted) and each recording rule has data from
    the agent, and the dashboard's target variable lists the three services."""
    fleet, _, _ = agent
    dashboard = json.loads((fleet.generated / "dashboards/python-fleet.json").read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for expr in expressions:
        substituted = substitute(expr)
        # Drift needs replicas that differ; one agent has none (test_e2e_targets has drift).
        if any(name in expr for name in ZERO_UNTIL_FAILURE) or ") > 1" in expr:
            fleet.query(substituted)
            continue
        assert fleet.wait_for(lambda e=substituted: fleet.query(e), f"data for {expr}"), expr
    rules = yaml.safe_load((fleet.generated / "rules.yml").read_text())
    records = [r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r]
    for record in records:
        found = fleet.wait_for(lambda r=record: fleet.query(r), f"series of {record}")
        per_target = {s["metric"].get("target") for s in found}
        assert per_target <= set(SERVICES) | {None}, record
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "target"]
    match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["definition"])
    assert match, variable["definition"]
    assert {s["target"] for s in fleet.series(substitute(match.group(1)))} == set(SERVICES)


def test_an_upgrade_under_a_running_service_makes_restart_required_pending(agent):
    """Upgrading worker's requests under its running processes sets target_restart_required
    for worker alone, and PythonRestartRequired goes pending for it."""
    fleet, envs, _ = agent
    started = min(
        float(r["value"][1])
        for r in fleet.query('target_process_start_time_seconds{target="worker"}')
    )
    while time.time() <= started + START_SLACK + 0.1:  # bounded: the start is in the past
        time.sleep(0.05)
    envs["worker"].upgrade("requests", "2.32.0")
    fleet.wait_for(
        lambda: fleet.query('target_restart_required{target="worker"} == 1'),
        "worker to need a restart",
    )
    assert fleet.query('target_restart_required{target!="worker"} == 1') == []
    alerts = fleet.wait_for(
        lambda: [a for a in fleet.alerts() if a["labels"]["alertname"] == "PythonRestartRequired"],
        "PythonRestartRequired",
    )
    assert {a["labels"]["target"] for a in alerts} == {"worker"}
    assert {a["state"] for a in alerts} <= {"pending", "firing"}
    changed = fleet.query('target_changed_module_info{target="worker"}')
    assert {(c["metric"]["module"], c["metric"]["version"]) for c in changed} == {
        ("requests", "2.32.0")
    }
