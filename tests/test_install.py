"""Installing on a server as the README says: a wheel in a clean venv, the config in an
/etc-like directory, the daemon answering from that venv, the systemd unit checked by
systemd's own tools, then run by a real systemd booted in a container."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from support import FIGURES, free_port, tool, unavailable, wait_until

import exporter

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "deploy" / "systemd" / "status-exporter.service"
AGENT_UNIT = REPO / "deploy" / "systemd" / "status-exporter-agent.service"
SYSUSERS = REPO / "deploy" / "systemd" / "status-exporter.sysusers"
# Where the README installs to; the tests put the same layout under a temporary root.
OPT = "/opt/status-exporter"
ETC = "/etc/status-exporter"
EXTRAS = ("uvloop",)  # what the README installs, as the container image does

# Lists the venv's distributions and those that status-exporter[extras] needs, following
# every Requires-Dist whose marker holds; run by the venv's own Python.
CLOSURE = """
import importlib.metadata as md, json, sys
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name as canon
dists = {canon(d.metadata["Name"]): d for d in md.distributions()}
needed, todo = set(), [("status-exporter", frozenset(sys.argv[1:]))]
while todo:
    name, extras = todo.pop()
    if (name, extras) in needed:
        continue
    needed.add((name, extras))
    for text in dists[name].requires or []:
        req = Requirement(text)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in {"", *extras}):
            todo.append((canon(req.name), frozenset(req.extras)))
print(json.dumps({"installed": sorted(dists), "needed": sorted({n for n, _ in needed})}))
"""


@dataclass
class Installed:
    """A wheel built from the repository and installed in a clean venv under ``root``."""

    root: Path
    wheel: Path
    venv: Path
    config: Path

    @property
    def binary(self) -> Path:
        """The venv's ``status-exporter``, the unit's ExecStart."""
        return self.venv / "bin" / "status-exporter"

    def here(self, text: str) -> str:
        """``text`` with the README's /opt and /etc paths moved under this root."""
        return text.replace(OPT, str(self.venv)).replace(ETC, str(self.config.parent))


def clean_env() -> dict[str, str]:
    """This environment without the test venv's traces, nor a commit to report."""
    drop = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "COMMIT", "GIT_COMMIT", "SOURCE_COMMIT"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def run(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a command from / with the clean environment; fail with its output if it fails."""
    done = subprocess.run(
        [str(a) for a in args],
        cwd="/",
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Build the wheel from a copy of the sources, install it in a new venv, copy the config."""
    root = tmp_path_factory.mktemp("server")
    # What the Dockerfile copies: building in the checkout would leave build/ behind.
    source = root / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(
        REPO / "exporter", source / "exporter", ignore=shutil.ignore_patterns("__pycache__")
    )
    started = time.monotonic()
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", root / "dist", source)
    (wheel,) = (root / "dist").glob("status_exporter-*.whl")
    built = time.monotonic()
    venv = root / OPT.lstrip("/")
    # No pip of its own (ensurepip costs more than the rest): the suite's pip installs
    # into it. The README's way, with the venv's own pip, runs in the systemd container.
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    extras = ",".join(EXTRAS)
    pip = [sys.executable, "-m", "pip", "--python", venv / "bin" / "python"]
    run(*pip, "install", "--quiet", f"{wheel}[{extras}]")
    FIGURES["install: wheel build"] = f"{built - started:.1f} s"
    FIGURES["install: venv and pip install of the wheel"] = f"{time.monotonic() - built:.1f} s"
    config = root / ETC.lstrip("/") / "config.yaml"
    config.parent.mkdir(parents=True)
    shutil.copy2(REPO / "config.yaml", config)
    return Installed(root, wheel, venv, config)


def unit_lines(text: str) -> list[tuple[str, str, str]]:
    """A unit file's (section, key, value) in order; repeated keys stay separate."""
    entries, section = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        assert not line.endswith("\\"), f"continuation lines are not parsed here: {line}"
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line}"
        entries.append((section, key.strip(), value.strip()))
    return entries


def service(text: str) -> dict[str, list[str]]:
    """The [Service] section: key -> every value given, in order."""
    values: dict[str, list[str]] = {}
    for section, key, value in unit_lines(text):
        if section == "Service":
            values.setdefault(key, []).append(value)
    return values


def exec_args(installed: Installed, key: str) -> list[list[str]]:
    """The unit's ExecStart or ExecReload command lines, pointed at the test's root."""
    lines = service(UNIT.read_text())[key]
    return [installed.here(line).replace("$MAINPID", "{pid}").split() for line in lines]


def test_the_wheel_holds_the_package_and_its_entry_point(installed):
    """The wheel carries exporter/ with its data files and the script, and no tests or tools."""
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = wheel.namelist()
        info = f"status_exporter-{exporter.__version__}.dist-info"
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    assert {"exporter/openapi.json", "exporter/py.typed", "exporter/cli.py"} <= set(names)
    assert {n.split("/")[0] for n in names} == {"exporter", info}
    assert "status-exporter = exporter.cli:main" in entry_points


def test_the_installed_command_runs_from_the_venv_not_the_checkout(installed):
    """``status-exporter --version`` answers this version, importing the venv's copy."""
    done = run(installed.binary, "--version")
    assert done.stdout.strip() == f"status-exporter {exporter.__version__}"
    where = run(
        installed.venv / "bin" / "python", "-c", "import exporter; print(exporter.__file__)"
    )
    assert Path(where.stdout.strip()).is_relative_to(installed.venv / "lib")


def test_the_venv_holds_only_the_runtime_dependencies(installed):
    """Every distribution in the venv is one that status-exporter[uvloop] needs."""
    python = installed.venv / "bin" / "python"
    found = json.loads(run(python, "-c", CLOSURE, *EXTRAS).stdout)
    assert found["installed"] == found["needed"]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = {canonicalize_name(Requirement(r).name) for r in pyproject["dependencies"]}
    assert runtime <= set(found["needed"])
    test_only = {
        canonicalize_name(Requirement(r).name) for r in pyproject["optional-dependencies"]["test"]
    } - {canonicalize_name(e) for e in EXTRAS}
    assert {"pytest", "ruff", "mypy"} <= test_only
    assert not test_only & set(found["installed"])


def test_config_check_passes_on_the_shipped_config_and_fails_on_a_broken_one(installed):
    """The unit's config check accepts config.yaml in /etc and rejects an unknown key, exit 2."""
    (check,) = [line for line in exec_args(installed, "ExecReload") if "--config.check" in line]
    assert "configuration is valid" in run(*check).stdout
    broken = installed.root / "broken" / "config.yaml"
    broken.parent.mkdir()
    broken.write_text(installed.config.read_text() + "\nnope: 1\n")
    args = [a.replace(str(installed.config), str(broken)) for a in check]
    done = subprocess.run(
        args, cwd="/", env=clean_env(), capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "nope: unknown key" in done.stderr


@pytest.fixture
def daemon(installed, tmp_path) -> Iterator[tuple[subprocess.Popen[str], Path, str]]:
    """The unit's ExecStart from the installed venv, on a free 127.0.0.1 port, run from /."""
    (start,) = exec_args(installed, "ExecStart")
    log = tmp_path / "daemon.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [*start, "--web.listen-address=127.0.0.1:0"],
            cwd="/",
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
        )
    try:
        found = wait_until(
            lambda: (
                process.poll() is not None
                or re.search(r"msg=listening address=(127\.0\.0\.1:\d+)", log.read_text())
            ),
            "the daemon to listen",
            timeout=30,
        )
        assert isinstance(found, re.Match), log.read_text()
        # Ready once the first snapshot is taken (503 until then).
        wait_until(lambda: "status-exporter started" in log.read_text(), "ready", timeout=30)
        yield process, log, f"http://{found[1]}"
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def get(url: str) -> tuple[int, bytes]:
    """A blocking GET; status and body."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read()


def test_the_installed_daemon_serves_reloads_and_stops(installed, daemon):
    """From the venv: /metrics and the status JSON answer 200, listing the venv's modules;
    the unit's ExecReload reloads it; SIGTERM stops it with status 0."""
    process, log, url = daemon
    status, body = get(url + "/metrics")
    assert status == 200
    assert b"status_exporter_build_info{" in body
    status, body = get(url + "/api/v1/status/")
    assert status == 200
    modules = json.loads(body)["modules"]
    found = json.loads(run(installed.venv / "bin" / "python", "-c", CLOSURE, *EXTRAS).stdout)
    assert set(modules) == set(found["installed"])
    assert modules["status-exporter"] == exporter.__version__
    assert "event_loop=uvloop" in log.read_text()

    for line in exec_args(installed, "ExecReload"):
        assert line[0] == "/bin/kill" or Path(line[0]) == installed.binary
        run(*(arg.format(pid=process.pid) for arg in line))
    wait_until(lambda: "configuration reloaded" in log.read_text(), "the reload", timeout=10)
    _, body = get(url + "/metrics")
    assert b"status_exporter_config_last_reload_successful 1.0" in body

    process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 0


# The unit, checked by systemd's own tools (Debian's systemd package).


def test_the_unit_has_the_hardening_the_readme_promises():
    """Its own user, no privileges or capabilities, a read-only system, reload by SIGHUP."""
    unit = service(UNIT.read_text())
    one = {key: values[-1] for key, values in unit.items()}
    assert one["User"] == one["Group"] == "status-exporter"
    assert "DynamicUser" not in unit
    expected = {
        "Type": "exec",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "RestrictSUIDSGID": "yes",
        "MemoryDenyWriteExecute": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectControlGroups": "yes",
        "SystemCallArchitectures": "native",
        "Restart": "on-failure",
        "RestartPreventExitStatus": "2",
    }
    assert {key: one.get(key) for key in expected} == expected
    assert unit["CapabilityBoundingSet"] == [""]  # given once, and empty
    assert set(one["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert unit["ExecStart"] == [f"{OPT}/bin/status-exporter --config.file={ETC}/config.yaml"]
    assert unit["ExecReload"] == [
        f"{unit['ExecStart'][0]} --config.check",
        "/bin/kill -HUP $MAINPID",
    ]
    user_lines = [line.split() for line in SYSUSERS.read_text().splitlines() if line[:1] == "u"]
    assert [fields[1] for fields in user_lines] == [one["User"]]


def verify(unit: Path) -> list[str]:
    """What ``systemd-analyze verify`` says about a unit: nothing, and status 0, when clean."""
    done = subprocess.run(
        [tool("systemd-analyze"), "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    problems = (done.stdout + done.stderr).splitlines()
    # A unit it cannot load exits non-zero; a misspelt key or a bad value is only a warning.
    return [*problems, f"exit status {done.returncode}"] if done.returncode else problems


def unit_copy(installed: Installed, directory: Path, edit: str = "", unit: Path = UNIT) -> Path:
    """A shipped unit, pointed at the test's venv and config, with ``edit`` appended."""
    directory.mkdir(exist_ok=True)
    path = directory / unit.name
    path.write_text(installed.here(unit.read_text()).replace("[Install]", f"{edit}\n[Install]"))
    return path


def test_systemd_analyze_verify_accepts_the_unit(installed, tmp_path):
    """systemd-analyze verify loads the unit, pointed at the installed venv, without a word."""
    assert verify(unit_copy(installed, tmp_path)) == []


@pytest.mark.parametrize(
    ("edit", "complaint"),
    [
        ("ExecStartPre=/nonexistent/status-exporter --config.check", "is not executable"),
        ("ProtectSytem=strict", "Unknown key"),
        ("ProtectSystem=stricter", "Failed to parse"),
    ],
)
def test_systemd_analyze_verify_rejects_a_broken_unit(installed, tmp_path, edit, complaint):
    """A missing binary, a misspelt directive or a bad value each draw a complaint."""
    problems = verify(unit_copy(installed, tmp_path, edit))
    assert any(complaint in line for line in problems), problems


def exposure(unit: Path) -> tuple[int, str]:
    """``systemd-analyze security --offline`` at threshold 20 (2.0): status and overall line."""
    done = subprocess.run(
        [tool("systemd-analyze"), "security", "--offline=yes", "--threshold=20", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    overall = [line for line in done.stdout.splitlines() if "Overall exposure" in line]
    assert overall, done.stdout + done.stderr
    return done.returncode, overall[0].split(":", 1)[1].strip()


def test_systemd_analyze_security_rates_the_unit_ok(installed, tmp_path):
    """The unit's exposure is 2.0 or less; the same service without its hardening is over."""
    code, level = exposure(unit_copy(installed, tmp_path))
    FIGURES["systemd unit exposure (systemd-analyze security)"] = level
    assert code == 0, level
    bare = tmp_path / "bare" / "status-exporter.service"
    bare.parent.mkdir()
    keep = ("Description", "Type", "ExecStart", "User", "Group", "WantedBy")
    bare.write_text(
        "".join(
            f"[{section}]\n{key}={value}\n"
            for section, key, value in unit_lines(unit_copy(installed, tmp_path).read_text())
            if key in keep
        )
    )
    code, level = exposure(bare)
    assert code != 0, level


def test_systemd_analyze_verify_accepts_the_agent_unit(installed, tmp_path):
    """systemd-analyze verify loads the node agent's unit, pointed at the venv, silently."""
    assert verify(unit_copy(installed, tmp_path, unit=AGENT_UNIT)) == []


def test_the_agent_unit_holds_two_capabilities_and_sees_every_process(installed, tmp_path):
    """The agent's unit bounds and hands over exactly CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH
    as its own unprivileged user, keeps the single unit's other hardening but what would
    hide other processes, and rates 2.0 or better; the single unit's config path is not its."""
    agent, single = service(AGENT_UNIT.read_text()), service(UNIT.read_text())
    two = ["CAP_SYS_PTRACE CAP_DAC_READ_SEARCH"]
    assert agent["CapabilityBoundingSet"] == agent["AmbientCapabilities"] == two
    assert agent["User"] == single["User"] == ["status-exporter"]
    assert agent["NoNewPrivileges"] == agent["PrivateMounts"] == ["yes"]
    assert agent["ProtectSystem"] == ["strict"]
    # hidepid would hide other users' processes; a PID namespace would hide every one.
    hiding = {"ProtectProc", "ProcSubset", "PrivatePIDs", "PrivateUsers"}
    assert not hiding & set(agent)
    privileges = {"CapabilityBoundingSet", "AmbientCapabilities", "ExecStart", "ExecReload"}
    kept = {k: v for k, v in single.items() if k not in hiding | privileges | {"EnvironmentFile"}}
    assert {k: agent.get(k) for k in kept} == kept
    assert "/etc/status-exporter/agent.yaml" in agent["ExecStart"][0]
    assert all("/etc/status-exporter/agent.yaml" in line for line in agent["ExecReload"][:1])
    code, level = exposure(unit_copy(installed, tmp_path, unit=AGENT_UNIT))
    FIGURES["systemd agent unit exposure (systemd-analyze security)"] = level
    assert code == 0, level


def test_sysusers_creates_the_system_user(tmp_path):
    """systemd-sysusers, in a scratch root, makes status-exporter a system user with no login."""
    (tmp_path / "etc").mkdir()
    done = subprocess.run(
        [tool("systemd-sysusers"), f"--root={tmp_path}", str(SYSUSERS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    passwd = (tmp_path / "etc" / "passwd").read_text().splitlines()
    users = {fields[0]: fields for fields in (line.split(":") for line in passwd)}
    _, _, uid, gid, _, _, shell = users["status-exporter"]
    assert 0 < int(uid) < 1000
    assert shell.endswith("/nologin")
    groups = (tmp_path / "etc/group").read_text()
    assert f"status-exporter:x:{gid}:" in groups


# The unit under a real systemd: a Debian tree booted in systemd-nspawn (systemd-container)
# with a throw-away overlay, the wheel installed inside as the README says, the service
# enabled and started, then looked at from outside and from its own mount namespace.
ROOTFS_SUITE = "bookworm"
ROOTFS_PACKAGES = ("systemd", "systemd-sysv", "python3", "python3-venv", "procps")
# debootstrap takes minutes: the tree is made once and kept (read-only: each boot writes to
# a tmpfs overlay), like the Docker tests' images.
ROOTFS_CACHE = Path("/var/tmp/status-exporter-test")
PATH_INSIDE = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def systemd_rootfs() -> Path:
    """A minimal Debian tree with systemd and Python 3, made by debootstrap on first use."""
    key = hashlib.sha256(" ".join((ROOTFS_SUITE, *ROOTFS_PACKAGES)).encode()).hexdigest()[:12]
    rootfs = ROOTFS_CACHE / f"{ROOTFS_SUITE}-systemd-{key}"
    if (rootfs / "usr" / "lib" / "systemd" / "systemd").exists():
        return rootfs
    ROOTFS_CACHE.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=ROOTFS_CACHE))
    partial.chmod(0o755)  # it becomes /: every user inside must be able to enter it
    mirror = [os.environ["DEBIAN_MIRROR"]] if os.environ.get("DEBIAN_MIRROR") else []
    command = [tool("debootstrap"), "--variant=minbase", f"--include={','.join(ROOTFS_PACKAGES)}"]
    done = subprocess.run(
        [*command, ROOTFS_SUITE, str(partial), *mirror],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if done.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        pytest.fail(f"debootstrap failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    try:
        partial.rename(rootfs)
    except OSError:  # made meanwhile by another run
        shutil.rmtree(partial, ignore_errors=True)
    return rootfs


@dataclass
class Machine:
    """A booted systemd-nspawn container; commands run inside it through nsenter."""

    process: subprocess.Popen[str]
    leader: int
    url: str
    log: Path

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command inside as root, in a clean environment; fail if ``check`` and it fails."""
        done = subprocess.run(
            [tool("nsenter"), "-t", str(self.leader), "-a", "env", "-i", PATH_INSIDE, *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check:
            assert done.returncode == 0, (
                f"{args} exited {done.returncode}:\n{done.stdout}{done.stderr}"
            )
        return done

    def journal(self) -> str:
        """The service's log lines so far."""
        return self.run("journalctl", "-u", "status-exporter", "--no-pager").stdout

    def main_pid(self) -> int:
        """The service's main process, as the container numbers it."""
        pid = int(self.run("systemctl", "show", "-P", "MainPID", "status-exporter").stdout)
        assert pid > 0
        return pid


def container_init(nspawn: int) -> int | None:
    """The container's systemd: the child of systemd-nspawn named systemd, once it runs."""
    children = Path(f"/proc/{nspawn}/task/{nspawn}/children")
    with contextlib.suppress(OSError):
        for pid in children.read_text().split():
            if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                return int(pid)
    return None


@pytest.fixture(scope="module")
def machine(installed: Installed) -> Iterator[Machine]:
    """Boot systemd in a container, install the wheel and the unit as the README does."""
    for name in ("debootstrap", "systemd-nspawn", "unshare", "nsenter"):
        tool(name)
    if os.geteuid() != 0:
        unavailable("booting systemd in a container needs root")
    rootfs = systemd_rootfs()
    media = installed.root / "media"
    media.mkdir()
    # The wheels of the wheel's dependencies, from this machine's index and cache: inside,
    # pip installs offline.
    run(sys.executable, "-m", "pip", "download", "--quiet", "-d", media / "wheels",
        f"{installed.wheel}[{','.join(EXTRAS)}]")  # fmt: skip
    port = free_port()
    config = REPO.joinpath("config.yaml").read_text()
    assert '\n  listen_address: "127.0.0.1:8393"\n' in config
    config = config.replace('"127.0.0.1:8393"', f'"127.0.0.1:{port}"')
    (media / "config.yaml").write_text(config)
    for path in (UNIT, SYSUSERS):
        shutil.copy2(path, media / path.name)
    # Without a systemd on this machine (a container), nspawn cannot ask it for a scope,
    # and wants /run/systemd/nspawn on a tmpfs: given one in a mount namespace of its own.
    booted = Path("/run/systemd/system").is_dir()
    nspawn = [
        tool("systemd-nspawn"), "--quiet", f"--directory={rootfs}", "--volatile=overlay",
        "--register=no", *([] if booted else ["--keep-unit"]),
        f"--bind-ro={media}:/media/install", "--boot",
    ]  # fmt: skip
    script = 'mkdir -p /run/systemd/nspawn && mount -t tmpfs tmpfs /run/systemd/nspawn; exec "$@"'
    log = installed.root / "machine.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [tool("unshare"), "--mount", "--propagation=private", "sh", "-c", script, "sh",
             *nspawn],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
    try:
        leader = wait_until(
            lambda: process.poll() is not None or container_init(process.pid),
            "the container's systemd",
            timeout=60,
        )
        assert process.poll() is None, log.read_text()
        box = Machine(process, leader, f"http://127.0.0.1:{port}", log)
        # Refused until systemd listens; then --wait returns once the boot is over.
        wait_until(
            lambda: (
                box.run("systemctl", "is-system-running", "--wait", check=False).stdout.strip()
                in {"running", "degraded"}
            ),
            "the container to boot",
            timeout=90,
        )
        started = time.monotonic()
        wheel = f"/media/install/wheels/{installed.wheel.name}"
        for command in (
            f"python3 -m venv {OPT}",
            f"{OPT}/bin/pip install --quiet --no-index --find-links=/media/install/wheels"
            f" {wheel}[{','.join(EXTRAS)}]",
            f"ln -s {OPT}/bin/status-exporter /usr/local/bin/status-exporter",
            f"install -D -m 0644 /media/install/config.yaml {ETC}/config.yaml",
            f"status-exporter --config.file {ETC}/config.yaml --config.check",
            "install -D -m 0644 /media/install/status-exporter.sysusers"
            " /etc/sysusers.d/status-exporter.conf",
            "systemd-sysusers",
            "install -m 0644 /media/install/status-exporter.service /etc/systemd/system/",
            "systemctl daemon-reload",
            "systemctl enable --now status-exporter",
        ):
            box.run(*command.split())
        FIGURES["install under systemd-nspawn: venv, wheel, unit"] = (
            f"{time.monotonic() - started:.1f} s"
        )
        wait_until(lambda: ready(box.url), "the service to answer", timeout=30)
        yield box
    finally:
        if process.poll() is None:
            process.terminate()  # nspawn shuts the container down in order
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def ready(url: str) -> bool:
    """Whether the daemon at ``url`` answers /readyz with 200."""
    try:
        return get(url + "/readyz")[0] == 200
    except OSError:
        return False


def proc_status(box: Machine, pid: int) -> dict[str, str]:
    """/proc/PID/status inside the container, as key -> value."""
    text = box.run("cat", f"/proc/{pid}/status").stdout
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def test_systemd_runs_the_unit_as_its_own_user_without_privileges(installed, machine):
    """Under systemd the service answers as status-exporter, with no capability, no new
    privileges and a seccomp filter, on uvloop, reporting the venv's modules only."""
    pid = machine.main_pid()
    uid = machine.run("id", "-u", "status-exporter").stdout.strip()
    status = proc_status(machine, pid)
    assert uid != "0"
    assert status["Uid"].split() == [uid] * 4
    assert status["NoNewPrivs"] == "1"
    assert int(status["CapBnd"], 16) == int(status["CapEff"], 16) == 0
    assert status["Seccomp"] == "2"
    assert get(machine.url + "/metrics")[0] == 200
    code, body = get(machine.url + "/api/v1/status/")
    assert code == 200
    modules = json.loads(body)["modules"]
    assert {"status-exporter", "aiohttp", "uvloop"} <= set(modules)
    assert not {"pytest", "ruff", "mypy"} & set(modules)
    assert "event_loop=uvloop" in machine.journal()


def test_the_service_sees_a_read_only_system_no_home_and_its_own_tmp(machine):
    """In the service's mount namespace / and the venv are read-only, /home and /tmp hold
    nothing of the machine's."""
    machine.run("install", "-D", "-m", "0644", "/dev/null", "/home/app/secret")
    machine.run("touch", "/tmp/machine-tmp")
    pid = str(machine.main_pid())

    def inside_service(script: str) -> subprocess.CompletedProcess[str]:
        return machine.run("nsenter", "-t", pid, "-m", "sh", "-c", script, check=False)

    for path in ("/etc/probe", f"{OPT}/probe", "/var/probe"):
        done = inside_service(f"touch {path}")
        assert done.returncode != 0
        assert "Read-only file system" in done.stderr
    assert inside_service("test -e /home/app/secret").returncode == 1
    assert inside_service("test -e /tmp/machine-tmp").returncode == 1
    assert inside_service("touch /tmp/probe").returncode == 0  # PrivateTmp: its own, writable


def test_systemctl_reload_applies_a_good_config_refuses_a_bad_one_and_stop_exits_0(machine):
    """systemctl reload succeeds on a valid config, fails on a broken one while the daemon
    keeps running on the old one, and systemctl stop ends it with status 0."""
    machine.run("systemctl", "reload", "status-exporter")
    wait_until(lambda: "configuration reloaded" in machine.journal(), "the reload")
    assert "reload rejected" not in machine.journal()
    _, metrics = get(machine.url + "/metrics")
    assert b"status_exporter_config_last_reload_successful 1.0" in metrics

    machine.run("sh", "-c", f"echo 'nope: 1' >> {ETC}/config.yaml")
    done = machine.run("systemctl", "reload", "status-exporter", check=False)
    assert done.returncode != 0
    assert machine.run("systemctl", "is-active", "status-exporter").stdout.strip() == "active"
    assert get(machine.url + "/api/v1/status/")[0] == 200

    machine.run("systemctl", "stop", "status-exporter")
    shown = machine.run(
        "systemctl", "show", "-p", "Result", "-p", "ExecMainStatus", "status-exporter"
    ).stdout.split()
    assert sorted(shown) == ["ExecMainStatus=0", "Result=success"]
