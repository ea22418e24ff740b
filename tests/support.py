"""Test helpers: fake environments as real directories, parsing, real git repositories, tools."""

from __future__ import annotations

import contextlib
import gzip
import os
import queue
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import bcrypt
import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

# free_port: the fleet benchmark's, re-exported for the tests that take it from here.
from bench.fleet_parts import free_port as free_port
from exporter.config import Config, config_from_mapping
from exporter.filesystem import HOST
from exporter.snapshot import Sources
from exporter.web import REFRESHER

REQUIRE_TOOLS = os.environ.get("STATUS_EXPORTER_REQUIRE_TOOLS") == "1"
# Tools that cannot be where the suite runs (Docker inside the Python 3.13 container):
# their tests skip even when the others are required.
NOT_HERE = frozenset(filter(None, os.environ.get("STATUS_EXPORTER_NOT_HERE", "").split(",")))


# The original status API's fields and their JSON types (its reference, status-api.md).
REFERENCE_TYPES = {
    "api_version": int,
    "commit": str,
    "modules": dict,
    "platform_info": dict,
    "python_version": str,
    "server_address": str,
    "server_id": str,
}


class FakeEnvironment:
    """A site-packages directory that tests install into, upgrade and remove from, as pip does."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)

    def install(self, name: str, version: str, *, kind: str = "dist-info") -> Path:
        """Write a distribution's metadata; ``kind`` is dist-info, egg-info or egg-info-file."""
        text = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: test\n\nBody\n"
        return self.install_raw(f"{name}-{version}", text.encode(), kind=kind)

    def install_raw(self, stem: str, metadata: bytes, *, kind: str = "dist-info") -> Path:
        """Write metadata bytes as they are, for hostile and broken cases.

        The entry is made in a staging directory and renamed into place whole, so a daemon
        refreshing meanwhile sees it complete or not at all (never a dist-info directory
        without its METADATA, which it would count as skipped).
        """
        name = f"{stem}.egg-info" if kind == "egg-info-file" else f"{stem}.{kind}"
        with self._staging() as staging:
            if kind == "egg-info-file":
                (staging / name).write_bytes(metadata)
            else:
                (staging / name).mkdir()
                file = "METADATA" if kind == "dist-info" else "PKG-INFO"
                (staging / name / file).write_bytes(metadata)
            (staging / name).rename(self.path / name)
        return self.path / name

    def remove(self, name: str) -> None:
        """Delete every metadata entry of ``name``, each renamed out of the way first, whole."""
        self._remove(list(self.path.glob(f"{name}-*")))

    def upgrade(self, name: str, version: str) -> None:
        """Replace ``name`` with another version: the new one installed, then the old removed.

        Never a moment with neither (pip's own upgrade has one: it stashes the old files before
        it writes the new), so a daemon refreshing meanwhile counts an upgrade, which the tests
        that count one rely on.
        """
        old = list(self.path.glob(f"{name}-*"))
        self.install(name, version)
        self._remove(old)

    def _remove(self, entries: list[Path]) -> None:
        with self._staging() as staging:
            for entry in entries:
                moved = entry.rename(staging / entry.name)
                shutil.rmtree(moved) if moved.is_dir() else moved.unlink()

    @contextlib.contextmanager
    def _staging(self) -> Iterator[Path]:
        # Inside the directory (a rename cannot cross file systems), under a name that no
        # scan reads: not a .dist-info, .egg-info, .egg or .pth.
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.path))
        try:
            yield staging
        finally:
            shutil.rmtree(staging)


class RecordingFileSystem:
    """HOST, logging every (operation, path) it is asked for, and calling ``hook`` with the
    two before each operation (to change the files at an exact moment of a scan)."""

    def __init__(self, hook: Callable[[str, str], None] | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.hook = hook

    def paths(self, *operations: str) -> list[str]:
        """The paths asked for, in order, by the given operations (all when none is given)."""
        return [path for op, path in self.calls if not operations or op in operations]

    def _log(self, operation: str, path: str) -> None:
        self.calls.append((operation, path))
        if self.hook is not None:
            self.hook(operation, path)

    def open(self, path: str, flags: int = os.O_RDONLY) -> int:
        """HOST.open, logged."""
        self._log("open", path)
        return HOST.open(path, flags)

    def stat(self, path: str) -> os.stat_result:
        """HOST.stat, logged."""
        self._log("stat", path)
        return HOST.stat(path)

    def lstat(self, path: str) -> os.stat_result:
        """HOST.lstat, logged."""
        self._log("lstat", path)
        return HOST.lstat(path)

    def listdir(self, path: str) -> list[str]:
        """HOST.listdir, logged."""
        self._log("listdir", path)
        return HOST.listdir(path)

    def readlink(self, path: str) -> str:
        """HOST.readlink, logged."""
        self._log("readlink", path)
        return HOST.readlink(path)

    def realpath(self, path: str) -> str:
        """HOST.realpath, logged."""
        self._log("realpath", path)
        return HOST.realpath(path)

    def is_dir(self, path: str) -> bool:
        """HOST.is_dir, logged."""
        self._log("is_dir", path)
        return HOST.is_dir(path)

    def is_file(self, path: str) -> bool:
        """HOST.is_file, logged."""
        self._log("is_file", path)
        return HOST.is_file(path)


def make_venv(path: Path) -> FakeEnvironment:
    """A real venv made by this Python's venv module, without pip (fast), as its
    site-packages to install into."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    (site,) = path.glob("lib/python*/site-packages")
    return FakeEnvironment(site)


def make_config(**sections: dict[str, object]) -> Config:
    """A Config from keyword sections, validated as a YAML file would be."""
    return config_from_mapping(sections)


def env_config(env: FakeEnvironment, **sections: dict[str, object]) -> Config:
    """A config that reads modules from ``env`` and takes the commit from a fixed value."""
    sections.setdefault("modules", {"paths": [str(env.path)]})
    sections.setdefault("commit", {"value": "abc1234", "env": []})
    return make_config(**sections)


def quiet_sources() -> Sources:
    """This process's sources, but an empty environment, so tests see only what they set."""
    return Sources(environ={})


StartClient = Callable[..., Awaitable[TestClient]]


async def refresh(client: TestClient) -> None:
    """Run one refresh of the app behind ``client`` now."""
    assert await client.app[REFRESHER].refresh_now()


async def fetch_metrics(client: TestClient, *, openmetrics: bool = False) -> dict[str, object]:
    """GET /metrics and parse it with prometheus_client's own parser: family name -> family."""
    headers = {"Accept": "application/openmetrics-text; version=1.0.0"} if openmetrics else {}
    response = await client.get("/metrics", headers=headers)
    assert response.status == 200
    text = await response.text()
    parse = parse_openmetrics if openmetrics else parse_text
    return {family.name: family for family in parse(text)}


def module_series(families: dict[str, object], *, openmetrics: bool = False) -> dict[str, str]:
    """The module -> version pairs of the module_info family."""
    family = families["module" if openmetrics else "module_info"]
    return {s.labels["module"]: s.labels["version"] for s in family.samples}  # type: ignore[attr-defined]


def gunzip(data: bytes) -> bytes:
    """Decompress a gzip body."""
    return gzip.decompress(data)


# Figures measured by tests (build time, image size...), printed at the end of the run.
FIGURES: dict[str, str] = {}


def tool(name: str) -> str:
    """Path of a required external tool: skip when missing, fail when CI requires it."""
    if name in NOT_HERE:
        pytest.skip(f"{name} is not available here (STATUS_EXPORTER_NOT_HERE)")
    path = shutil.which(name)
    if path:
        return path
    return unavailable(f"{name} not installed")


def unavailable(reason: str) -> NoReturn:
    """Skip for ``reason``; fail instead when CI requires every tool."""
    if REQUIRE_TOOLS:
        pytest.fail(f"{reason} (STATUS_EXPORTER_REQUIRE_TOOLS=1 makes this a failure)")
    pytest.skip(reason)


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` with a fixed identity and return its output."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


class Daemon:
    """``python -m exporter`` as a child on 127.0.0.1 with a free port, read from its log."""

    def __init__(
        self,
        config_file: Path,
        *args: str,
        env: dict[str, str] | None = None,
        listen_flag: bool = True,
    ) -> None:
        listen = ["--web.listen-address", "127.0.0.1:0"] if listen_flag else []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "exporter", "--config.file", str(config_file), *listen, *args],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        try:
            listening = self.wait_for("listening")
        except BaseException:
            self.__exit__()
            raise
        self.address = re.findall(r"127\.0\.0\.1:\d+", listening)[0]
        self.url = f"http://{self.address}"

    def wait_for(self, needle: str, timeout: float = 20.0) -> str:
        """Read log lines until one contains ``needle``; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break  # the process closed its stderr
            self.lines.append(line)
            if needle in line:
                return line
        raise AssertionError(f"no log line with {needle!r}; got:\n{''.join(self.lines)}")

    def _read_stderr(self) -> None:
        # A thread, not select(): select cannot see lines already in the reader's buffer.
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._lines.put(line)
        self._lines.put(None)

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """A blocking GET on the daemon; returns status and body."""
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 5.0) -> tuple[int, float]:
        """Send ``signum``; return the exit status and the seconds it took to exit."""
        started = time.monotonic()
        self.process.send_signal(signum)
        code = self.process.wait(timeout)
        elapsed = time.monotonic() - started
        with contextlib.suppress(queue.Empty):
            while (line := self._lines.get(timeout=2)) is not None:
                self.lines.append(line)
        return code, elapsed

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


PASSWORD = "s3cret-pass"


@dataclass
class PKI:
    """A CA, a server certificate for 127.0.0.1, a client certificate, and a stranger's;
    and a CA made without keyUsage, as old recipes made them, with a client of its own."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path
    stranger_key: Path
    legacy_ca: Path
    legacy_client_cert: Path
    legacy_client_key: Path


def openssl(directory: Path, *args: str) -> None:
    subprocess.run(
        [tool("openssl"), *args], cwd=directory, check=True, capture_output=True, timeout=60
    )


_EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")


# As a real CA issues them, so that strict verification (Python 3.13's default context:
# VERIFY_X509_STRICT) accepts them: a CA certificate says it is one and may sign, a leaf
# says it is not, and both carry key identifiers.
_CA_EXTENSIONS = (
    "basicConstraints=critical,CA:TRUE",
    "keyUsage=critical,keyCertSign,cRLSign",
    "subjectKeyIdentifier=hash",
)
_LEAF_EXTENSIONS = (
    "basicConstraints=critical,CA:FALSE\n"
    "keyUsage=critical,digitalSignature\n"
    "subjectKeyIdentifier=hash\n"
    "authorityKeyIdentifier=keyid,issuer\n"
)


def make_ca(directory: Path, name: str, *, legacy: bool = False) -> None:
    """A self-signed CA; ``legacy`` leaves out keyUsage, as old openssl recipes did."""
    extensions = [e for e in _CA_EXTENSIONS if not (legacy and e.startswith("keyUsage"))]
    openssl(
        directory,
        "req",
        "-x509",
        *_EC_KEY,
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.pem",
        "-days",
        "2",
        "-subj",
        f"/CN={name}",
        *(arg for extension in extensions for arg in ("-addext", extension)),
    )


def make_leaf(directory: Path, name: str, ca: str, extension: str) -> None:
    """A certificate for ``name`` signed by ``ca``, with ``extension`` (SAN, extendedKeyUsage)."""
    (directory / f"{name}.ext").write_text(_LEAF_EXTENSIONS + extension)
    openssl(
        directory,
        "req",
        *_EC_KEY,
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        f"/CN={name}",
    )
    openssl(
        directory,
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{ca}.pem",
        "-CAkey",
        f"{ca}.key",
        "-CAcreateserial",
        "-out",
        f"{name}.pem",
        "-days",
        "2",
        "-extfile",
        f"{name}.ext",
    )


def bcrypt_hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(10)).decode()


def client_context(
    pki: PKI,
    cert: Path | None = None,
    key: Path | None = None,
    maximum: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    # Python 3.13's default: verify as strictly on every Python the suite runs on.
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    if cert and key:
        context.load_cert_chain(str(cert), str(key))
    if maximum:
        context.maximum_version = maximum
    return context


def wait_until(check: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """Call ``check`` until it returns something truthy, and return that; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")
