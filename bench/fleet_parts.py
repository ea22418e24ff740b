"""A fleet on loopback: target trees, status-exporter daemons, and the Prometheus scraping them.

Used by the fleet benchmark (bench/fleet.py) and by the tests that run a small fleet
(tests/test_fleet.py, tests/test_victoriametrics.py). Imports only the standard library and
PyYAML, so that it loads both as ``fleet_parts`` (from bench/) and as ``bench.fleet_parts``.

The trees: each of ``targets`` targets exists in two variants, a and b, each a venv root
(``pyvenv.cfg`` and ``lib/python3.11/site-packages``) of ``distributions`` dist-info
directories; even daemons report variant a, odd ones variant b. The variants differ in
Django's version (3.2.0 with four known advisories in b, 4.2.1 in a) and in one synthetic
module in fifty, so the drift panels and the vulnerability panels have data. Every target has
aiohttp 3.7.3 (medium and high findings); target 0's variant a has evil-pkg 1.0.0 (critical).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OSV = ROOT / "tests" / "data" / "osv"
JOB = "python-status"  # the job the committed rules and dashboard select
PYVENV_CFG = "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11.7\n"
# Distributions every target has besides the synthetic ones (name, version in a, in b).
KNOWN = (("aiohttp", "3.7.3", "3.7.3"), ("Django", "4.2.1", "3.2.0"))
CRITICAL = ("evil-pkg", "1.0.0")  # in target 0, variant a only: MAL-2024-0001


@dataclass(frozen=True)
class Size:
    """Daemons x targets per daemon x distributions per target."""

    daemons: int
    targets: int
    distributions: int

    @property
    def module_series(self) -> int:
        """The module_info series the fleet publishes with modules.publish all."""
        return self.daemons * self.targets * self.distributions

    def __str__(self) -> str:
        return f"{self.daemons} daemons x {self.targets} targets x {self.distributions} dists"


def target_name(index: int) -> str:
    """The name of target ``index`` on every daemon."""
    return f"t{index:03d}"


def build_trees(base: Path, size: Size) -> dict[str, list[Path]]:
    """Variant -> the venv roots of each target (index = target), written under ``base``."""
    past = time.time() - 3600
    roots: dict[str, list[Path]] = {"a": [], "b": []}
    synthetic = size.distributions - len(KNOWN)
    for t in range(size.targets):
        for variant in ("a", "b"):
            root = base / f"{target_name(t)}-{variant}"
            site = root / "lib" / "python3.11" / "site-packages"
            site.mkdir(parents=True)
            (root / "pyvenv.cfg").write_text(PYVENV_CFG)
            dists = [(name, a if variant == "a" else b) for name, a, b in KNOWN]
            if t == 0 and variant == "a":
                dists.append(CRITICAL)
            for j in range(synthetic - (len(dists) - len(KNOWN))):
                k = t * 7 + j
                drift = variant == "b" and j % 50 == 0
                dists.append((f"package-{k:05d}", f"{k % 7}.{k % 13}.{1 if drift else 0}"))
            for name, version in dists:
                info = site / f"{name.replace('-', '_')}-{version}.dist-info"
                info.mkdir()
                (info / "METADATA").write_text(
                    f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                    f"Summary: fleet benchmark\n\n"
                )
            # Old enough that the scanner trusts them (it re-reads what changed within 2 s).
            for path in (site, site.parent, site.parent.parent, root, root / "pyvenv.cfg"):
                os.utime(path, (past, past))
            roots[variant].append(root)
    return roots


def daemon_config(
    path: Path,
    roots: list[Path],
    *,
    commit: str,
    empty: Path,
    publish: str | None = None,
    refresh_seconds: float = 60.0,
) -> Path:
    """Write a daemon's config (JSON is YAML): every root a target, no own modules."""
    modules: dict[str, Any] = {"paths": [str(empty)]}
    if publish is not None:
        modules["publish"] = publish
    data = {
        "modules": modules,
        "refresh": {"interval_seconds": refresh_seconds},
        "advisories": {"paths": [str(OSV)]},
        "commit": {"value": commit},
        "targets": {
            "environments": [
                {
                    "name": target_name(t),
                    "paths": [str(root)],
                    "commit": {"value": commit},
                    "app": {"version": "1.0.0"},
                }
                for t, root in enumerate(roots)
            ]
        },
    }
    path.write_text(json.dumps(data))
    return path


@dataclass
class Process:
    """A child process, its log file, and the address it listens on."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    address: str = ""

    def rss_mb(self) -> float:
        """Resident memory now, in MiB (VmRSS)."""
        return _status_field(self.popen.pid, "VmRSS") / 1024

    def peak_rss_mb(self) -> float:
        """The most resident memory so far, in MiB (VmHWM)."""
        return _status_field(self.popen.pid, "VmHWM") / 1024

    def cpu_seconds(self) -> float:
        """User plus system CPU time used so far, in seconds."""
        fields = Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the log."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the machine so far, all cores (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    total = sum(fields[:8])
    tick = os.sysconf("SC_CLK_TCK")
    return (total - idle) / tick, total / tick


def _status_field(pid: int, name: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return float(line.split()[1])
    return float("nan")


@dataclass
class Processes:
    """Starts children with their output in log files; stops every one it started."""

    logs: Path
    started: list[Process] = field(default_factory=list)

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Process:
        """Start ``args`` with stdout and stderr in ``logs/name.log``."""
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Not the repository: ``python -m`` puts the working directory first on
                # sys.path, and PYTHONPATH must be able to pick another exporter tree.
                cwd=self.logs,
                env={**os.environ, **(env or {})},
            )
        process = Process(name, popen, log)
        self.started.append(process)
        return process

    def stop(self, process: Process, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` s."""
        if process.popen.poll() is None:
            process.popen.send_signal(signal.SIGTERM)
            try:
                process.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait(5)

    def stop_all(self) -> None:
        """Stop every process started, the last first."""
        for process in reversed(self.started):
            self.stop(process)
        self.started.clear()


def wait_until(check: Callable[[], Any], what: str, timeout: float) -> Any:
    """Call ``check`` until it returns something truthy, and return that; raise after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}; last: {last!r}")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 30) -> bytes:
    """GET ``url`` and return the body."""
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return bytes(response.read())


_LISTENING = re.compile(r"listening.*?(127\.0\.0\.1:\d+)")


def start_daemons(
    processes: Processes, configs: list[Path], timeout: float = 120.0
) -> list[Process]:
    """Start one daemon per config on 127.0.0.1 (port 0: no race for ports), all at once,
    and wait until each has published its first refresh on /metrics."""
    daemons = [
        processes.start(
            f"daemon-{index:03d}",
            [
                sys.executable,
                "-m",
                "exporter",
                "--config.file",
                str(config),
                "--web.listen-address",
                "127.0.0.1:0",
            ],
        )
        for index, config in enumerate(configs)
    ]
    for daemon in daemons:

        def listening(d: Process = daemon) -> str | None:
            if d.popen.poll() is not None:
                raise RuntimeError(f"{d.name} exited {d.popen.returncode}:\n{d.log_tail()}")
            found = _LISTENING.search(d.log.read_text(errors="replace"))
            return found.group(1) if found else None

        daemon.address = wait_until(listening, f"{daemon.name} to listen", timeout)
    for daemon in daemons:

        def ready(d: Process = daemon) -> bool:
            with contextlib.suppress(OSError):
                return b"module_info" in http_get(f"http://{d.address}/metrics", timeout=5)
            return False

        wait_until(ready, f"{daemon.name} to publish its modules", timeout)
    return daemons


def prometheus_config(
    path: Path,
    addresses: list[str],
    rules: Path | None,
    *,
    interval: str,
    job: str = JOB,
    timeout: str | None = None,
) -> Path:
    """A Prometheus config scraping ``addresses`` as ``job``, evaluating ``rules``."""
    scrape: dict[str, Any] = {"job_name": job, "static_configs": [{"targets": addresses}]}
    if timeout:
        scrape["scrape_timeout"] = timeout
    data: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [scrape],
    }
    if rules is not None:
        data["rule_files"] = [str(rules)]
    path.write_text(json.dumps(data))
    return path


def start_prometheus(
    processes: Processes, binary: str, config: Path, data: Path, timeout: float = 120.0
) -> tuple[Process, str]:
    """Start Prometheus on a free loopback port; return it and its URL once it is ready."""
    port = free_port()
    process = processes.start(
        "prometheus",
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if process.popen.poll() is not None:
            raise RuntimeError(
                f"prometheus exited {process.popen.returncode}:\n{process.log_tail()}"
            )
        with contextlib.suppress(OSError):
            return http_get(f"{url}/-/ready", timeout=2) is not None
        return False

    wait_until(ready, "Prometheus to be ready", timeout)
    return process, url


@contextlib.contextmanager
def running(logs: Path) -> Iterator[Processes]:
    """A Processes whose children are all stopped on the way out."""
    processes = Processes(logs)
    try:
        yield processes
    finally:
        processes.stop_all()


def fleet_configs(
    base: Path, size: Size, roots: dict[str, list[Path]], publish: str | None = None
) -> list[Path]:
    """One config per daemon: even daemons report variant a (commit aaaaaaa), odd ones b."""
    empty = base / "empty"
    empty.mkdir(exist_ok=True)
    configs = []
    for d in range(size.daemons):
        variant = "ab"[d % 2]
        configs.append(
            daemon_config(
                base / f"daemon-{d:03d}-{publish or 'default'}.json",
                roots[variant],
                commit=variant * 7,
                empty=empty,
                publish=publish,
            )
        )
    return configs
