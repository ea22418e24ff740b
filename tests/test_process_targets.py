"""Discovered processes as targets, through take_host and every renderer: real Python
processes in real venvs (``python -m venv``), a parent with forked workers, an upgrade
under a running process, a process that exits, and a secret in a process's environment.

Only the processes these tests start are discovered: an include matcher on a marker in
their command line keeps the machine's other Python processes (other tests) out.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from running_venv import EXT_SUFFIX, extension_origin
from support import make_config, make_venv, quiet_sources, wait_until

from exporter.host import Host, take_host
from exporter.refresh import RefreshStats
from exporter.render.pages import render_pages
from exporter.render.prometheus import Fragment
from exporter.snapshot import Identity
from exporter.sources.discovery.restart import START_SLACK

# A parent that forks three workers, all sleeping: a gunicorn master and its workers.
WORKERS = """
import os, sys, time
for _ in range(3):
    if os.fork() == 0:
        time.sleep(300)
        os._exit(0)
time.sleep(300)
"""
SLEEPER = "import sys, time; time.sleep(300)"
HANDMADE = Path(__file__).resolve().parent / "data" / "osv" / "handmade"


class Services:
    """Processes started in venvs, each with the marker in its command line; killed whole
    (their process groups) at the end."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(
        self, venv: Path, code: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Run ``code`` with the venv's ``bin/python`` (a link to the base interpreter)."""
        process = subprocess.Popen(
            [str(venv / "bin" / "python"), "-c", code, self.marker],
            env={"PATH": "/usr/bin:/bin", **(env or {})},
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        """Kill a service and its workers, and reap it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def close(self) -> None:
        """Stop every service started."""
        for process in self.processes:
            self.stop(process)


@pytest.fixture
def services() -> Iterator[Services]:
    running = Services(f"status-exporter-test-{uuid.uuid4().hex}")
    try:
        yield running
    finally:
        running.close()


def agent_config(tmp_path: Path, marker: str, **more: object) -> object:
    """Discovery of the marked processes, named by their venv's directory."""
    (tmp_path / "empty").mkdir(exist_ok=True)
    discover: dict[str, object] = {
        "processes": True,
        "include": [{"cmdline": re.escape(marker)}],
        "name": "{venv}",
    }
    sections: dict[str, object] = {
        "modules": {"paths": [str(tmp_path / "empty")]},
        "commit": {"env": ["COMMIT"]},
        "targets": {"discover": discover},
        **more,
    }
    return make_config(**sections)  # type: ignore[arg-type]


def take(config: object, previous: Host | None = None) -> Host:
    return take_host(config, IDENTITY, previous, quiet_sources())  # type: ignore[arg-type]


IDENTITY = Identity.new()


def metrics_of(host: Host) -> dict[str, list]:
    pages = render_pages(host, RefreshStats(), None)
    body = pages.metrics.body(Fragment(b"", b""), (False, False)).decode()
    return {f.name: f.samples for f in text_string_to_metric_families(body)}


def by_target(samples: list) -> dict[str, object]:
    return {s.labels["target"]: s for s in samples}


def test_a_parent_and_its_workers_are_one_target_read_from_its_venv(tmp_path, services):
    """A parent with three forked workers in one venv is one target of four processes, its
    modules and Python from that venv, its identity in target_info; another venv's process
    is a target of its own."""
    shop = make_venv(tmp_path / "shop")
    shop.install("shop", "1.0")
    shop.install("requests", "2.31.0")
    cron = make_venv(tmp_path / "cron")
    cron.install("celery", "5.3.0")
    services.start(tmp_path / "shop", WORKERS, {"COMMIT": "feedbee"})
    services.start(tmp_path / "cron", SLEEPER)
    config = agent_config(tmp_path, services.marker)

    def both() -> Host | None:
        host = take(config)
        counts = {
            t.name: t.snapshot.process.processes
            for t in host.targets
            if t.snapshot is not None and t.snapshot.process is not None
        }
        return host if counts == {"shop": 4, "cron": 1} else None

    host = wait_until(both, "four shop processes and one cron process", timeout=20)
    shop_target, cron_target = host.target("shop"), host.target("cron")
    assert shop_target is not None
    assert cron_target is not None
    assert shop_target.spec.kind == cron_target.spec.kind == "process"
    assert dict(shop_target.snapshot.modules) == {"shop": "1.0", "requests": "2.31.0"}
    assert dict(cron_target.snapshot.modules) == {"celery": "5.3.0"}
    assert shop_target.snapshot.commit.value == "feedbee"
    assert shop_target.snapshot.python.major == str(sys.version_info.major)
    assert shop_target.snapshot.python.minor == str(sys.version_info.minor)
    metrics = metrics_of(host)
    info = by_target(metrics["target_info"])
    assert info["shop"].labels["kind"] == "process"
    assert (
        info["shop"]
        .labels["exe"]
        .endswith(f"python{sys.version_info.major}.{sys.version_info.minor}")
    )
    assert by_target(metrics["target_processes"])["shop"].value == 4
    assert by_target(metrics["target_restart_required"])["shop"].value == 0
    modules = {(s.labels["target"], s.labels["module"]) for s in metrics["module_info"]}
    assert ("shop", "shop") in modules
    assert ("cron", "celery") in modules


def test_an_upgrade_under_a_running_process_requires_a_restart(tmp_path, services):
    """A distribution upgraded after the process started makes restart_required true, with
    the module named, in the metrics, the target's JSON and its page."""
    shop = make_venv(tmp_path / "shop")
    shop.install("shop", "1.0")
    services.start(tmp_path / "shop", SLEEPER)
    config = agent_config(tmp_path, services.marker)
    first = wait_until(lambda: take(config).target("shop"), "the shop process", timeout=20)
    assert first.snapshot.process.restart_required is False
    # A change counts from START_SLACK after the start (btime is whole seconds).
    wait_until(
        lambda: time.time() > first.snapshot.process.started_at + START_SLACK + 0.1,
        "the start slack to pass",
    )
    shop.upgrade("shop", "2.0")
    host = take(config)
    target = host.target("shop")
    assert target is not None
    assert target.snapshot.modules["shop"] == "2.0"
    assert target.snapshot.process.restart_required is True
    assert ("shop", "2.0") in {(m, v) for m, v, _ in target.snapshot.process.changed}
    metrics = metrics_of(host)
    assert by_target(metrics["target_restart_required"])["shop"].value == 1
    pages = render_pages(host, RefreshStats(), None)
    status = json.loads(pages.targets["shop"].status.body("127.0.0.1:9"))
    assert status["restart_required"] is True
    assert any(m["module"] == "shop" for m in status["process"]["changed_modules"])
    index = json.loads(pages.targets_index)
    (entry,) = [t for t in index["targets"] if t["name"] == "shop"]
    assert entry["restart_required"] is True
    assert entry["processes"] == 1
    assert b"restart required" in pages.targets["shop"].status_page.body()


def test_a_target_whose_processes_exited_leaves_no_series(tmp_path, services):
    """When every process of a target exits, the next refresh has no such target and its
    series are gone; the other target stays."""
    make_venv(tmp_path / "shop").install("shop", "1.0")
    make_venv(tmp_path / "cron").install("celery", "5.3.0")
    services.start(tmp_path / "shop", SLEEPER)
    cron = services.start(tmp_path / "cron", SLEEPER)
    config = agent_config(tmp_path, services.marker)
    first = wait_until(
        lambda: (h := take(config)).target("cron") and h.target("shop") and h,
        "both targets",
        timeout=20,
    )
    services.stop(cron)
    second = take(config, first)
    assert second.target("cron") is None
    assert second.target("shop") is not None
    text = json.dumps([[s.labels for s in v] for v in metrics_of(second).values()])
    assert '"cron"' not in text


def test_nothing_of_a_process_environment_but_its_commit_is_kept(tmp_path, services):
    """A secret in a discovered process's environment appears in no output: metrics, the
    targets list, the target's status, page and SBOM."""
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    make_venv(tmp_path / "shop").install("shop", "1.0")
    services.start(tmp_path / "shop", SLEEPER, {"API_TOKEN": secret, "COMMIT": "c0ffee1"})
    config = agent_config(tmp_path, services.marker)
    host = wait_until(lambda: (h := take(config)).target("shop") and h, "shop", timeout=20)
    assert host.target("shop").snapshot.commit.value == "c0ffee1"
    pages = render_pages(host, RefreshStats(), None)
    target = pages.targets["shop"]
    outputs = [
        pages.metrics.body(Fragment(b"", b""), (False, False)),
        pages.targets_index,
        pages.module_index,
        pages.landing,
        target.status.body("127.0.0.1:9"),
        target.status_page.body(),
        target.sbom.body,
    ]
    for output in outputs:
        assert secret.encode() not in output


def test_discovery_off_changes_nothing(tmp_path, services):
    """With discovery off (the default), a running Python process is no target and the
    output has no target label."""
    make_venv(tmp_path / "shop").install("shop", "1.0")
    services.start(tmp_path / "shop", SLEEPER)
    (tmp_path / "empty").mkdir()
    config = make_config(modules={"paths": [str(tmp_path / "empty")]})
    host = take(config)
    assert host.targets == ()
    assert not host.has_targets


def test_a_configured_environment_keeps_its_name_against_a_discovered_one(tmp_path, services):
    """A discovered target whose name a configured environment has is renamed, never merged."""
    shop = make_venv(tmp_path / "shop")
    shop.install("shop", "1.0")
    services.start(tmp_path / "shop", SLEEPER)
    config = agent_config(tmp_path, services.marker)
    raw = {
        "modules": {"paths": [str(tmp_path / "empty")]},
        "targets": {
            "environments": [{"name": "shop", "paths": [str(tmp_path / "shop")]}],
            "discover": {
                "processes": True,
                "include": [{"cmdline": re.escape(services.marker)}],
                "name": "{venv}",
            },
        },
    }
    config = make_config(**raw)  # type: ignore[arg-type]
    host = wait_until(lambda: (h := take(config)).target("shop-2") and h, "shop-2", timeout=20)
    assert host.target("shop").spec.kind == "environment"
    assert host.target("shop-2").spec.kind == "process"


def test_a_vulnerable_module_whose_native_code_runs_is_loaded_and_its_upgrade_stale(
    tmp_path, services
):
    """A vulnerable distribution whose extension module the process imported is loaded:
    true in its finding and loaded="true" on its series; replacing that file on disk makes
    it a stale mapping, and a restart required."""
    venv = make_venv(tmp_path / "shop")
    extension = venv.path / "evil_pkg" / f"_queue{EXT_SUFFIX}"
    extension.parent.mkdir()
    (extension.parent / "__init__.py").write_text("")
    shutil.copyfile(extension_origin(), extension)
    info = venv.install("evil-pkg", "1.0.0")  # MAL-2024-0001 in tests/data/osv/handmade
    (info / "RECORD").write_text(
        f"evil_pkg/__init__.py,,\nevil_pkg/{extension.name},,\n{info.name}/METADATA,,\n"
    )
    venv.install("plain", "1.0")
    services.start(tmp_path / "shop", "import evil_pkg._queue, time; time.sleep(300)")
    config = agent_config(tmp_path, services.marker, advisories={"paths": [str(HANDMADE)]})

    def loaded() -> Host | None:
        host = take(config)
        target = host.target("shop")
        p = target.snapshot.process if target and target.snapshot else None
        return host if p is not None and "evil-pkg" in p.loaded else None

    host = wait_until(loaded, "evil-pkg loaded", timeout=20)
    pages = render_pages(host, RefreshStats(), None)
    status = json.loads(pages.targets["shop"].status.body("127.0.0.1:9"))
    assert {f["module"]: f["loaded"] for f in status["vulnerabilities"]} == {"evil-pkg": True}
    samples = metrics_of(host)["module_vulnerability_info"]
    assert {(s.labels["module"], s.labels["loaded"]) for s in samples} == {("evil-pkg", "true")}
    assert status["restart_required"] is False

    replacement = extension.with_suffix(".new")
    shutil.copyfile(extension_origin(), replacement)
    os.replace(replacement, extension)  # a new inode: the mapped one is deleted
    target = take(config, host).target("shop")
    assert target is not None
    assert target.snapshot.process.restart_required is True
    assert (str(extension), "deleted") in target.snapshot.process.stale


def test_short_lived_processes_during_refreshes_leave_no_series_behind(tmp_path, services):
    """A few hundred Python processes that start and exit while the host is refreshed
    again and again: no refresh fails, the long-running service is always its one target
    of one process, and once the short-lived ones are gone none of their series remain."""
    make_venv(tmp_path / "shop").install("shop", "1.0")
    make_venv(tmp_path / "churn").install("churn", "1.0")
    services.start(tmp_path / "shop", SLEEPER)
    config = agent_config(tmp_path, services.marker)
    host = wait_until(lambda: (h := take(config)).target("shop") and h, "shop", timeout=20)
    churn = str(tmp_path / "churn" / "bin" / "python")
    short: list[subprocess.Popen[bytes]] = []
    try:
        for round_ in range(60):  # bounded: 60 refreshes, 5 processes started before each
            short = [p for p in short if p.poll() is None]
            for _ in range(5):
                short.append(
                    subprocess.Popen(
                        [churn, "-c", "import time; time.sleep(0.05)", services.marker],
                        env={"PATH": "/usr/bin:/bin"},
                    )
                )
            host = take(config, host)
            shop = host.target("shop")
            assert shop is not None, round_
            assert shop.snapshot.process.processes == 1, round_
            assert {t.name for t in host.targets} <= {"shop", "churn"}
            render_pages(host, RefreshStats(), None)
    finally:
        for process in short:
            process.wait(timeout=10)
    host = take(config, host)
    assert [t.name for t in host.targets] == ["shop"]
    labels = [s.labels for samples in metrics_of(host).values() for s in samples]
    assert not [label for label in labels if label.get("target") == "churn"]
