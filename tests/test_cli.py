"""The command line: config errors exit 2 with a message, signals stop it cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import Daemon, FakeEnvironment


def run_cli(*args, timeout=30):
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def config_file(tmp_path, fake_env: FakeEnvironment):
    fake_env.install("django", "4.2.1")
    path = tmp_path / "config.yaml"
    path.write_text(
        "modules:\n  paths: [site-packages]\n"
        "commit:\n  env: [TEST_COMMIT]\n"
        "refresh:\n  interval_seconds: 60\n"
    )
    return path


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (None, "no such file"),
        ("web: [", "invalid YAML"),
        ("nope: 1", "nope: unknown key"),
        ("refresh: {interval_seconds: soon}", "refresh.interval_seconds: expected a number"),
        ("web: {listen_address: 'nowhere'}", "web.listen_address"),
    ],
)
def test_bad_config_exits_2_with_one_clear_message(tmp_path, text, fragment):
    """Each bad config names the file, the key and the problem, exits 2, and shows no traceback."""
    path = tmp_path / "config.yaml"
    if text is not None:
        path.write_text(text)
    done = run_cli("--config.file", str(path))
    assert done.returncode == 2
    assert fragment in done.stderr
    assert str(path) in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_listen_flag_exits_2(config_file):
    """A malformed --web.listen-address is a usage error, exit 2."""
    done = run_cli("--config.file", str(config_file), "--web.listen-address", "8080")
    assert done.returncode == 2
    assert "--web.listen-address" in done.stderr


def test_config_check_and_version(config_file):
    """--config.check validates and exits 0; --version prints the version."""
    done = run_cli("--config.file", str(config_file), "--config.check")
    assert done.returncode == 0
    assert "valid" in done.stdout
    assert run_cli("--version").stdout.startswith("status-exporter ")


def test_port_in_use_exits_1_with_a_message(config_file):
    """A listen address that cannot be bound is reported and exits 1."""
    with Daemon(config_file) as daemon:
        done = run_cli("--config.file", str(config_file), "--web.listen-address", daemon.address)
        assert done.returncode == 1
        assert "cannot listen" in done.stderr
        daemon.stop()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serves_then_stops_on_signal_within_a_second(config_file, signum):
    """It serves both endpoints, logs a startup summary, and exits 0 on a signal in < 1 s."""
    with Daemon(config_file, env={"TEST_COMMIT": "178d2ea"}) as daemon:
        summary = daemon.wait_for("status-exporter started")
        for field in (
            "platform=",
            "python=",
            "modules=1",
            "commit=178d2ea",
            "server_id=",
            "api_version=1",
            "listen=127.0.0.1:",
        ):
            assert field in summary
        code, body = daemon.get("/api/v1/status/")
        assert code == 200
        assert json.loads(body)["modules"] == {"django": "4.2.1"}
        code, body = daemon.get("/metrics")
        names = {f.name for f in text_string_to_metric_families(body.decode())}
        assert {"build_info", "python_info", "platform_info", "module_info"} <= names
        code, elapsed = daemon.stop(signum)
        assert code == 0
        assert elapsed < 1.0
        assert "Traceback" not in "".join(daemon.lines)


def test_json_log_format(config_file):
    """--log.format json writes one JSON object a line."""
    with Daemon(config_file, "--log.format", "json") as daemon:
        line = daemon.wait_for('"msg": "status-exporter started"')
        record = json.loads(line)
        assert record["level"] == "info"
        assert record["modules"] == 1
        daemon.stop()


@pytest.mark.parametrize(("switch", "expected"), [("true", "uvloop"), ("false", "asyncio")])
def test_uvloop_switch(tmp_path, switch, expected):
    """web.uvloop picks uvloop when installed, and false keeps asyncio's loop."""
    path = tmp_path / "config.yaml"
    path.write_text(f"web: {{uvloop: {switch}}}\nmodules: {{paths: [{tmp_path}]}}\n")
    with Daemon(path) as daemon:
        assert f"event_loop={expected}" in daemon.lines[-1]
        daemon.wait_for("status-exporter started")
        assert daemon.get("/metrics")[0] == 200
        assert daemon.stop()[0] == 0
