"""Fixtures shared by the tests; the helpers they use live in support.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from support import (
    FIGURES,
    PKI,
    FakeEnvironment,
    StartClient,
    git,
    make_ca,
    make_leaf,
    quiet_sources,
    tool,
)

from exporter.config import Config
from exporter.snapshot import Identity, Sources
from exporter.web import REFRESHER, create_app


@pytest.fixture
def fake_env(tmp_path: Path) -> FakeEnvironment:
    """An empty fake site-packages."""
    return FakeEnvironment(tmp_path / "site-packages")


@pytest.fixture
def start_client(aiohttp_client) -> StartClient:  # type: ignore[no-untyped-def]
    """Start the app for a config over a real socket and wait for its first snapshot."""

    async def start(config: Config, *, sources: Sources | None = None) -> TestClient:
        app = create_app(config, identity=Identity.new(), sources=sources or quiet_sources())
        client = await aiohttp_client(app)
        # Bounded: a first refresh that fails must fail the test, not hang the suite.
        await asyncio.wait_for(app[REFRESHER].wait_ready(), 30)
        return client

    return start


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """A work tree with two commits on branch main."""
    tool("git")
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for n in (1, 2):
        (repo / "f").write_text(str(n))
        git(repo, "add", "f")
        git(repo, "commit", "-q", "-m", f"c{n}")
    return repo


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKI:
    """A CA, a server certificate for 127.0.0.1, a client certificate, and a stranger's."""
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    make_ca(d, "other-ca")
    make_leaf(d, "server", "ca", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    make_leaf(d, "client", "ca", "extendedKeyUsage=clientAuth\n")
    make_leaf(d, "stranger", "other-ca", "extendedKeyUsage=clientAuth\n")
    make_ca(d, "legacy-ca", legacy=True)
    make_leaf(d, "legacy-client", "legacy-ca", "extendedKeyUsage=clientAuth\n")
    return PKI(
        d / "ca.pem",
        d / "server.pem",
        d / "server.key",
        d / "client.pem",
        d / "client.key",
        d / "stranger.pem",
        d / "stranger.key",
        d / "legacy-ca.pem",
        d / "legacy-client.pem",
        d / "legacy-client.key",
    )


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    """Print the figures tests measured (image size, build time...) after the results."""
    if FIGURES:
        terminalreporter.section("figures measured by the tests")
        for what, figure in FIGURES.items():
            terminalreporter.write_line(f"{what}: {figure}")
