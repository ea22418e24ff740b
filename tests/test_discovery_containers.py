"""Discovery of real Docker containers by one agent per node.

Containers of the stand-in base (tests/test_container.py: Debian bookworm's Python 3.11,
no registry needed) run ``python3 -c "import time; time.sleep(600)"`` with site-packages
of their own: one from a venv made inside it with ``python3 -m venv``, one from Debian's
``/usr/lib/python3/dist-packages``, and a hostile one whose site-packages is a trap. Two
agents look at them: ``python -m exporter`` started on the host, and the project's image
run as the README says (``docker run --pid host --network host --cap-drop ALL --cap-add
SYS_PTRACE --cap-add DAC_READ_SEARCH --read-only``). Each must report every container as
a target with its Docker id and the container's module versions, never the host's, and
nothing of the trap: no byte of a host file a symlink points at, no environment secret.

Every container made here is removed (``docker rm -f``) in a finally; every wait is
bounded. The setup script runs inside the containers, never on the host.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import version as installed_version
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from support import FIGURES, Daemon, free_port, tool, wait_until
from test_container import base_image, docker, image  # noqa: F401 - image is a fixture

# In every test container's command line (an argument the sleeping Python ignores): the
# agents include only this run's processes, not those of whatever else runs on the machine.
RUN = f"discovery-test-{secrets.token_hex(6)}"
SLEEP = "import time; time.sleep(600)"
# Made of random bytes, so that no escaping changes them; looked for in every output.
MARKER = f"marker{secrets.token_hex(16)}"
TOKEN = f"token{secrets.token_hex(16)}"
HOSTILE_ENTRIES = ("abs", "dotdot", "fifo", "loop", "huge", "loopdir")

# Runs inside a container, by the container's own Python: makes its site-packages.
SETUP = r"""
import os, sys, venv

def dist(site, name, version):
    folder = f"{site}/{name}-{version}.dist-info"
    os.makedirs(folder)
    with open(f"{folder}/METADATA", "w") as f:
        f.write(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n")

mode = sys.argv[1]
if mode == "system":
    site = "/usr/lib/python3/dist-packages"
else:
    root = sys.argv[2]
    venv.create(root, with_pip=False, symlinks=True)
    site = f"{root}/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"
if mode == "hostile":
    host_file = sys.argv[3]
    dist(site, "good", "2.0.0")
    for name in ("abs", "dotdot", "fifo", "loop", "huge"):
        os.makedirs(f"{site}/{name}-1.0.dist-info")
    # An absolute link to the host file's path: read outside this root, it is the host's.
    os.symlink(host_file, f"{site}/abs-1.0.dist-info/METADATA")
    # A ".." chain long enough to climb out of /proc/<pid>/root to the host's /.
    os.symlink("../" * 24 + host_file.lstrip("/"), f"{site}/dotdot-1.0.dist-info/METADATA")
    os.mkfifo(f"{site}/fifo-1.0.dist-info/METADATA")
    os.symlink("METADATA", f"{site}/loop-1.0.dist-info/METADATA")
    with open(f"{site}/huge-1.0.dist-info/METADATA", "wb") as f:
        f.truncate(1 << 30)  # 1 GiB, sparse
    os.symlink("loopdir-1.0.dist-info", f"{site}/loopdir-1.0.dist-info")
else:
    for name, version in zip(sys.argv[3::2], sys.argv[4::2]):
        dist(site, name, version)
"""


@dataclass
class AppContainer:
    """A running container of the base image whose Python sleeps, and what it holds."""

    role: str
    name: str
    id: str
    pid: int
    site: str
    modules: dict[str, str]


@dataclass
class Scene:
    """The containers of this module, all running."""

    containers: dict[str, AppContainer] = field(default_factory=dict)
    host_file: Path = Path("/nonexistent")

    def by_id(self) -> dict[str, AppContainer]:
        """The containers by their Docker id."""
        return {c.id: c for c in self.containers.values()}


def start_app(base: str, setup: Path, role: str, command: str, *extra: str) -> AppContainer:
    """Start one container that runs ``setup``, then its sleeping Python as a child."""
    name = f"status-exporter-discovery-{role}-{secrets.token_hex(4)}"
    docker(
        "run", "--detach", "--name", name, "--network", "none",
        "--volume", f"{setup}:/setup.py:ro", *extra,
        base, "sh", "-c", command,
    )  # fmt: skip
    container_id = docker("inspect", "-f", "{{.Id}}", name)
    shell = int(docker("inspect", "-f", "{{.State.Pid}}", name))

    def sleeping() -> int | None:
        state = docker("inspect", "-f", "{{.State.Running}}", name)
        assert state == "true", f"{name} exited: {docker('logs', name, check=False)}"
        try:
            children = Path(f"/proc/{shell}/task/{shell}/children").read_text().split()
            for child in children:
                argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
                if argv[-2:] == [RUN.encode(), b""]:
                    return int(child)
        except OSError:
            pass
        return None

    # The shell sets up, then starts Python as its child: the Python process starts
    # after every file of its environment was written, as a service started after its
    # install does (exec would keep the shell's earlier start time: restart required).
    pid = wait_until(sleeping, f"{name}'s Python to run", timeout=60)
    return AppContainer(role, name, container_id, pid, "", {})


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    """Three containers of the base image: a venv, Debian's dist-packages, the trap."""
    base = base_image()
    work = tmp_path_factory.mktemp("discovery")
    setup = work / "setup.py"
    setup.write_text(SETUP)
    setup.chmod(0o644)
    # The host file the trap's links name, at a path that does not exist in the container.
    host_file = tmp_path_factory.mktemp("host-only") / "METADATA"
    host_file.write_text(f"Metadata-Version: 2.1\nName: leaked-{MARKER}\nVersion: 6.6.6\n\n")
    host_file.chmod(0o644)
    made = Scene(host_file=host_file)
    sleep = f'"{SLEEP}" {RUN}'
    try:
        # role, what runs in it, its modules as the agents name them, its site-packages,
        # more arguments of docker run.
        apps: list[tuple[str, str, dict[str, str], str, tuple[str, ...]]] = [
            (
                "venv",
                "python3 /setup.py venv /opt/web PyYAML 0.0.1 container-only 7.7.7"
                f" && /opt/web/bin/python3 -c {sleep}",
                {"pyyaml": "0.0.1", "container-only": "7.7.7"},
                "/opt/web/lib/python3.11/site-packages",
                (),
            ),
            (
                "system",
                f"python3 /setup.py system - PyYAML 0.0.2 system-only 5.5.5 && python3 -c {sleep}",
                {"pyyaml": "0.0.2", "system-only": "5.5.5"},
                "/usr/lib/python3/dist-packages",
                (),
            ),
            (
                "hostile",
                f"python3 /setup.py hostile /opt/hostile {host_file}"
                f" && /opt/hostile/bin/python3 -c {sleep}",
                {"good": "2.0.0"},
                "/opt/hostile/lib/python3.11/site-packages",
                ("--env", f"API_TOKEN={TOKEN}"),
            ),
        ]
        for role, command, modules, site, extra in apps:
            container = start_app(base, setup, role, command, *extra)
            made.containers[role] = container
            container.modules = modules
            container.site = site
        yield made
    finally:
        for container in made.containers.values():
            docker("rm", "-f", container.name, check=False)


@dataclass
class Agent:
    """A running agent: how to GET from it and how to read its log so far."""

    kind: str
    get: Callable[[str], tuple[int, bytes]]
    log: Callable[[], str]


def agent_config(path: Path) -> Path:
    """The agent's config: discovery of this run's processes, refreshed every second."""
    config = {
        "refresh": {"interval_seconds": 1},
        "targets": {"discover": {"processes": True, "include": [{"cmdline": re.escape(RUN)}]}},
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o644)
    return path


def http_get(url: str) -> tuple[int, bytes]:
    """A GET with a bound; the status and body, errors included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture(scope="module", params=["host", "container"])
def agent(request: pytest.FixtureRequest, scene: Scene, tmp_path_factory) -> Iterator[Agent]:
    """An agent on the host (a child process) or in a container of the project's image."""
    config = agent_config(tmp_path_factory.mktemp("agent") / "agent.yaml")
    started = time.monotonic()
    if request.param == "host":
        with Daemon(config) as daemon:
            yield from _ready(
                Agent("host", daemon.get, lambda: "".join(daemon.lines)), scene, started
            )
        return
    tag = request.getfixturevalue("image")
    port = free_port()
    name = f"status-exporter-agent-{secrets.token_hex(4)}"
    try:
        docker(
            "run", "--detach", "--name", name,
            "--pid", "host", "--network", "host",
            "--cap-drop", "ALL", "--cap-add", "SYS_PTRACE", "--cap-add", "DAC_READ_SEARCH",
            # The image's user, 10001, would hold none of the added capabilities.
            "--user", "0", "--security-opt", "no-new-privileges", "--read-only",
            "--env", f"HEALTHCHECK_URL=http://127.0.0.1:{port}/healthz",
            "--volume", f"{config}:/etc/status-exporter/config.yaml:ro",
            tag, f"--web.listen-address=127.0.0.1:{port}",
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"

        def log() -> str:
            done = subprocess.run(
                [tool("docker"), "logs", name], capture_output=True, text=True, timeout=30
            )
            return done.stdout + done.stderr

        def answering() -> bool:
            try:
                return http_get(url + "/readyz")[0] == 200
            except OSError:
                assert docker("inspect", "-f", "{{.State.Running}}", name) == "true", log()
                return False

        wait_until(answering, f"{name} to answer", timeout=60)
        yield from _ready(Agent("container", lambda p: http_get(url + p), log), scene, started)
    finally:
        docker("rm", "-f", name, check=False)


def _ready(agent: Agent, scene: Scene, started: float) -> Iterator[Agent]:
    """Wait until the agent reports every container with its modules read, then yield it."""

    def all_read() -> bool:
        code, body = agent.get("/api/v1/targets")
        if code == 503:  # the first snapshot is still being taken
            return False
        assert code == 200, body
        found = {t["labels"].get("container_id"): t for t in json.loads(body)["targets"]}
        return all(cid in found and found[cid]["module_count"] is not None for cid in scene.by_id())

    wait_until(all_read, f"the {agent.kind} agent to report the containers", timeout=90)
    FIGURES[
        f"discovery: {agent.kind} agent start (image build included) to every container seen"
    ] = f"{time.monotonic() - started:.1f} s"
    yield agent


def targets(agent: Agent) -> list[dict]:
    """``/api/v1/targets``, parsed."""
    code, body = agent.get("/api/v1/targets")
    assert code == 200, body
    return json.loads(body)["targets"]


def metrics(agent: Agent) -> dict[str, Metric]:
    """``/metrics`` parsed with prometheus_client's parser: family name -> family."""
    code, body = agent.get("/metrics")
    assert code == 200
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def samples(families: dict[str, Metric], name: str) -> dict[str, tuple[dict[str, str], float]]:
    """The samples of family ``name`` by their target label: (labels, value)."""
    family = families[name]
    return {s.labels["target"]: (s.labels, s.value) for s in family.samples}


def target_of(agent: Agent, container: AppContainer) -> dict:
    """The agent's target whose container_id is ``container``'s Docker id."""
    (found,) = [t for t in targets(agent) if t["labels"].get("container_id") == container.id]
    return found


def test_the_trap_would_leak_through_a_plain_open(scene):
    """The trap is armed: a plain open of the hostile container's absolute link through
    /proc/<pid>/root reads the host's file (so a resolver that is not confined to the
    root would leak the marker)."""
    hostile = scene.containers["hostile"]
    naive = Path(f"/proc/{hostile.pid}/root{hostile.site}/abs-1.0.dist-info/METADATA")
    assert scene.host_file.exists()
    assert os.readlink(naive) == str(scene.host_file)
    assert MARKER in naive.read_text()
    assert TOKEN.encode() in Path(f"/proc/{hostile.pid}/environ").read_bytes()


def test_each_container_is_a_target_with_its_docker_id(agent, scene):
    """Every container is one process target whose container_id is docker inspect's Id, in
    target_info and in /api/v1/targets, with one process and no restart required."""
    families = metrics(agent)
    info = samples(families, "target_info")
    by_id = {labels.get("container_id"): labels for labels, _ in info.values()}
    for container in scene.containers.values():
        labels = by_id[container.id]
        assert labels["kind"] == "process"
        assert labels["target"] == target_of(agent, container)["name"]
        # A Docker container outside Kubernetes: no pod, no unit of its own.
        assert not {"pod", "pod_uid", "namespace", "unit"} & set(labels)
        assert samples(families, "target_processes")[labels["target"]][1] == 1
        assert samples(families, "target_restart_required")[labels["target"]][1] == 0
    assert set(scene.by_id()) <= set(by_id)


def test_each_target_reports_the_containers_modules_not_the_hosts(agent, scene):
    """A container's target lists the distributions in the container's own site-packages,
    at the container's versions (PyYAML 0.0.1 and 0.0.2 where the host has another), and the
    container's Python."""
    assert installed_version("pyyaml") not in {"0.0.1", "0.0.2"}
    families = metrics(agent)
    module_info = families["module_info"]
    for container in scene.containers.values():
        target = target_of(agent, container)
        code, body = agent.get(target["status_url"])
        assert code == 200, body
        status = json.loads(body)
        assert status["modules"] == container.modules, container.role
        assert "3.11" in status["python_version"]
        published = {
            s.labels["module"]: s.labels["version"]
            for s in module_info.samples
            if s.labels.get("target") == target["name"]
        }
        assert published == container.modules


def outputs(agent: Agent) -> dict[str, bytes]:
    """Everything the agent serves: the host's documents and every target's."""
    paths = ["/", "/metrics", "/api/v1/targets", "/api/v1/modules", "/api/v1/status/"]
    for target in targets(agent):
        paths += [target["status_url"], target["page_url"], target["sbom_url"]]
    served = {}
    for path in paths:
        code, body = agent.get(path)
        assert code == 200, (path, body[:500])
        served[path] = body
    return served


def test_the_hostile_container_leaks_nothing_and_costs_skipped_entries(agent, scene):
    """Absolute and .. links to a host file, a FIFO, a link loop, a directory loop and a
    1 GiB METADATA cost one skipped entry each; no byte of the host file nor the secret in
    the container's environment is in any output or log line, over several refreshes,
    and the agent keeps answering."""
    hostile = target_of(agent, scene.containers["hostile"])
    families = metrics(agent)
    skipped = samples(families, "status_exporter_modules_skipped")
    assert skipped[hostile["name"]][1] == len(HOSTILE_ENTRIES)
    refreshes = counter(families, "status_exporter_refreshes")
    wait_until(
        lambda: counter(metrics(agent), "status_exporter_refreshes") >= refreshes + 3,
        "three more refreshes",
        timeout=60,
    )
    served = outputs(agent)
    log = agent.log()
    for secret in (MARKER, TOKEN, "leaked-", "6.6.6"):
        leaks = [path for path, body in served.items() if secret.encode() in body]
        assert leaks == [], f"{secret} in {leaks}"
        assert secret not in log
    assert agent.get("/healthz") == (200, b"ok\n")
    rss = samples_value(metrics(agent), "process_resident_memory_bytes")
    FIGURES[f"discovery: {agent.kind} agent RSS after the trap"] = f"{rss / 1e6:.0f} MB"
    assert rss < 200e6  # the 1 GiB METADATA was never read whole


def counter(families: dict[str, Metric], name: str) -> float:
    """The ``_total`` of counter family ``name`` (no labels)."""
    family = families[name]
    (total,) = [s for s in family.samples if s.name.endswith("_total")]
    return float(total.value)


def samples_value(families: dict[str, Metric], name: str) -> float:
    """The value of the single sample of family ``name``."""
    (sample,) = families[name].samples
    return float(sample.value)


def test_without_the_capabilities_the_agent_counts_what_it_may_not_read(
    request: pytest.FixtureRequest, scene: Scene, tmp_path: Path
) -> None:
    """As the image's own user (10001) with no capability, the agent reports none of the
    root-owned containers, counts them (and the host's other root processes) as denied,
    and keeps answering."""
    tag = request.getfixturevalue("image")
    config = agent_config(tmp_path / "agent.yaml")
    port = free_port()
    name = f"status-exporter-agent-{secrets.token_hex(4)}"
    try:
        docker(
            "run", "--detach", "--name", name, "--pid", "host", "--network", "host",
            "--cap-drop", "ALL", "--read-only", "--security-opt", "no-new-privileges",
            "--env", f"HEALTHCHECK_URL=http://127.0.0.1:{port}/healthz",
            "--volume", f"{config}:/etc/status-exporter/config.yaml:ro",
            tag, f"--web.listen-address=127.0.0.1:{port}",
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"

        def denied() -> float:
            try:
                code, body = http_get(url + "/metrics")
            except OSError:
                return 0
            if code != 200:
                return 0
            families = {f.name: f for f in text_string_to_metric_families(body.decode())}
            return samples_value(families, "status_exporter_processes_denied")

        assert wait_until(denied, "processes counted as denied", timeout=60) >= len(
            scene.containers
        )
        found = json.loads(http_get(url + "/api/v1/targets")[1])["targets"]
        ids = {t["labels"].get("container_id") for t in found}
        assert not ids & set(scene.by_id())
        assert http_get(url + "/healthz") == (200, b"ok\n")
    finally:
        docker("rm", "-f", name, check=False)
