"""Saying less (redaction, the module cap), safe reload, and HTTP abuse on a real socket."""

from __future__ import annotations

import json
import logging
import re
import signal
import socket
import time

import pytest
import yaml
from support import Daemon, env_config, fetch_metrics, module_series, refresh, wait_until

from exporter.snapshot import REDACTED


async def test_redaction_keeps_the_json_shape(fake_env, start_client):
    """Redacted values become <redacted> (modules an empty object), listed under 'redacted'."""
    fake_env.install("django", "4.2.1")
    config = env_config(
        fake_env, redact={"hostname": True, "server_address": True, "modules": "json"}
    )
    client = await start_client(config)
    status = await (await client.get("/api/v1/status/")).json()
    assert status["platform_info"]["node"] == REDACTED
    assert status["server_address"] == REDACTED
    assert status["modules"] == {}
    assert status["redacted"] == ["server_address", "platform_info.node", "modules"]
    families = await fetch_metrics(client)
    assert module_series(families) == {"django": "4.2.1"}  # only the JSON hides them
    (plat,) = families["platform_info"].samples
    assert plat.labels["node"] == REDACTED
    for path in ("/", "/api/v1/status/?format=html"):
        page = await (await client.get(path)).text()
        assert REDACTED.replace("<", "&lt;").replace(">", "&gt;") in page
        assert socket.gethostname() not in page


@pytest.mark.parametrize(
    ("where", "in_json", "in_metrics"),
    [("none", True, True), ("metrics", True, False), ("both", False, False)],
)
async def test_module_redaction_per_output(fake_env, start_client, where, in_json, in_metrics):
    """modules: none, metrics or both hides the module list from exactly those outputs."""
    fake_env.install("django", "4.2.1")
    client = await start_client(env_config(fake_env, redact={"modules": where}))
    status = await (await client.get("/api/v1/status/")).json()
    assert bool(status["modules"]) is in_json
    families = await fetch_metrics(client)
    assert bool(module_series(families)) is in_metrics
    assert families["status_exporter_modules"].samples[0].value == 1


async def test_module_cap_drops_the_rest_counts_them_and_warns_once(fake_env, start_client, caplog):
    """Past modules.max the rest are dropped, counted in a metric, and logged once."""
    for i in range(10):
        fake_env.install(f"pkg{i:02d}", "1.0")
    caplog.set_level(logging.WARNING, logger="exporter.refresh")
    client = await start_client(
        env_config(fake_env, modules={"paths": [str(fake_env.path)], "max": 3})
    )
    families = await fetch_metrics(client)
    assert sorted(module_series(families)) == ["pkg00", "pkg01", "pkg02"]
    assert families["status_exporter_modules_dropped"].samples[0].value == 7
    await refresh(client)
    warnings = [r for r in caplog.records if "modules.max" in r.getMessage()]
    assert len(warnings) == 1


def write_config(path, **sections) -> None:
    path.write_text(yaml.safe_dump(sections))


def reload_metrics(daemon: Daemon) -> tuple[float, float]:
    text = daemon.get("/metrics")[1].decode()

    def sample(name: str) -> float:
        return float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))

    return (
        sample("status_exporter_config_last_reload_successful"),
        sample("status_exporter_config_last_reload_success_timestamp_seconds"),
    )


def test_sighup_applies_a_valid_config_and_rejects_a_bad_one(fake_env, tmp_path):
    """A valid reload takes effect at once; an invalid one is logged by key and changes nothing."""
    fake_env.install("django", "4.2.1")
    fake_env.install("flask", "3.0.0")
    config = tmp_path / "config.yaml"
    write_config(config, modules={"paths": [str(fake_env.path)]}, refresh={"interval_seconds": 60})
    with Daemon(config) as daemon:
        daemon.wait_for("status-exporter started")
        assert reload_metrics(daemon)[0] == 1
        started_stamp = reload_metrics(daemon)[1]

        write_config(
            config,
            modules={"paths": [str(fake_env.path)], "include": ["dj*"]},
            refresh={"interval_seconds": 60},
        )
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for("configuration reloaded")
        modules = wait_until(
            lambda: (
                (m := json.loads(daemon.get("/api/v1/status/")[1])["modules"])
                == {"django": "4.2.1"}
                and m
            ),
            "the reload to apply",
        )
        assert modules == {"django": "4.2.1"}
        ok, stamp = reload_metrics(daemon)
        assert ok == 1
        assert stamp >= started_stamp

        config.write_text("modules: {paths: [x], include: 5}\n")
        daemon.process.send_signal(signal.SIGHUP)
        line = daemon.wait_for("reload rejected")
        assert "modules.include" in line
        wait_until(lambda: reload_metrics(daemon)[0] == 0, "the failure to be published")
        assert reload_metrics(daemon)[1] == stamp
        assert json.loads(daemon.get("/api/v1/status/")[1])["modules"] == {"django": "4.2.1"}
        assert daemon.stop()[0] == 0


def test_sighup_refuses_a_new_listen_address_whole(fake_env, tmp_path):
    """Changing web.listen_address on reload is refused with a message; nothing else applies."""
    fake_env.install("django", "4.2.1")
    config = tmp_path / "config.yaml"
    # No --web.listen-address flag here: the file's address is the one that must not move.
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    write_config(
        config, modules={"paths": [str(fake_env.path)]}, web={"listen_address": f"127.0.0.1:{port}"}
    )
    with Daemon(config, listen_flag=False) as daemon:
        assert daemon.address == f"127.0.0.1:{port}"
        daemon.wait_for("status-exporter started")
        write_config(
            config,
            modules={"paths": [str(fake_env.path)], "include": ["nothing"]},
            web={"listen_address": "127.0.0.1:1"},
        )
        daemon.process.send_signal(signal.SIGHUP)
        line = daemon.wait_for("reload rejected")
        assert "web.listen_address" in line
        assert "restart to apply" in line
        status = json.loads(daemon.get("/api/v1/status/")[1])
        assert "django" in status["modules"]  # the include filter was not applied either
        assert daemon.stop()[0] == 0


def raw_request(address: str, data: bytes, timeout: float = 10.0) -> bytes:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and data.startswith(b"HEAD"):
                break
    return b"".join(chunks)


@pytest.fixture
def small_daemon(fake_env, tmp_path):
    fake_env.install("django", "4.2.1")
    config = tmp_path / "config.yaml"
    write_config(
        config,
        modules={"paths": [str(fake_env.path)]},
        web={"header_timeout_seconds": 0.5, "max_connections": 8},
    )
    with Daemon(config) as daemon:
        daemon.wait_for("status-exporter started")
        yield daemon
        daemon.stop()


def test_http_abuse_gets_clear_errors(small_daemon):
    """Oversized headers and URLs, unknown methods and GET bodies are handled, never a crash."""
    address = small_daemon.address
    huge_header = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    assert raw_request(address, huge_header).split(b" ")[1] in (b"400", b"431")
    huge_url = b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert raw_request(address, huge_url).split(b" ")[1] in (b"400", b"414")
    unknown = raw_request(
        address, b"BREW /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert unknown.split(b" ")[1] in (b"400", b"501")  # aiohttp's parser refuses the token
    patch = raw_request(address, b"PATCH /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert patch.split(b" ")[1] == b"405"
    body = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
    )
    assert raw_request(address, body).split(b" ")[1] == b"200"
    garbage = raw_request(address, b"\x16\x03\x01\x00\xff garbage\r\n\r\n")
    assert garbage == b"" or garbage.split(b" ")[1] == b"400"
    assert small_daemon.get("/healthz")[0] == 200


def test_slow_headers_and_idle_connections_are_closed(small_daemon):
    """A client trickling its headers, or sending nothing, is cut off after the header timeout."""
    host, port = small_daemon.address.rsplit(":", 1)
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        closed = False
        for byte in b"GET /metrics HTTP/1.1\r\nHost: slow\r\nX-Pad: " + b"a" * 100:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.05)
        if not closed:
            assert sock.recv(100) == b""
    assert time.monotonic() - started < 5
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        started = time.monotonic()
        assert sock.recv(100) == b""  # nothing sent: closed by the server
        assert time.monotonic() - started < 5
    assert small_daemon.get("/healthz")[0] == 200


def test_beyond_max_connections_a_fast_503(small_daemon):
    """Past web.max_connections, a new connection gets an immediate 503 and is closed."""
    host, port = small_daemon.address.rsplit(":", 1)
    held = []
    try:
        for _ in range(8):
            sock = socket.create_connection((host, int(port)), timeout=10)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # keep-alive, open
            assert sock.recv(1000).startswith(b"HTTP/1.1 200")
            held.append(sock)
        started = time.monotonic()
        answer = raw_request(small_daemon.address, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503")
        assert time.monotonic() - started < 2
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: small_daemon.get("/healthz")[0] == 200, "a free slot")


def test_sighup_cannot_turn_basic_auth_on_without_a_restart(fake_env, tmp_path):
    """Auth added by a reload to a daemon started without it is refused: never half-protected."""
    import bcrypt

    fake_env.install("django", "4.2.1")
    config = tmp_path / "config.yaml"
    write_config(config, modules={"paths": [str(fake_env.path)]})
    with Daemon(config) as daemon:
        daemon.wait_for("status-exporter started")
        hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
        (tmp_path / "web.yml").write_text(yaml.safe_dump({"basic_auth_users": {"u": hashed}}))
        write_config(
            config, modules={"paths": [str(fake_env.path)]}, web={"config_file": "web.yml"}
        )
        daemon.process.send_signal(signal.SIGHUP)
        line = daemon.wait_for("reload rejected")
        assert "restart to turn them on" in line
        assert daemon.get("/metrics")[0] == 200  # still served, as before the reload
        assert daemon.stop()[0] == 0


def test_a_head_sent_in_single_bytes_completes_and_the_connection_stays_usable(small_daemon):
    """A head trickled byte by byte but finished in time is served, and keep-alive survives."""
    host, port = small_daemon.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # one segment per byte
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n":
            sock.sendall(bytes([byte]))
            time.sleep(0.004)  # the whole head still arrives well inside the 0.5 s timeout
        assert sock.recv(1000).startswith(b"HTTP/1.1 200")
        time.sleep(1.0)  # twice the header timeout, idle between requests: not a slow head
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(1000).startswith(b"HTTP/1.1 200")
