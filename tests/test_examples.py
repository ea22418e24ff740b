"""The examples in examples/ start and serve the status, each as its own process."""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import suppress
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import free_port

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def fetch(url: str, deadline: float) -> bytes:
    """GET ``url``, retrying while the example starts (or answers 503 before its first snapshot)."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return bytes(response.read())
        except (urllib.error.URLError, ConnectionError) as error:
            if time.monotonic() > deadline:
                raise AssertionError(f"{url}: {error}") from None
            time.sleep(0.1)


def logged_address(process: subprocess.Popen, deadline: float) -> str:
    """The ``http://host:port`` the example logs on stderr; stderr is drained from then on."""
    lines: queue.Queue[bytes | None] = queue.Queue()

    def drain() -> None:
        for line in process.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    seen = []
    with suppress(queue.Empty):
        while (line := lines.get(timeout=max(0.0, deadline - time.monotonic()))) is not None:
            seen.append(line.decode(errors="replace"))
            if found := re.search(r"listening on (http://127\.0\.0\.1:[0-9]+)/", seen[-1]):
                return found.group(1)
    raise AssertionError("the example logged no 'listening on' address:\n" + "".join(seen))


@pytest.fixture
def run_example():
    processes = []

    def run(*args: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        processes.append(process)
        return process

    yield run
    for process in processes:
        process.terminate()
        process.wait(10)


def test_aiohttp_example(run_example):
    """The aiohttp app logs where it listens, keeps its own route, gains status and metrics."""
    process = run_example(str(EXAMPLES / "aiohttp_app.py"), "--port", "0")
    deadline = time.monotonic() + 30
    base = logged_address(process, deadline)
    assert not base.endswith(":0")
    assert fetch(f"{base}/", deadline) == b"hello from the application\n"
    status = json.loads(fetch(f"{base}/api/v1/status/", deadline))
    assert "aiohttp" in status["modules"]
    names = {
        f.name for f in text_string_to_metric_families(fetch(f"{base}/metrics", deadline).decode())
    }
    assert {"build_info", "module_info"} <= names


def test_wsgi_example(run_example):
    """The WSGI app serves the info series on prometheus_client's /metrics, and /status."""
    port = free_port()
    run_example(str(EXAMPLES / "wsgi_app.py"), "--port", str(port))
    deadline = time.monotonic() + 30
    base = f"http://127.0.0.1:{port}"
    text = fetch(f"{base}/metrics", deadline).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {"build_info", "python_info", "platform_info", "module_info"} <= set(families)
    modules = {s.labels["module"] for s in families["module_info"].samples}
    assert "prometheus-client" in modules
    status = json.loads(fetch(f"{base}/status", deadline))
    assert status["server_address"] == f"127.0.0.1:{port}"


def test_django_example(run_example):
    """The Django view returns the original API's fields for its own loaded modules."""
    port = free_port()
    run_example(str(EXAMPLES / "django_app.py"), "runserver", f"127.0.0.1:{port}", "--noreload")
    deadline = time.monotonic() + 60
    status = json.loads(fetch(f"http://127.0.0.1:{port}/api/v1/status/", deadline))
    assert status["server_address"] == f"127.0.0.1:{port}"
    assert "django" in status["modules"]
    assert status["modules"]["json"]
    assert set(status["platform_info"]) == {
        "system",
        "node",
        "release",
        "version",
        "machine",
        "processor",
    }
