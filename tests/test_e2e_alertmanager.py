"""Alerts that reach a person: real daemons, a real Prometheus with the generated rules, and
Debian's prometheus-alertmanager with the shipped prometheus/alertmanager.yml, posting to a
webhook receiver inside the test.

Two daemons report target web (Django differs between them: drift; both run a vulnerable
aiohttp, the first also a malicious package), target batch with ``modules.publish: none``
(celery differs: drift seen by fingerprint only), and the first a target legacy on Python
3.8 (past its end of life). A third daemon is a node agent
(``targets.discover.processes``) watching one Python process of the test, in a venv made
by ``python -m venv``, whose Django was upgraded after it started: its target needs a
restart. Then the second daemon is killed. The rules are generated with
every ``for`` shortened, and the Alertmanager config is the committed one with its timings
shortened and the webhook pointed here; neither committed file is touched. Every wait is
bounded.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import Daemon, FakeEnvironment, free_port, tool, wait_until

from monitoring.render import rendered_files
from monitoring.settings import Settings

REPO = Path(__file__).resolve().parent.parent
OSV = REPO / "tests" / "data" / "osv"
JOB = "myapp"
# Every alert's "for", shortened: two rule evaluations at one per second.
FOR = "2s"
# Bits of text a broken template leaves in an annotation.
TEMPLATE_FAILURES = ("<no value>", "error expanding", "error executing", "{{", "}}")


def short_settings() -> Settings:
    """The mixin's settings for job myapp with every ``*_for`` duration set to FOR."""
    durations = {f.name: FOR for f in dataclasses.fields(Settings) if f.name.endswith("_for")}
    return Settings(selector=f'job="{JOB}"', **durations)


class Webhook:
    """An HTTP receiver on 127.0.0.1 that keeps every JSON body Alertmanager posts."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        lock = threading.Lock()
        payloads = self.payloads

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    payloads.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.lock = lock
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def firing(self, alertname: str) -> list[dict[str, Any]]:
        """The notifications of firing groups of ``alertname`` received so far."""
        with self.lock:
            return [
                p
                for p in self.payloads
                if p["status"] == "firing" and p["groupLabels"].get("alertname") == alertname
            ]

    def close(self) -> None:
        """Stop serving and release the port."""
        self.server.shutdown()
        self.server.server_close()


# In the watched process's command line: the agent's include matcher picks it alone.
MARKER = "status-exporter-alerting-e2e"


def make_venv(path: Path) -> FakeEnvironment:
    """A real virtual environment without pip, as its site-packages."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    (site,) = path.glob("lib/python*/site-packages")
    return FakeEnvironment(site)


def stale_process(venv: Path) -> subprocess.Popen[bytes]:
    """A Python process of ``venv`` that sleeps, started before Django is upgraded under it."""
    site = make_venv(venv)
    site.install("Django", "4.2.1")
    child = subprocess.Popen(
        [str(venv / "bin" / "python"), "-c", f"import time; time.sleep(300)  # {MARKER}"]
    )
    cmdline = Path(f"/proc/{child.pid}/cmdline")
    wait_until(lambda: MARKER.encode() in cmdline.read_bytes(), "the process to start", 10)
    # The agent ignores changes within a second of the start time, which procfs gives to a
    # second (btime is whole seconds; exporter/sources/discovery/restart.py START_SLACK).
    time.sleep(1.2)
    site.upgrade("Django", "4.2.2")
    return child


def ready(url: str, process: subprocess.Popen[bytes]) -> bool:
    """True once ``url`` answers 200; raises if ``process`` exited."""
    if process.poll() is not None:
        raise AssertionError(f"{process.args[0]} exited with {process.returncode}")
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def running(args: list[str], ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    """A server process started with ``args``, once ``ready_url`` answers; stopped after."""
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: ready(ready_url, process), f"{args[0]} to be ready", 30)
        yield process
    finally:
        process.terminate()
        process.wait(10)


def alertmanager_config(webhook: str) -> dict[str, Any]:
    """The shipped alertmanager.yml, its timings shortened and its webhooks sent to ``webhook``."""
    config = copy.deepcopy(yaml.safe_load((REPO / "prometheus" / "alertmanager.yml").read_text()))
    config["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = webhook
    return config


def write_daemon_config(path: Path, targets: dict[str, Path], empty: Path) -> None:
    """A daemon's config: ``targets`` as environments; batch publishes no module_info."""
    path.write_text(
        yaml.safe_dump(
            {
                "modules": {"paths": [str(empty)]},
                "refresh": {"interval_seconds": 1},
                "advisories": {"paths": [str(OSV)]},
                "targets": {
                    "environments": [
                        {
                            "name": name,
                            "paths": [str(site)],
                            "commit": {"value": "aaaaaaa"},
                            "modules": {"publish": "none" if name == "batch" else None},
                        }
                        for name, site in targets.items()
                    ]
                },
            }
        )
    )


@dataclass
class Stack:
    """The daemons (the last the node agent), Prometheus, Alertmanager and the webhook."""

    daemons: list[Daemon]
    prometheus: str
    alertmanager: str
    webhook: Webhook
    started: float

    def instance(self, index: int) -> str:
        """The host:port of daemon ``index``."""
        return self.daemons[index].address

    def group(
        self, alertname: str, done: Callable[[list[dict[str, Any]]], bool], what: str
    ) -> dict[str, Any]:
        """The latest firing notification of ``alertname`` whose alerts satisfy ``done``."""

        def found() -> dict[str, Any] | None:
            for payload in reversed(self.webhook.firing(alertname)):
                alerts = [a for a in payload["alerts"] if a["status"] == "firing"]
                if done(alerts):
                    return payload
            return None

        payload: dict[str, Any] = wait_until(found, what, 60)
        return payload


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    prometheus = tool("prometheus")
    alertmanager = tool("prometheus-alertmanager")
    started = time.monotonic()
    base = tmp_path_factory.mktemp("alerting")
    for path, text in rendered_files(short_settings(), base / "generated", committed=False).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    empty = base / "empty"
    empty.mkdir()
    sites = {}
    for host, django in enumerate(("4.2.1", "3.2.0")):
        web = FakeEnvironment(base / f"h{host}" / "web" / "lib" / "python3.12" / "site-packages")
        web.install("Django", django)
        web.install("aiohttp", "3.7.3")  # PYSEC-2021-76, fixed in 3.7.4: on both hosts
        if host == 0:
            web.install("evil-pkg", "1.0.0")  # MAL-2024-0001: critical, no fix
        # batch publishes no module_info: only its fingerprint shows celery's drift.
        batch = FakeEnvironment(
            base / f"h{host}" / "batch" / "lib" / "python3.12" / "site-packages"
        )
        batch.install("celery", ("5.3.0", "5.2.0")[host])
        sites[host] = {"web": web.path, "batch": batch.path}
    legacy = FakeEnvironment(base / "h0" / "legacy" / "lib" / "python3.8" / "site-packages")
    legacy.install("requests", "2.31.0")
    sites[0]["legacy"] = legacy.path
    webhook = Webhook()
    daemons: list[Daemon] = []
    child = None
    try:
        for host, targets in sites.items():
            config = base / f"exporter{host}.yaml"
            write_daemon_config(config, targets, empty)
            daemons.append(Daemon(config))
        child = stale_process(base / "api" / ".venv")
        agent = base / "agent.yaml"
        agent.write_text(
            yaml.safe_dump(
                {
                    "modules": {"paths": [str(empty)]},
                    "refresh": {"interval_seconds": 1},
                    "targets": {
                        "discover": {
                            "processes": True,
                            "include": [{"cmdline": MARKER}],
                            "name": "api",
                        }
                    },
                }
            )
        )
        daemons.append(Daemon(agent))
        am_config = base / "alertmanager.yml"
        am_config.write_text(yaml.safe_dump(alertmanager_config(webhook.url)))
        am_port = free_port()
        am_url = f"http://127.0.0.1:{am_port}"
        prom_config = base / "prometheus.yml"
        prom_config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(base / "generated" / "rules.yml")],
                    "alerting": {
                        "alertmanagers": [
                            {"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}
                        ]
                    },
                    "scrape_configs": [
                        {
                            "job_name": JOB,
                            "static_configs": [{"targets": [d.address for d in daemons]}],
                        }
                    ],
                }
            )
        )
        prom_port = free_port()
        prom_url = f"http://127.0.0.1:{prom_port}"
        with (
            running(
                [
                    alertmanager,
                    f"--config.file={am_config}",
                    f"--storage.path={base / 'am'}",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    "--cluster.listen-address=",
                    "--log.level=warn",
                ],
                f"{am_url}/-/ready",
            ),
            running(
                [
                    prometheus,
                    f"--config.file={prom_config}",
                    f"--storage.tsdb.path={base / 'data'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                    "--log.level=warn",
                ],
                f"{prom_url}/-/ready",
            ),
        ):
            yield Stack(daemons, prom_url, am_url, webhook, started)
    finally:
        for daemon in daemons:
            daemon.__exit__()
        if child is not None:
            child.kill()
            child.wait(5)
        webhook.close()


def assert_rendered(payload: dict[str, Any]) -> None:
    """Every alert of ``payload`` has summary, description and runbook, fully rendered."""
    for alert in payload["alerts"]:
        for name in ("summary", "description", "runbook"):
            text = alert["annotations"].get(name, "")
            assert text, (name, alert)
            for failure in TEMPLATE_FAILURES:
                assert failure not in text, (name, text)


def test_a_critical_finding_arrives_grouped_by_job_and_target(stack):
    """The malicious package arrives in its own group (alertname, job, target web), its
    summary and description naming module, version, fix, advisory link, target, instance."""
    payload = stack.group("ModuleVulnerabilityCritical", bool, "the critical finding")
    assert payload["groupLabels"] == {
        "alertname": "ModuleVulnerabilityCritical",
        "job": JOB,
        "target": "web",
    }
    (alert,) = payload["alerts"]
    i0 = stack.instance(0)
    assert alert["labels"]["instance"] == i0
    assert (alert["labels"]["module"], alert["labels"]["version"]) == ("evil-pkg", "1.0.0")
    assert alert["annotations"]["summary"] == (
        f"evil-pkg 1.0.0 on {i0} (target web) has MAL-2024-0001 (critical)"
    )
    assert alert["annotations"]["description"] == (
        f"evil-pkg 1.0.0 on {i0} (target web) is affected by MAL-2024-0001. Fixed in no "
        "released version yet. Advisory: https://osv.dev/vulnerability/MAL-2024-0001"
    )
    assert_rendered(payload)


def test_one_finding_on_two_hosts_is_one_alert(stack):
    """aiohttp 3.7.3 in target web on both hosts, a finding of no severity (PYSEC): one alert
    for the finding in the job and target, counting both instances, with the fixed version
    3.7.4, its advisory's link and the query that lists the instances."""

    def aiohttp_on_both(alerts: list[dict[str, Any]]) -> bool:
        return any(
            a["labels"]["module"] == "aiohttp" and "on 2 instance(s)" in a["annotations"]["summary"]
            for a in alerts
        )

    alertname = "ModuleVulnerability"
    payload = stack.group(alertname, aiohttp_on_both, "aiohttp's finding on both hosts")
    assert payload["groupLabels"] == {"alertname": alertname, "job": JOB, "target": "web"}
    aiohttp = [a for a in payload["alerts"] if a["labels"]["module"] == "aiohttp"]
    assert aiohttp
    for alert in aiohttp:
        labels, annotations = alert["labels"], alert["annotations"]
        assert "instance" not in labels
        assert labels["fixed"] == "3.7.4"
        assert (
            f"aiohttp 3.7.3 in job {JOB} (target web), on 2 instance(s),"
            in (annotations["description"])
        )
        assert "Fixed in 3.7.4." in annotations["description"]
        assert f"https://osv.dev/vulnerability/{labels['id']}" in annotations["description"]
        assert (
            f'module_vulnerability_info{{job="{JOB}", target="web", id="{labels["id"]}"}}'
            in annotations["runbook"]
        )
    assert {a["labels"]["target"] for a in payload["alerts"]} == {"web"}
    assert_rendered(payload)


def test_end_of_life_arrives_for_its_target(stack):
    """Target legacy runs Python 3.8: PythonEndOfLife arrives grouped by job and target."""
    payload = stack.group("PythonEndOfLife", bool, "the end-of-life alert")
    assert payload["groupLabels"] == {
        "alertname": "PythonEndOfLife",
        "job": JOB,
        "target": "legacy",
    }
    (alert,) = payload["alerts"]
    where = f"Python 3.8 on {stack.instance(0)} (target legacy)"
    assert alert["annotations"]["summary"] == f"{where} is past its end of life"
    assert alert["annotations"]["description"] == f"{where} gets no security fixes any more."
    assert_rendered(payload)


def test_drift_arrives_for_the_target_that_drifts(stack):
    """Django 4.2.1 on one host and 3.2.0 on the other in target web: ModuleVersionDrift."""

    def django(alerts: list[dict[str, Any]]) -> bool:
        return any(a["labels"].get("module") == "django" for a in alerts)

    payload = stack.group("ModuleVersionDrift", django, "django's drift")
    assert payload["groupLabels"] == {
        "alertname": "ModuleVersionDrift",
        "job": JOB,
        "target": "web",
    }
    (alert,) = [a for a in payload["alerts"] if a["labels"]["module"] == "django"]
    assert alert["annotations"]["summary"] == f"django runs in 2 versions in job {JOB} (target web)"
    assert "in target web" in alert["annotations"]["description"]
    assert_rendered(payload)


def test_drift_of_unpublished_modules_arrives_by_fingerprint(stack):
    """Target batch (modules.publish: none) runs celery 5.3.0 on one host and 5.2.0 on the
    other: no module_info, different fingerprints, ModuleSetDrift arrives for batch only."""
    payload = stack.group("ModuleSetDrift", bool, "the module set drift")
    assert payload["groupLabels"] == {"alertname": "ModuleSetDrift", "job": JOB, "target": "batch"}
    (alert,) = payload["alerts"]
    assert (
        alert["annotations"]["summary"] == f"Job {JOB} (target batch) runs 2 different module sets"
    )
    assert "in target batch" in alert["annotations"]["description"]
    assert 'target="batch"' in alert["annotations"]["runbook"]
    assert_rendered(payload)
    # web drifts too, but ModuleVersionDrift names its module: no module-set alert for web.
    assert {p["groupLabels"]["target"] for p in stack.webhook.firing("ModuleSetDrift")} == {"batch"}


def test_a_restart_required_arrives_for_the_discovered_target(stack):
    """The agent sees Django upgraded under the running process of target api:
    PythonRestartRequired arrives grouped by job and target, naming target and instance."""
    payload = stack.group("PythonRestartRequired", bool, "the restart alert")
    assert payload["groupLabels"] == {
        "alertname": "PythonRestartRequired",
        "job": JOB,
        "target": "api",
    }
    (alert,) = payload["alerts"]
    agent = stack.instance(2)
    assert alert["labels"]["instance"] == agent
    summary = alert["annotations"]["summary"]
    assert summary.startswith(f"Target api on {agent}")
    assert summary.endswith(" needs a restart")
    assert f"target api on {agent} (job {JOB})" in alert["annotations"]["description"]
    assert f"/api/v1/targets/api/status/ on {agent}" in alert["annotations"]["runbook"]
    assert_rendered(payload)


def test_a_killed_exporter_arrives_as_down_and_inhibits_its_other_alerts(stack):
    """Killing the second daemon brings StatusExporterDown (grouped by alertname and job: it
    has no target); while it fires, the shipped inhibition mutes another alert of that
    instance and lets the same alert of another instance through."""
    down = stack.instance(1)
    stack.daemons[1].process.kill()
    stack.daemons[1].process.wait(5)

    def is_down(alerts: list[dict[str, Any]]) -> bool:
        return any(a["labels"]["instance"] == down for a in alerts)

    payload = stack.group("StatusExporterDown", is_down, "StatusExporterDown")
    assert payload["groupLabels"] == {"alertname": "StatusExporterDown", "job": JOB}
    (alert,) = [a for a in payload["alerts"] if a["labels"]["instance"] == down]
    assert alert["annotations"]["summary"] == f"status-exporter on {down} is down"
    assert f"{down} (job {JOB})" in alert["annotations"]["description"]
    assert_rendered(payload)

    # Two alerts posted straight to Alertmanager: one on the down instance, one elsewhere.
    posted = [
        {
            "labels": {
                "alertname": "StatusExporterRefreshFailing",
                "job": JOB,
                "instance": instance,
                "severity": "warning",
            },
            "annotations": {"summary": f"refresh failing on {instance}"},
        }
        for instance in (down, "elsewhere:8393")
    ]
    request = urllib.request.Request(
        f"{stack.alertmanager}/api/v2/alerts",
        data=json.dumps(posted).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200

    def states() -> dict[str, str]:
        query = urllib.parse.urlencode({"filter": 'alertname="StatusExporterRefreshFailing"'})
        url = f"{stack.alertmanager}/api/v2/alerts?{query}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return {a["labels"]["instance"]: a["status"]["state"] for a in json.load(response)}

    expected = {down: "suppressed", "elsewhere:8393": "active"}
    wait_until(lambda: states() == expected, f"inhibition to give {expected}", 20)
    through = stack.group("StatusExporterRefreshFailing", bool, "the uninhibited alert")
    assert {a["labels"]["instance"] for a in through["alerts"]} == {"elsewhere:8393"}
    # A notification of the down instance's alert never came.
    assert not any(
        a["labels"]["instance"] == down
        for p in stack.webhook.firing("StatusExporterRefreshFailing")
        for a in p["alerts"]
    )


def test_every_notification_is_rendered_and_the_run_is_short(stack):
    """Every notification received (firing or resolved) is fully rendered, and the whole
    stack answered within the module's time budget."""
    with stack.webhook.lock:
        payloads = list(stack.webhook.payloads)
    assert len(payloads) >= 6
    for payload in payloads:
        if payload["groupLabels"].get("alertname") == "StatusExporterRefreshFailing":
            continue  # posted by the test, with a summary only
        assert_rendered(payload)
        assert {"alertname", "job"} <= set(payload["groupLabels"])
    elapsed = time.monotonic() - stack.started
    print(f"alertmanager e2e: {len(payloads)} notifications in {elapsed:.1f} s")
    assert elapsed < 90
