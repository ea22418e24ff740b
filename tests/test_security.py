"""TLS, mutual TLS and basic auth from an exporter-toolkit web config, on a real daemon."""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import socket
import ssl
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

import pytest
import yaml
from support import PASSWORD, PKI, Daemon, bcrypt_hash, client_context, make_leaf

from exporter.auth import BasicAuth
from exporter.config import ConfigError
from exporter.webconfig import load_web_config


def write_configs(tmp_path: Path, web: dict, **config: object) -> Path:
    (tmp_path / "web.yml").write_text(yaml.safe_dump(web))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"web": {"config_file": "web.yml"}, **config}))
    return path


def server_tls(pki: PKI, **extra: str) -> dict[str, dict[str, str]]:
    """A tls_server_config with the test server's certificate, plus ``extra`` settings."""
    return {
        "tls_server_config": {
            "cert_file": str(pki.server_cert),
            "key_file": str(pki.server_key),
            **extra,
        }
    }


def https_get(
    url: str, context: ssl.SSLContext, user: str | None = None, password: str | None = None
) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url)
    if user is not None:
        token = b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def https_url(daemon: Daemon, path: str) -> str:
    return f"https://{daemon.address}{path}"


def test_tls_and_basic_auth_protect_every_endpoint_but_the_probes(pki, tmp_path):
    """Over TLS: no or wrong credentials get 401 with WWW-Authenticate; probes stay open."""
    config = write_configs(
        tmp_path,
        {
            "tls_server_config": {
                "cert_file": str(pki.server_cert),
                "key_file": str(pki.server_key),
            },
            "basic_auth_users": {"prometheus": bcrypt_hash(PASSWORD)},
            "http_server_config": {
                "headers": {"X-Frame-Options": "deny", "Strict-Transport-Security": "max-age=3600"}
            },
        },
    )
    context = client_context(pki)
    with Daemon(config) as daemon:
        daemon.wait_for("status-exporter started")
        for path in (
            "/metrics",
            "/api/v1/status/",
            "/api/v1/sbom",
            "/",
            "/api/v1/openapi.json",
            "/nope",
        ):
            status, headers, _ = https_get(https_url(daemon, path), context)
            assert status == 401, path
            assert headers["WWW-Authenticate"].startswith("Basic")
        status, _, _ = https_get(https_url(daemon, "/metrics"), context, "prometheus", "wrong")
        assert status == 401
        status, _, _ = https_get(https_url(daemon, "/metrics"), context, "nobody", PASSWORD)
        assert status == 401
        status, headers, body = https_get(
            https_url(daemon, "/metrics"), context, "prometheus", PASSWORD
        )
        assert status == 200
        assert b"module_info" in body
        assert headers["Strict-Transport-Security"] == "max-age=3600"
        for probe in ("/healthz", "/readyz"):
            assert https_get(https_url(daemon, probe), context)[0] == 200
        with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
            urllib.request.urlopen(f"http://{daemon.address}/healthz", timeout=5)
        assert daemon.stop()[0] == 0


def test_mutual_tls_requires_a_certificate_from_the_client_ca(pki, tmp_path):
    """RequireAndVerifyClientCert: only clients with a certificate from client_ca_file get in."""
    config = write_configs(
        tmp_path,
        server_tls(pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file=str(pki.ca)),
    )
    with Daemon(config) as daemon:
        daemon.wait_for("status-exporter started")
        url = https_url(daemon, "/api/v1/status/")
        status, _, body = https_get(url, client_context(pki, pki.client_cert, pki.client_key))
        assert status == 200
        assert json.loads(body)["api_version"] == 1
        for context in (
            client_context(pki),
            client_context(pki, pki.stranger_cert, pki.stranger_key),
        ):
            with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
                https_get(url, context)
        assert daemon.stop()[0] == 0


def test_a_client_ca_without_key_usage_is_accepted_on_every_python(pki, tmp_path):
    """Client certificates are verified as Go's exporter-toolkit does, not strictly: a client
    CA without keyUsage (which Python 3.13's strict default context refuses) is accepted."""
    config = write_configs(
        tmp_path,
        server_tls(
            pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file=str(pki.legacy_ca)
        ),
    )
    with Daemon(config) as daemon:
        daemon.wait_for("status-exporter started")
        url = https_url(daemon, "/api/v1/status/")
        context = client_context(pki, pki.legacy_client_cert, pki.legacy_client_key)
        status, _, _ = https_get(url, context)
        assert status == 200
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            https_get(url, client_context(pki, pki.client_cert, pki.client_key))
        assert daemon.stop()[0] == 0


def test_min_version_is_enforced(pki, tmp_path):
    """min_version TLS13 refuses a client that speaks at most TLS 1.2."""
    config = write_configs(tmp_path, server_tls(pki, min_version="TLS13"))
    with Daemon(config) as daemon:
        daemon.wait_for("status-exporter started")
        url = https_url(daemon, "/healthz")
        assert https_get(url, client_context(pki))[0] == 200
        with pytest.raises((urllib.error.URLError, ssl.SSLError)):
            https_get(url, client_context(pki, maximum=ssl.TLSVersion.TLSv1_2))
        daemon.stop()


@pytest.mark.parametrize(
    ("web", "fragment"),
    [
        (
            {"tls_server_config": {"cert_file": "x.pem", "bogus": 1}},
            "tls_server_config.bogus: unknown key",
        ),
        ({"tls": {}}, "tls: unknown key"),
        ({"tls_server_config": {"cert_file": "server.pem"}}, "missing one of key or key_file"),
        ({"tls_server_config": {"cert_file": "nope.pem", "key_file": "nope.key"}}, "No such file"),
        (
            {
                "tls_server_config": {
                    "cert_file": "server.pem",
                    "key_file": "server.key",
                    "client_ca_file": "ca.pem",
                }
            },
            "without a Client Auth Policy",
        ),
        (
            {
                "tls_server_config": {
                    "cert_file": "server.pem",
                    "key_file": "server.key",
                    "client_auth_type": "RequireAnyClientCert",
                }
            },
            "not supported",
        ),
        (
            {
                "tls_server_config": {
                    "cert_file": "server.pem",
                    "key_file": "server.key",
                    "min_version": "TLS14",
                }
            },
            "min_version: must be one of",
        ),
        ({"tls_server_config": {"cipher_suites": ["TLS_AES_128_GCM_SHA256"]}}, "not supported"),
        ({"basic_auth_users": {"u": "plaintext"}}, "basic_auth_users.u: not a bcrypt hash"),
        ({"http_server_config": {"headers": {"Server": "x"}}}, "'Server' can not be configured"),
        ({"http_server_config": {"headers": {"X-Frame-Options": "allow"}}}, "expected one of"),
        ({"rate_limit": {"burst": 1}}, "rate_limit: not supported"),
    ],
)
def test_bad_web_configs_name_the_key(pki, tmp_path, web, fragment):
    """Every invalid web config is refused with the file, the key and the reason."""
    for name in ("server.pem", "server.key", "ca.pem"):
        source = {"server.pem": pki.server_cert, "server.key": pki.server_key, "ca.pem": pki.ca}
        (tmp_path / name).write_bytes(source[name].read_bytes())
    path = tmp_path / "web.yml"
    path.write_text(yaml.safe_dump(web))
    with pytest.raises(ConfigError) as caught:
        load_web_config(path)
    message = "\n".join(caught.value.problems)
    assert fragment in message
    assert str(path) in message


def test_relative_paths_are_relative_to_the_web_config(pki, tmp_path):
    """cert_file and key_file given relative to the web config's directory load."""
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "s.pem").write_bytes(pki.server_cert.read_bytes())
    (tmp_path / "tls" / "s.key").write_bytes(pki.server_key.read_bytes())
    path = tmp_path / "web.yml"
    path.write_text(
        yaml.safe_dump({"tls_server_config": {"cert_file": "tls/s.pem", "key_file": "tls/s.key"}})
    )
    assert load_web_config(path).tls is not None


def elapsed(coroutine) -> float:
    started = time.perf_counter()
    asyncio.run(coroutine)
    return time.perf_counter() - started


def test_auth_caches_successes_only_and_hides_which_users_exist():
    """A verified password is remembered; failures are not; unknown users cost a bcrypt too."""
    hashed = bcrypt_hash(PASSWORD).encode()

    def header(user: str, password: str) -> str:
        return "Basic " + b64encode(f"{user}:{password}".encode()).decode()

    async def scenario() -> dict[str, float]:
        auth = BasicAuth({"prometheus": hashed})
        times = {}
        for name, value in [
            ("first", header("prometheus", PASSWORD)),
            ("cached", header("prometheus", PASSWORD)),
            ("wrong", header("prometheus", "nope")),
            ("wrong again", header("prometheus", "nope")),
            ("unknown user", header("mallory", "nope")),
        ]:
            started = time.perf_counter()
            ok = await auth.check(value)
            times[name] = time.perf_counter() - started
            assert ok == (name in ("first", "cached")), name
        for malformed in (
            None,
            "",
            "Bearer x",
            "Basic !!!",
            "Basic " + b64encode(b"nocolon").decode(),
        ):
            assert not await auth.check(malformed)
        auth.close()
        return times

    times = asyncio.run(scenario())
    # Ratios only: the absolute cost of bcrypt depends on the machine. A cache hit costs
    # microseconds; anything that runs bcrypt costs tens of milliseconds.
    assert times["cached"] < times["first"] / 10
    assert times["wrong again"] > 10 * times["cached"]  # a failure is never remembered
    assert times["unknown user"] > 10 * times["cached"]  # unknown users cost a bcrypt too


def test_concurrent_checks_of_the_same_credentials_share_one_bcrypt():
    """Fifty simultaneous first requests cost about one bcrypt, not fifty."""
    hashed = bcrypt_hash(PASSWORD).encode()
    value = "Basic " + b64encode(f"prometheus:{PASSWORD}".encode()).decode()

    async def one() -> None:
        auth = BasicAuth({"prometheus": hashed})
        assert await auth.check(value)
        auth.close()

    async def fifty() -> None:
        auth = BasicAuth({"prometheus": hashed})
        assert all(await asyncio.gather(*(auth.check(value) for _ in range(50))))
        auth.close()

    assert elapsed(fifty()) < 5 * elapsed(one())


def served_common_name(pki: PKI, address: str) -> str:
    """The CN of the certificate the server presents to a new connection."""
    host, port = address.rsplit(":", 1)
    context = client_context(pki)
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        subject = dict(item[0] for item in tls.getpeercert()["subject"])
    return str(subject["commonName"])


def test_every_sighup_rotates_the_served_certificate(pki, tmp_path):
    """Each reload puts the file's certificate on new connections, the second one too."""
    make_leaf(
        pki.ca.parent, "server2", "ca", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
    )
    second = (pki.ca.parent / "server2.pem", pki.ca.parent / "server2.key")

    def use(cert: Path, key: Path) -> None:
        (tmp_path / "web.yml").write_text(
            yaml.safe_dump({"tls_server_config": {"cert_file": str(cert), "key_file": str(key)}})
        )

    config = write_configs(tmp_path, server_tls(pki))
    with Daemon(config) as daemon:
        daemon.wait_for("status-exporter started")
        assert served_common_name(pki, daemon.address) == "server"
        for cert, key, expected in [
            (*second, "server2"),
            (pki.server_cert, pki.server_key, "server"),
        ]:
            use(cert, key)
            daemon.process.send_signal(signal.SIGHUP)
            daemon.wait_for("configuration reloaded")
            assert served_common_name(pki, daemon.address) == expected
        assert daemon.stop()[0] == 0
