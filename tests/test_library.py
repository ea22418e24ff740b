"""Library mode: StatusCollector, status_dict and the aiohttp setup inside an application."""

from __future__ import annotations

import platform
import sys
import threading
import time

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from support import env_config, make_config

import exporter
from exporter.aiohttp import setup
from exporter.snapshot import Sources
from exporter.web import REFRESHER


def families_of(registry: CollectorRegistry) -> dict:
    text = generate_latest(registry).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_collector_publishes_the_daemons_info_series(fake_env):
    """In an application's own registry it publishes build, python, platform and module info."""
    fake_env.install("Django", "4.2.1")
    registry = CollectorRegistry()
    collector = exporter.StatusCollector(env_config(fake_env), background=False)
    registry.register(collector)
    families = families_of(registry)
    assert {"build_info", "python_info", "platform_info", "module_info"} <= set(families)
    (build,) = families["build_info"].samples
    assert build.labels["commit"] == "abc1234"
    assert [s.labels for s in families["module_info"].samples] == [
        {"module": "django", "version": "4.2.1"}
    ]
    assert families["python_info"].samples[0].labels["version"] == platform.python_version()


def test_collector_with_no_arguments_uses_the_config_defaults():
    """StatusCollector() reads this interpreter's installed distributions, like config.yaml."""
    collector = exporter.StatusCollector(background=False)
    assert "aiohttp" in collector.snapshot.modules
    assert collector.snapshot.refresh_interval_seconds == 60


def test_collector_refreshes_in_the_background(fake_env):
    """A background thread picks up an upgrade without any call from the application."""
    fake_env.install("pkg", "1.0")
    collector = exporter.StatusCollector(env_config(fake_env, refresh={"interval_seconds": 0.05}))
    try:
        fake_env.upgrade("pkg", "2.0")
        deadline = time.monotonic() + 10
        while collector.snapshot.modules.get("pkg") != "2.0":
            assert time.monotonic() < deadline, "the background refresh never happened"
            time.sleep(0.02)
    finally:
        collector.stop()


def test_collect_never_waits_for_a_refresh(fake_env):
    """While a refresh is stuck, collect() still answers at once from the last snapshot."""
    fake_env.install("pkg", "1.0")
    stuck, release = threading.Event(), threading.Event()

    def uname():
        if stuck.is_set():
            release.wait(10)
        return platform.uname()

    collector = exporter.StatusCollector(
        env_config(fake_env), background=False, sources=Sources(environ={}, uname=uname)
    )
    stuck.set()
    refresher = threading.Thread(target=collector.refresh)
    refresher.start()
    try:
        started = time.monotonic()
        names = [f.name for f in collector.collect()]
        assert time.monotonic() - started < 0.5
        assert "module" in names
    finally:
        release.set()
        refresher.join(10)


def test_status_dict_has_the_original_fields(fake_env):
    """status_dict() returns the status JSON's fields with the given server address."""
    fake_env.install("six", "1.16.0")
    status = exporter.status_dict(env_config(fake_env), server_address="app.example:80")
    assert status["server_address"] == "app.example:80"
    assert status["modules"] == {"six": "1.16.0"}
    assert status["server_id"] == exporter.status_dict(env_config(fake_env))["server_id"]


def test_loaded_source_matches_the_original_algorithm():
    """With source loaded, modules are exactly the sys.modules entries with a str __version__."""
    frozen = dict(sys.modules)
    expected = {
        name: vars(module)["__version__"]
        for name, module in frozen.items()
        if isinstance(vars(module).get("__version__"), str)
    }
    collector = exporter.StatusCollector(
        make_config(modules={"source": "loaded"}),
        background=False,
        sources=Sources(environ={}, sys_modules=lambda: frozen),
    )
    assert dict(collector.snapshot.modules) == expected
    assert "json" in expected


async def test_aiohttp_setup_adds_routes_to_an_existing_app(fake_env, aiohttp_client):
    """setup(app, config) adds the status routes and refresher; the app's routes still work."""
    fake_env.install("django", "4.2.1")

    async def own(request):
        return web.Response(text="mine")

    app = web.Application()
    app.router.add_get("/", own)
    setup(app, env_config(fake_env))
    client = await aiohttp_client(app)
    await app[REFRESHER].wait_ready()
    assert await (await client.get("/")).text() == "mine"
    status = await (await client.get("/api/v1/status/")).json()
    assert status["modules"] == {"django": "4.2.1"}
    assert 'module_info{module="django"' in await (await client.get("/metrics")).text()


async def test_aiohttp_setup_without_metrics_route(fake_env, aiohttp_client):
    """metrics_path=None leaves /metrics to the application."""
    app = web.Application()
    setup(app, env_config(fake_env), metrics_path=None)
    client = await aiohttp_client(app)
    await app[REFRESHER].wait_ready()
    assert (await client.get("/metrics")).status == 404
    page = await (await client.get("/api/v1/status/?format=html")).text()
    assert "Prometheus metrics" not in page


def test_default_registry_needs_python_info_off():
    """prometheus_client's REGISTRY already has python_info; python_info=False registers cleanly."""
    from prometheus_client import REGISTRY

    collector = exporter.StatusCollector(python_info=False, background=False)
    REGISTRY.register(collector)
    try:
        families = families_of(REGISTRY)
        assert "module_info" in families
        assert len(families["python_info"].samples) == 1
    finally:
        REGISTRY.unregister(collector)
