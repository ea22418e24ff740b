"""The HTTP endpoints, over real sockets: contract, formats, methods, and change over time."""

from __future__ import annotations

import asyncio
import base64
import html
import json
import platform
import threading
import uuid

import pytest
from aiohttp import web
from support import (
    PASSWORD,
    REFERENCE_TYPES,
    bcrypt_hash,
    env_config,
    fetch_metrics,
    gunzip,
    make_config,
    module_series,
    quiet_sources,
    refresh,
)

from exporter.snapshot import Identity, Sources
from exporter.web import REFRESHER, create_app, setup
from exporter.webconfig import load_web_config

DAEMON_ENDPOINTS = [
    "/",
    "/api/v1/modules",
    "/api/v1/openapi.json",
    "/api/v1/sbom",
    "/api/v1/status/",
    "/api/v1/targets",
    "/api/v1/targets/{name}/sbom",
    "/api/v1/targets/{name}/status/",
    "/healthz",
    "/metrics",
    "/readyz",
]
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


async def test_status_json_matches_the_original_contract(fake_env, start_client):
    """Every original field is present with its original type, plus server_id."""
    fake_env.install("Django", "1.11.5")
    fake_env.install("coverage", "4.5.1")
    client = await start_client(env_config(fake_env))
    response = await client.get("/api/v1/status/")
    assert response.status == 200
    assert response.content_type == "application/json"
    body = await response.json()
    for name, kind in REFERENCE_TYPES.items():
        assert isinstance(body[name], kind), name
    assert body["api_version"] == 1
    assert body["commit"] == "abc1234"
    assert body["modules"] == {"coverage": "4.5.1", "django": "1.11.5"}
    assert set(body["platform_info"]) == {
        "system",
        "node",
        "release",
        "version",
        "machine",
        "processor",
    }
    assert body["platform_info"]["system"] == platform.system()
    assert "\n" not in body["python_version"]
    assert uuid.UUID(body["server_id"]).version == 4
    assert body["server_address"] == f"{client.host}:{client.port}"


async def test_server_address_is_the_host_header(fake_env, start_client):
    """server_address echoes each request's Host header, escaped as JSON."""
    client = await start_client(env_config(fake_env))
    for host in ("status.example.com:8000", 'evil"host</script>'):
        body = await (await client.get("/api/v1/status/", headers={"Host": host})).json()
        assert body["server_address"] == host


async def test_trailing_slash_optional_and_pretty(fake_env, start_client):
    """/api/v1/status works without the slash; ?pretty indents the same document."""
    fake_env.install("six", "1.16.0")
    client = await start_client(env_config(fake_env))
    compact = await (await client.get("/api/v1/status/")).text()
    bare = await (await client.get("/api/v1/status")).text()
    pretty = await (await client.get("/api/v1/status/?pretty")).text()
    assert compact == bare
    assert "\n" not in compact
    assert pretty.count("\n") > 10
    assert json.loads(pretty) == json.loads(compact)


@pytest.mark.parametrize(
    ("query", "indented"),
    [
        ("", False),
        ("?pretty", True),
        ("?pretty=", True),
        ("?pretty=1", True),
        ("?pretty=true", True),
        ("?pretty=True", True),
        ("?pretty=yes", True),
        ("?pretty=on", True),
        ("?pretty=0", False),
        ("?pretty=false", False),
        ("?pretty=FALSE", False),
        ("?pretty=no", False),
        ("?pretty=off", False),
        ("?pretty=Off", False),
        ("?pretty=2", True),
        ("?format=json&pretty=0", False),
        ("?format=json&pretty", True),
    ],
)
async def test_pretty_is_a_boolean(fake_env, start_client, query, indented):
    """?pretty indents unless absent or 0/false/no/off in any case; other values indent."""
    client = await start_client(env_config(fake_env))
    response = await client.get(f"/api/v1/status/{query}")
    assert response.status == 200
    text = await response.text()
    assert ("\n  " in text) is indented
    assert json.loads(text)["api_version"] == 1


async def test_server_id_is_fixed_for_the_process(fake_env, start_client):
    """server_id stays the same across refreshes."""
    client = await start_client(env_config(fake_env))
    before = (await (await client.get("/api/v1/status/")).json())["server_id"]
    await refresh(client)
    after = (await (await client.get("/api/v1/status/")).json())["server_id"]
    assert before == after


@pytest.mark.parametrize(
    ("accept", "encoding", "content_type", "gzipped"),
    [
        ("", "", "text/plain; version=0.0.4; charset=utf-8", False),
        ("", "gzip", "text/plain; version=0.0.4; charset=utf-8", True),
        (
            "application/openmetrics-text;version=1.0.0",
            "",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            False,
        ),
        (
            "application/openmetrics-text;version=1.0.0",
            "gzip",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            True,
        ),
    ],
)
async def test_metrics_formats(fake_env, start_client, accept, encoding, content_type, gzipped):
    """/metrics answers in the negotiated format and encoding, with matching headers."""
    fake_env.install("django", "4.2.1")
    client = await start_client(env_config(fake_env))
    response = await client.get(
        "/metrics",
        headers={"Accept": accept, "Accept-Encoding": encoding},
        auto_decompress=False,
    )
    assert response.status == 200
    assert response.headers["Content-Type"] == content_type
    assert ("Content-Encoding" in response.headers) is gzipped
    raw = await response.read()
    text = (gunzip(raw) if gzipped else raw).decode()
    assert 'module_info{module="django",version="4.2.1"} 1.0' in text
    assert text.endswith("# EOF\n") == ("openmetrics" in content_type)


async def test_install_upgrade_remove_show_everywhere_with_no_stale_series(fake_env, start_client):
    """After a refresh, every endpoint shows the new environment and no old label set remains."""
    fake_env.install("django", "3.2.0")
    fake_env.install("requests", "2.31.0")
    client = await start_client(env_config(fake_env))
    assert module_series(await fetch_metrics(client)) == {"django": "3.2.0", "requests": "2.31.0"}

    fake_env.upgrade("django", "4.2.1")
    fake_env.remove("requests")
    fake_env.install("flask", "3.0.0")
    await refresh(client)

    expected = {"django": "4.2.1", "flask": "3.0.0"}
    assert module_series(await fetch_metrics(client)) == expected
    assert (
        module_series(await fetch_metrics(client, openmetrics=True), openmetrics=True) == expected
    )
    status = await (await client.get("/api/v1/status/")).json()
    assert status["modules"] == expected
    text = await (await client.get("/metrics")).text()
    assert "3.2.0" not in text
    assert "requests" not in text
    changes = (await fetch_metrics(client))["status_exporter_module_changes"]
    counts = {s.labels["change"]: s.value for s in changes.samples}
    assert counts["added"] == 1
    assert counts["removed"] == 1
    assert counts["upgraded"] == 1
    modules_gauge = (await fetch_metrics(client))["status_exporter_modules"]
    assert modules_gauge.samples[0].value == 2


async def test_hostile_metadata_is_escaped_or_skipped_on_every_endpoint(fake_env, start_client):
    """Hostile names and versions stay valid JSON, metrics and HTML; broken ones are counted."""
    fake_env.install_raw("x1", b'Name: <script>alert("x")</script>\nVersion: 1.0\\"\n')
    fake_env.install_raw("x2", b"Name: bin\nVersion: \xff\xfe\n")
    fake_env.install_raw("x3", b"Name: nover\n")
    client = await start_client(env_config(fake_env, app={"version": "<b>v</b>"}))
    status = await (await client.get("/api/v1/status/")).json()
    assert status["modules"] == {'<script>alert("x")</script>': '1.0\\"'}
    families = await fetch_metrics(client)
    assert module_series(families) == status["modules"]
    assert families["status_exporter_modules_skipped"].samples[0].value == 2
    page = await (await client.get("/")).text()
    assert "<b>v</b>" not in page
    assert html.escape("<b>v</b>") in page


async def test_landing_page_links_and_headers(fake_env, start_client):
    """/ is an HTML page linking to the data, with security headers."""
    client = await start_client(env_config(fake_env))
    response = await client.get("/")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    page = await response.text()
    assert 'href="metrics"' in page
    assert 'href="api/v1/status/?pretty"' in page
    assert "abc1234" in page


async def test_head_methods_and_unknown_paths(fake_env, start_client):
    """HEAD works where GET does, other methods get 405, unknown paths 404."""
    client = await start_client(env_config(fake_env))
    for path in ("/", "/metrics", "/api/v1/status/", "/healthz", "/readyz"):
        head = await client.head(path)
        assert head.status == 200, path
        assert await head.read() == b""
        post = await client.post(path, data=b"x")
        assert post.status == 405, path
        assert "GET" in post.headers["Allow"]
    assert (await client.get("/nope")).status == 404
    assert (await client.delete("/metrics")).status == 405


async def test_readyz_is_503_until_the_first_snapshot(fake_env, aiohttp_client):
    """Before the first snapshot /readyz and the data endpoints say 503; /healthz says 200."""
    release = threading.Event()

    def slow_uname():
        release.wait(10)
        return platform.uname()

    app = create_app(
        env_config(fake_env),
        identity=Identity.new(),
        sources=Sources(environ={}, uname=slow_uname),
    )
    client = await aiohttp_client(app)
    try:
        assert (await client.get("/healthz")).status == 200
        for path in ("/readyz", "/metrics", "/api/v1/status/", "/"):
            assert (await client.get(path)).status == 503, path
        status = await client.get("/api/v1/status/")
        assert "error" in await status.json()
    finally:
        release.set()
    await asyncio.wait_for(app[REFRESHER].wait_ready(), 10)
    assert (await client.get("/readyz")).status == 200


async def test_exporter_health_metrics(fake_env, start_client):
    """The status_exporter_* family reports build, refresh timing and counters."""
    fake_env.install("a", "1")
    client = await start_client(env_config(fake_env, refresh={"interval_seconds": 30}))
    await refresh(client)
    families = await fetch_metrics(client)
    (build,) = families["status_exporter_build_info"].samples
    assert build.labels["version"]
    assert families["status_exporter_refresh_duration_seconds"].samples[0].value > 0
    assert families["status_exporter_last_refresh_timestamp_seconds"].samples[0].value > 1e9
    assert families["status_exporter_refresh_interval_seconds"].samples[0].value == 30
    assert families["status_exporter_refreshes"].samples[0].value == 2
    assert families["status_exporter_refresh_errors"].samples[0].value == 0
    assert "process_resident_memory_bytes" in families
    assert "every 30 seconds" in families["module_info"].documentation


async def test_loaded_source_reports_this_process(start_client):
    """With modules.source loaded, /api/v1/status/ lists sys.modules entries with __version__."""
    client = await start_client(make_config(modules={"source": "loaded"}))
    modules = (await (await client.get("/api/v1/status/")).json())["modules"]
    assert modules["json"] == json.__version__
    assert "aiohttp" in modules


def without_date(headers) -> dict[str, str]:
    """A response's headers but Date, which changes between two requests."""
    return {k: v for k, v in headers.items() if k != "Date"}


async def test_metrics_and_sbom_answer_with_a_trailing_slash_too(fake_env, start_client):
    """/metrics/ and /api/v1/sbom/ answer as /metrics and /api/v1/sbom do: status, headers, body."""
    fake_env.install("django", "4.2.1")
    client = await start_client(env_config(fake_env))
    for encoding in ("", "gzip"):
        headers = {"Accept-Encoding": encoding}
        bare = await client.get("/api/v1/sbom", headers=headers, auto_decompress=False)
        slash = await client.get("/api/v1/sbom/", headers=headers, auto_decompress=False)
        assert bare.status == slash.status == 200
        assert without_date(slash.headers) == without_date(bare.headers)
        assert await slash.read() == await bare.read()
    for accept in ("", "application/openmetrics-text;version=1.0.0"):
        headers = {"Accept": accept}
        bare = await client.get("/metrics", headers=headers)
        slash = await client.get("/metrics/", headers=headers)
        assert bare.status == slash.status == 200
        # Content-Length may differ: the process_* samples move between two requests.
        assert without_date(slash.headers).keys() == without_date(bare.headers).keys()
        for name in ("Content-Type", "Vary"):
            assert slash.headers[name] == bare.headers[name]
        assert 'module_info{module="django",version="4.2.1"}' in await slash.text()
    head = await client.head("/metrics/")
    assert head.status == 200
    assert await head.read() == b""


@pytest.mark.parametrize(
    ("metrics_path", "answered", "not_found"),
    [
        ("/custom/metrics", ["/custom/metrics", "/custom/metrics/"], ["/metrics", "/metrics/"]),
        ("/m/", ["/m/", "/m"], ["/metrics"]),
        (None, [], ["/metrics", "/metrics/"]),
    ],
)
async def test_setup_routes_its_metrics_path_both_ways(
    aiohttp_client, metrics_path, answered, not_found
):
    """setup(metrics_path=...) serves that path with and without the slash; None serves none."""
    app = web.Application()
    setup(app, make_config(), metrics_path=metrics_path, sources=quiet_sources())
    client = await aiohttp_client(app)
    await asyncio.wait_for(app[REFRESHER].wait_ready(), 30)
    for path in answered:
        response = await client.get(path)
        assert response.status == 200, path
        assert "module_info" in await response.text(), path
    for path in not_found:
        assert (await client.get(path)).status == 404, path
    for path in ("/api/v1/sbom/", "/api/v1/status"):
        assert (await client.get(path)).status == 200, path


async def test_setup_leaves_a_twin_the_app_already_routes(aiohttp_client):
    """An app that routes /metrics/ itself keeps it; setup() still adds /metrics."""

    async def own(request):
        return web.Response(text="the app's own")

    app = web.Application()
    app.router.add_get("/metrics/", own)
    setup(app, make_config(), sources=quiet_sources())
    client = await aiohttp_client(app)
    await asyncio.wait_for(app[REFRESHER].wait_ready(), 30)
    assert await (await client.get("/metrics/")).text() == "the app's own"
    assert "module_info" in await (await client.get("/metrics")).text()


async def test_setup_gives_an_embedding_app_no_404_listing(aiohttp_client):
    """setup() leaves an app's 404 alone: no endpoint list the app did not write."""
    app = web.Application()
    setup(app, make_config(), sources=quiet_sources())
    client = await aiohttp_client(app)
    response = await client.get("/nope", headers={"Accept": "application/json"})
    assert response.status == 404
    assert "endpoints" not in await response.text()


async def test_404_lists_the_endpoints_as_json_for_json_clients(fake_env, start_client):
    """A 404 asked for JSON is {"error", "endpoints"}, each endpoint one the daemon answers
    (a target's, {name} filled in with a configured target)."""
    config = env_config(
        fake_env, targets={"environments": [{"name": "web", "paths": [str(fake_env.path)]}]}
    )
    client = await start_client(config)
    for accept in ("application/json", "application/json, text/plain, */*"):
        response = await client.get("/nope", headers={"Accept": accept})
        assert response.status == 404
        assert response.headers["Content-Type"] == "application/json"
        assert response.headers["Vary"] == "Accept"
        assert await response.json() == {"error": "not found", "endpoints": DAEMON_ENDPOINTS}
    for path in DAEMON_ENDPOINTS:
        assert (await client.get(path.replace("{name}", "web"))).status == 200, path


async def test_404_lists_the_endpoints_as_text_by_default(fake_env, start_client):
    """A 404 for curl (*/*, or no Accept) is plain text with one endpoint a line."""
    client = await start_client(env_config(fake_env))
    for headers in ({}, {"Accept": "*/*"}, {"Accept": "text/plain, application/json;q=0.5"}):
        response = await client.get("/api/v1/nope", headers=headers)
        assert response.status == 404
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
        lines = (await response.text()).splitlines()
        assert lines[0].startswith("not found")
        assert [line.strip() for line in lines[1:]] == DAEMON_ENDPOINTS


async def test_404_is_a_small_page_for_browsers_with_links_relative_to_the_path(
    fake_env, start_client
):
    """A browser's 404 is HTML with escaped, relative links that hold under a proxy's prefix."""
    client = await start_client(env_config(fake_env))
    response = await client.get("/a/b/<script>", headers={"Accept": BROWSER_ACCEPT})
    assert response.status == 404
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    page = await response.text()
    assert "<script>" not in page
    assert '<base href="../../">' in page
    assert '<a href="metrics">/metrics</a>' in page
    assert '<a href=".">/</a>' in page
    top = await (await client.get("/nope", headers={"Accept": BROWSER_ACCEPT})).text()
    assert '<base href="./">' in top


async def test_404_lists_routes_added_after_create_app_escaped(fake_env, aiohttp_client):
    """The list is read from the router at the first 404: later routes are in it, escaped."""

    async def extra(request):
        return web.Response(text="extra")

    app = create_app(env_config(fake_env), identity=Identity.new(), sources=quiet_sources())
    app.router.add_get("/x&<y>", extra)
    client = await aiohttp_client(app)
    assert await (await client.get("/x&<y>")).text() == "extra"
    endpoints = (await (await client.get("/nope", headers={"Accept": "application/json"})).json())[
        "endpoints"
    ]
    assert "/x&<y>" in endpoints
    page = await (await client.get("/nope", headers={"Accept": BROWSER_ACCEPT})).text()
    assert "&lt;y&gt;" in page
    assert "<y>" not in page


async def test_404_leaves_405_and_head_as_they_were(fake_env, start_client):
    """Other methods on a known path stay 405 with Allow; any method on an unknown path is 404."""
    client = await start_client(env_config(fake_env))
    for path in ("/metrics", "/metrics/", "/api/v1/sbom/", "/"):
        response = await client.post(path, data=b"x")
        assert response.status == 405, path
        assert "GET" in response.headers["Allow"]
    for method in ("POST", "DELETE", "PUT"):
        response = await client.request(method, "/nope", headers={"Accept": "application/json"})
        assert response.status == 404, method
        assert (await response.json())["endpoints"] == DAEMON_ENDPOINTS
    head = await client.head("/nope")
    assert head.status == 404
    assert await head.read() == b""


def json_as(user: str, password: str | None) -> dict[str, str]:
    """Headers asking for JSON, signed in as ``user`` unless ``password`` is None."""
    if password is None:
        return {"Accept": "application/json"}
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Accept": "application/json", "Authorization": f"Basic {token}"}


async def test_404_listing_is_behind_basic_auth(fake_env, tmp_path, aiohttp_client):
    """With basic auth, an unauthenticated 404 is a bare 401; only a signed-in one is listed."""
    (tmp_path / "web.yml").write_text(
        json.dumps({"basic_auth_users": {"prometheus": bcrypt_hash(PASSWORD)}})
    )
    app = create_app(
        env_config(fake_env),
        security=load_web_config(tmp_path / "web.yml"),
        identity=Identity.new(),
        sources=quiet_sources(),
    )
    client = await aiohttp_client(app)
    await asyncio.wait_for(app[REFRESHER].wait_ready(), 30)
    for password in (None, "wrong"):
        response = await client.get("/nope", headers=json_as("prometheus", password))
        assert response.status == 401
        assert "/metrics" not in await response.text()
    response = await client.get("/nope", headers=json_as("prometheus", PASSWORD))
    assert response.status == 404
    assert (await response.json())["endpoints"] == DAEMON_ENDPOINTS
