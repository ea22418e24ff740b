"""The container image, built as the README says and run for real on a Docker engine.

CI has no container registry: its base image is a stand-in made from Debian's own
packages (deploy/docker/stand-in-base.sh: Debian bookworm's Python 3.11, tagged
python:3.11-slim), not the official image. Containers use the host's network and
listen on 127.0.0.1 ports picked free; every image, container and volume made here
is removed. Mandatory in CI (STATUS_EXPORTER_REQUIRE_TOOLS=1), skipped elsewhere when
no engine answers.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from support import FIGURES, free_port, tool, unavailable, wait_until

REPO = Path(__file__).resolve().parent.parent
BASE = "python:3.11-slim"
COMMIT = "abc1234"


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    """Run the docker client; its standard output, stripped. Fails on an error when ``check``."""
    done = subprocess.run(
        [tool("docker"), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {done.stderr or done.stdout}")
    return done.stdout.strip()


def base_image() -> str:
    """The base image's tag, made by the stand-in script when missing; skips (or, in CI,
    fails) without a Docker engine."""
    tool("docker")
    if subprocess.run([tool("docker"), "info"], capture_output=True, timeout=60).returncode:
        unavailable("no Docker engine answers (docker info failed)")
    if subprocess.run([tool("docker"), "image", "inspect", BASE], capture_output=True).returncode:
        tool("debootstrap")
        subprocess.run(
            [str(REPO / "deploy/docker/stand-in-base.sh"), "bookworm", BASE],
            check=True,
            timeout=900,
        )
    return BASE


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    """The project's image, built from the stand-in base as the README says."""
    base_image()
    tag = f"status-exporter-test:{uuid.uuid4().hex[:12]}"
    dangling = set(docker("images", "--quiet", "--filter", "dangling=true").split())
    started = time.monotonic()
    subprocess.run(
        [
            tool("docker"),
            "build",
            "--network",
            "host",
            "--build-arg",
            f"COMMIT={COMMIT}",
            "-t",
            tag,
            ".",
        ],
        cwd=REPO,
        env={"DOCKER_BUILDKIT": "0", "PATH": "/usr/local/bin:/usr/bin:/bin"},
        check=True,
        capture_output=True,
        timeout=900,
    )
    FIGURES["container image build"] = f"{time.monotonic() - started:.1f} s"
    size = int(docker("image", "inspect", "-f", "{{.Size}}", tag))
    FIGURES["container image size"] = f"{size / 1e6:.0f} MB (on a {BASE} stand-in of Debian)"
    try:
        yield tag
    finally:
        docker("rmi", "-f", tag, check=False)
        # The classic builder leaves the build stage behind as an untagged image.
        left = set(docker("images", "--quiet", "--filter", "dangling=true").split()) - dangling
        if left:
            docker("rmi", "-f", *left, check=False)


class Container:
    """One running container of the image, on 127.0.0.1:port of the host network."""

    def __init__(self, image: str, *options: str, args: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.name = f"status-exporter-test-{uuid.uuid4().hex[:12]}"
        docker(
            "run",
            "--detach",
            "--name",
            self.name,
            "--network",
            "host",
            "--read-only",
            "--cap-drop",
            "ALL",
            "--env",
            f"HEALTHCHECK_URL=http://127.0.0.1:{self.port}/healthz",
            *options,
            image,
            f"--web.listen-address=127.0.0.1:{self.port}",
            *args,
        )
        wait_until(self._ready, f"{self.name} to answer", 30)

    def _ready(self) -> bool:
        try:
            return self.get("/readyz")[0] == 200
        except OSError:
            running = docker("inspect", "-f", "{{.State.Running}}", self.name)
            assert running == "true", docker("logs", self.name, check=False)
            return False

    def get(self, path: str) -> tuple[int, bytes]:
        """A GET on the container; returns status and body."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            return r.status, r.read()

    def status(self) -> dict:
        """The status JSON, parsed."""
        return json.loads(self.get("/api/v1/status/")[1])

    def remove(self) -> None:
        """Stop and remove the container."""
        docker("rm", "-f", self.name, check=False)


@pytest.fixture
def container(image: str) -> Iterator[Container]:
    running = Container(image, "--health-interval", "1s")
    try:
        yield running
    finally:
        running.remove()


def test_the_image_serves_as_a_non_root_user_with_the_baked_commit(container):
    """/healthz, /metrics and the status answer, read-only and capability-less, as UID 10001."""
    assert container.get("/healthz") == (200, b"ok\n")
    families = {
        f.name: f for f in text_string_to_metric_families(container.get("/metrics")[1].decode())
    }
    assert families["build_info"].samples[0].labels["commit"] == COMMIT
    status = container.status()
    assert status["commit"] == COMMIT
    proc = docker("exec", container.name, "cat", "/proc/1/status")
    uids = next(line for line in proc.splitlines() if line.startswith("Uid:")).split()[1:]
    assert set(uids) == {"10001"}


def test_the_image_reports_its_own_modules_not_the_build_tools(container):
    """The runtime venv holds the daemon and its dependencies: no pip, setuptools or wheel."""
    modules = container.status()["modules"]
    assert {"status-exporter", "aiohttp", "prometheus-client", "pyyaml", "uvloop"} <= set(modules)
    assert not {"pip", "setuptools", "wheel"} & set(modules)


def test_the_healthcheck_turns_healthy_and_stop_exits_0(container):
    """The image's HEALTHCHECK reports healthy; docker stop ends it with status 0 in time."""
    test = json.loads(docker("inspect", "-f", "{{json .Config.Healthcheck.Test}}", container.name))
    assert "HEALTHCHECK_URL" in " ".join(test)
    started = time.monotonic()
    wait_until(
        lambda: docker("inspect", "-f", "{{.State.Health.Status}}", container.name) == "healthy",
        "the container to turn healthy",
        60,
    )
    FIGURES["container time to healthy"] = f"{time.monotonic() - started:.1f} s after ready"
    started = time.monotonic()
    docker("stop", "--time", "10", container.name, timeout=30)
    stopped = time.monotonic() - started
    assert docker("inspect", "-f", "{{.State.ExitCode}}", container.name) == "0"
    assert stopped < 10
    FIGURES["container docker stop"] = f"{stopped:.1f} s, exit status 0"


def test_a_config_mounted_over_the_default_is_used(image, tmp_path):
    """A config.yaml mounted at /etc/status-exporter/config.yaml replaces the shipped one."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"app": {"version": "9.9.9"}, "redact": {"hostname": True}}))
    config.chmod(0o644)
    running = Container(image, "--volume", f"{config}:/etc/status-exporter/config.yaml:ro")
    try:
        status = running.status()
        assert status["platform_info"]["node"] == "<redacted>"
        text = running.get("/metrics")[1].decode()
        assert 'version="9.9.9"' in text
    finally:
        running.remove()


def test_the_sidecar_layout_discovers_the_application_process(image):
    """Two containers, one PID namespace (shareProcessNamespace): with SYS_PTRACE alone the
    exporter finds the application's process and reports the application's venv, modules
    and commit as a target, and not itself."""
    overlay = REPO / "deploy/kubernetes/overlays/sidecar/config.yaml"
    app = f"status-exporter-test-app-{uuid.uuid4().hex[:12]}"
    # The application image's venv in /opt/venv, its command a console script's shebang.
    script = (
        "python -m venv --without-pip /opt/venv"
        " && site=/opt/venv/lib/python3.11/site-packages"
        " && mkdir $site/flask-3.0.0.dist-info"
        " && printf 'Metadata-Version: 2.1\\nName: Flask\\nVersion: 3.0.0\\n\\n'"
        " > $site/flask-3.0.0.dist-info/METADATA"
        " && exec /opt/venv/bin/python -c 'import time; time.sleep(600)'"
    )
    try:
        docker(
            "run", "--detach", "--name", app, "--network", "none", "--env", "COMMIT=app5678",
            "--user", "0", "--entrypoint", "sh", BASE, "-c", script,
        )  # fmt: skip
        running = Container(
            image,
            "--pid", f"container:{app}",
            "--cap-add", "SYS_PTRACE", "--user", "0", "--security-opt", "no-new-privileges",
            "--volume", f"{overlay}:/etc/status-exporter/config.yaml:ro",
        )  # fmt: skip
        try:

            def app_found() -> list[dict]:
                found = json.loads(running.get("/api/v1/targets")[1])["targets"]
                return [t for t in found if t["module_count"] is not None]

            (target,) = wait_until(app_found, "the application's target", 60)
            status = json.loads(running.get(target["status_url"])[1])
            assert status["modules"] == {"flask": "3.0.0"}
            assert status["commit"] == "app5678"
            assert "/opt/venv" in " ".join(target["paths"])
            assert running.status()["commit"] == COMMIT  # its own environment stays its own
        finally:
            running.remove()
    finally:
        docker("rm", "-f", app, check=False)
