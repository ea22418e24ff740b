"""Bounded load on loopback: 1,000 concurrent connections, and shutdown under load."""

from __future__ import annotations

import asyncio
import json
import resource
import signal
import ssl
import time
from base64 import b64encode

import aiohttp
import yaml
from support import PASSWORD, Daemon, bcrypt_hash, client_context

CONNECTIONS = 1000


def raise_open_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, needed * 2), hard))


async def hammer(
    url: str, connections: int, context: ssl.SSLContext | None, headers: dict[str, str]
) -> list[tuple[int, bytes]]:
    """One request on each of ``connections`` simultaneous connections."""
    connector = aiohttp.TCPConnector(limit=0, force_close=True, ssl=context or False)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(path: str) -> tuple[int, bytes]:
            async with session.get(url + path, headers=headers) as response:
                return response.status, await response.read()

        paths = ["/metrics" if i % 2 else "/api/v1/status/" for i in range(connections)]
        return await asyncio.gather(*(one(p) for p in paths))


def test_a_thousand_concurrent_connections_with_tls_and_auth(pki, fake_env, tmp_path):
    """1,000 simultaneous TLS connections with basic auth, default limits: all 200, bodies right."""
    raise_open_file_limit(CONNECTIONS + 200)
    for i in range(300):
        fake_env.install(f"pkg{i}", f"1.{i}")
    (tmp_path / "web.yml").write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {
                    "cert_file": str(pki.server_cert),
                    "key_file": str(pki.server_key),
                },
                "basic_auth_users": {"prometheus": bcrypt_hash(PASSWORD)},
            }
        )
    )
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "modules": {"paths": [str(fake_env.path)]},
                "web": {"config_file": "web.yml"},
            }
        )
    )
    token = b64encode(f"prometheus:{PASSWORD}".encode()).decode()
    with Daemon(config) as daemon:
        daemon.wait_for("status-exporter started")
        started = time.monotonic()
        results = asyncio.run(
            hammer(
                f"https://{daemon.address}",
                CONNECTIONS,
                client_context(pki),
                {"Authorization": f"Basic {token}"},
            )
        )
        elapsed = time.monotonic() - started
        statuses = [status for status, _ in results]
        assert statuses.count(200) == CONNECTIONS, {s: statuses.count(s) for s in set(statuses)}
        for index, (_, body) in enumerate(results):
            if index % 2:
                assert body.count(b"\nmodule_info{") == 300
            else:
                assert len(json.loads(body)["modules"]) == 300
        assert daemon.stop()[0] == 0
    print(f"{CONNECTIONS} TLS+auth connections answered in {elapsed:.1f} s")


def test_sigterm_under_load_finishes_answers_and_exits_zero(fake_env, tmp_path):
    """SIGTERM during load: every answer already started is complete, and the exit is clean."""
    for i in range(200):
        fake_env.install(f"pkg{i}", "1.0")
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {"modules": {"paths": [str(fake_env.path)]}, "web": {"shutdown_timeout_seconds": 2.0}}
        )
    )
    with Daemon(config) as daemon:
        daemon.wait_for("status-exporter started")
        url = f"http://{daemon.address}/metrics"
        expected = len(daemon.get("/metrics")[1].split(b"\nmodule_info{"))
        complete, broken = 0, []

        async def client(session: aiohttp.ClientSession, deadline: float) -> None:
            nonlocal complete
            while time.monotonic() < deadline:
                try:
                    async with session.get(url) as response:
                        body = await response.read()
                except (TimeoutError, aiohttp.ClientConnectionError):
                    return  # refused or closed between requests: the server is going away
                if response.status != 200 or len(body.split(b"\nmodule_info{")) != expected:
                    broken.append((response.status, len(body)))
                complete += 1

        async def scenario() -> float:
            deadline = time.monotonic() + 10
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
                clients = [asyncio.create_task(client(session, deadline)) for _ in range(50)]
                await asyncio.sleep(1.0)
                started = time.monotonic()
                daemon.process.send_signal(signal.SIGTERM)
                await asyncio.gather(*clients)
                return started

        signalled = asyncio.run(scenario())
        code = daemon.process.wait(10)
        exited_after = time.monotonic() - signalled
    assert code == 0
    assert complete > 100
    assert broken == []
    assert exited_after < 2.0 + 3.0  # the shutdown timeout, plus start-up slack of a busy box
