"""The aiohttp application: typed app keys and thin handlers that serve pre-rendered bytes.

``setup(app, config)`` adds the status routes to any aiohttp application;
``create_app(config)`` is the daemon's application built on it.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.resources
from collections.abc import AsyncIterator
from contextlib import suppress

from aiohttp import web
from multidict import CIMultiDict

from exporter.config import Config
from exporter.guard import Guard
from exporter.negotiate import accepts_gzip, metrics_variant, prefers_html
from exporter.refresh import Refresher
from exporter.render.html import STATUS_SCRIPT_CSP
from exporter.render.pages import Pages, render_pages
from exporter.render.prometheus import CONTENT_TYPE_OPENMETRICS, CONTENT_TYPE_TEXT, ProcessMetrics
from exporter.render.sbom import CONTENT_TYPE as CONTENT_TYPE_SBOM
from exporter.snapshot import Identity, Sources
from exporter.webconfig import WebSecurity

REFRESHER = web.AppKey("refresher", Refresher[Pages])
PROCESS_METRICS = web.AppKey("process_metrics", ProcessMetrics)
GUARD = web.AppKey("guard", Guard)

_HTML_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
_JSON_HEADERS = {
    "Content-Type": "application/json",
    "X-Content-Type-Options": "nosniff",
    "Vary": "Accept",
}
_STATUS_PAGE_HEADERS = {
    **_HTML_HEADERS,
    "Content-Security-Policy": STATUS_SCRIPT_CSP,
    "Vary": "Accept",
}
_OPENAPI_HEADERS = {"Content-Type": "application/json", "X-Content-Type-Options": "nosniff"}
OPENAPI_DOCUMENT = (importlib.resources.files("exporter") / "openapi.json").read_bytes()
_TEXT_HEADERS = {"Content-Type": "text/plain; charset=utf-8"}
_METRICS_HEADERS = {
    (openmetrics, gzip): CIMultiDict(
        {
            "Content-Type": CONTENT_TYPE_OPENMETRICS if openmetrics else CONTENT_TYPE_TEXT,
            "Vary": "Accept, Accept-Encoding",
            **({"Content-Encoding": "gzip"} if gzip else {}),
        }
    )
    for openmetrics in (False, True)
    for gzip in (False, True)
}
_SBOM_HEADERS = {
    gzip: CIMultiDict(
        {
            "Content-Type": CONTENT_TYPE_SBOM,
            "X-Content-Type-Options": "nosniff",
            "Vary": "Accept-Encoding",
            **({"Content-Encoding": "gzip"} if gzip else {}),
        }
    )
    for gzip in (False, True)
}
_SBOM_WITHHELD = b'{"error":"the SBOM is withheld: redact.modules hides the modules from JSON"}'
_NOT_READY = b"not ready: the first snapshot is still being taken\n"
_NOT_READY_JSON = b'{"error":"not ready: the first snapshot is still being taken"}'
_BAD_FORMAT = b'{"error":"format must be json or html"}'


def create_app(
    config: Config,
    *,
    security: WebSecurity | None = None,
    identity: Identity | None = None,
    sources: Sources | None = None,
) -> web.Application:
    """The daemon's application: the status routes, a landing page and health probes.

    ``security`` (a loaded ``--web.config.file``) turns on basic auth and extra
    headers; the guard under ``GUARD`` can swap them on reload.
    """
    guard = Guard(security, config.web)
    # aiohttp wraps every middleware on every request: install it only when it has work.
    app = web.Application(middlewares=[guard.middleware] if guard.needed(security) else [])
    app[GUARD] = guard
    app.on_cleanup.append(_close_guard)
    setup(app, config, identity=identity, sources=sources)
    handlers = _Handlers(app[REFRESHER], app[PROCESS_METRICS])
    app.router.add_get("/", handlers.landing)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    return app


def setup(
    app: web.Application,
    config: Config | None = None,
    *,
    metrics_path: str | None = "/metrics",
    identity: Identity | None = None,
    sources: Sources | None = None,
) -> Refresher[Pages]:
    """Add the status routes and their refresher to an aiohttp application.

    Routes: ``/api/v1/status/`` (JSON, or HTML for browsers), its OpenAPI
    document at ``/api/v1/openapi.json``, the SBOM at ``/api/v1/sbom``, and the exposition at
    ``metrics_path`` unless it is None (an app with its own /metrics can
    register :class:`exporter.StatusCollector` there instead). The refresher
    starts and stops with the application.
    """
    config = config or Config()
    publish = functools.partial(render_pages, metrics_path=metrics_path)
    refresher = Refresher(config, publish=publish, identity=identity, sources=sources)
    app[REFRESHER] = refresher
    app[PROCESS_METRICS] = ProcessMetrics()
    app.cleanup_ctx.append(_refresh_in_background)
    handlers = _Handlers(refresher, app[PROCESS_METRICS])
    app.router.add_get("/api/v1/status/", handlers.status)
    app.router.add_get("/api/v1/status", handlers.status)
    app.router.add_get("/api/v1/openapi.json", handlers.openapi)
    app.router.add_get("/api/v1/sbom", handlers.sbom)
    if metrics_path:
        app.router.add_get(metrics_path, handlers.metrics)
    return refresher


async def _close_guard(app: web.Application) -> None:
    app[GUARD].close()


async def _refresh_in_background(app: web.Application) -> AsyncIterator[None]:
    refresher = app[REFRESHER]
    task = asyncio.create_task(refresher.run(), name="refresher")
    yield
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task
    refresher.close()


class _Handlers:
    """The request handlers, bound to what they read so a request does no lookups."""

    __slots__ = ("_process", "_refresher")

    def __init__(self, refresher: Refresher[Pages], process: ProcessMetrics) -> None:
        self._refresher = refresher
        self._process = process

    async def metrics(self, request: web.Request) -> web.Response:
        """``GET /metrics``: the exposition in the format and encoding the client accepts."""
        published = self._refresher.published
        if published is None:
            return web.Response(status=503, body=_NOT_READY, headers=_TEXT_HEADERS)
        headers = request.headers
        variant = metrics_variant(headers.get("Accept", ""), headers.get("Accept-Encoding", ""))
        body = published.product.metrics.body(self._process.current(), variant)
        return web.Response(body=body, headers=_METRICS_HEADERS[variant])

    async def status(self, request: web.Request) -> web.Response:
        """``GET /api/v1/status/``: the original status JSON, or a page when a browser asks.

        ``?format=json`` or ``?format=html`` chooses outright; ``?pretty`` indents the JSON.
        """
        published = self._refresher.published
        query = request.query
        wanted = query.get("format")
        if wanted not in (None, "json", "html"):
            return web.Response(status=400, body=_BAD_FORMAT, headers=_JSON_HEADERS)
        if wanted == "html" or (wanted is None and prefers_html(request.headers.get("Accept", ""))):
            if published is None:
                return web.Response(status=503, body=_NOT_READY, headers=_TEXT_HEADERS)
            return web.Response(body=published.product.status_page, headers=_STATUS_PAGE_HEADERS)
        if published is None:
            return web.Response(status=503, body=_NOT_READY_JSON, headers=_JSON_HEADERS)
        body = published.product.status.body(request.host, pretty="pretty" in query)
        return web.Response(body=body, headers=_JSON_HEADERS)

    async def sbom(self, request: web.Request) -> web.Response:
        """``GET /api/v1/sbom``: the CycloneDX 1.6 SBOM of what is installed now."""
        published = self._refresher.published
        if published is None:
            return web.Response(status=503, body=_NOT_READY_JSON, headers=_JSON_HEADERS)
        document = published.product.sbom
        if document.withheld:
            return web.Response(status=404, body=_SBOM_WITHHELD, headers=_JSON_HEADERS)
        gzip = accepts_gzip(request.headers.get("Accept-Encoding", ""))
        body = document.gzip if gzip else document.body
        return web.Response(body=body, headers=_SBOM_HEADERS[gzip])

    async def openapi(self, request: web.Request) -> web.Response:
        """``GET /api/v1/openapi.json``: the OpenAPI 3.1 description of these endpoints."""
        return web.Response(body=OPENAPI_DOCUMENT, headers=_OPENAPI_HEADERS)

    async def landing(self, request: web.Request) -> web.Response:
        """``GET /``: the landing page for people."""
        published = self._refresher.published
        if published is None:
            return web.Response(status=503, body=_NOT_READY, headers=_TEXT_HEADERS)
        return web.Response(body=published.product.landing, headers=_HTML_HEADERS)

    async def healthz(self, request: web.Request) -> web.Response:
        """``GET /healthz``: 200 while the process serves requests."""
        return web.Response(body=b"ok\n", headers=_TEXT_HEADERS)

    async def readyz(self, request: web.Request) -> web.Response:
        """``GET /readyz``: 200 once the first snapshot is published, 503 before."""
        if self._refresher.published is None:
            return web.Response(status=503, body=_NOT_READY, headers=_TEXT_HEADERS)
        return web.Response(body=b"ready\n", headers=_TEXT_HEADERS)
