"""The aiohttp application: typed app keys and thin handlers that serve pre-rendered bytes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import suppress

from aiohttp import web
from multidict import CIMultiDict

from exporter.config import Config
from exporter.negotiate import metrics_variant
from exporter.refresh import Refresher
from exporter.render.pages import Pages, render_pages
from exporter.render.prometheus import CONTENT_TYPE_OPENMETRICS, CONTENT_TYPE_TEXT, ProcessMetrics
from exporter.snapshot import Identity, Sources

REFRESHER = web.AppKey("refresher", Refresher[Pages])
PROCESS_METRICS = web.AppKey("process_metrics", ProcessMetrics)

_HTML_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
_JSON_HEADERS = {"Content-Type": "application/json", "X-Content-Type-Options": "nosniff"}
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
_NOT_READY = b"not ready: the first snapshot is still being taken\n"
_NOT_READY_JSON = b'{"error":"not ready: the first snapshot is still being taken"}'


def create_app(
    config: Config, *, identity: Identity | None = None, sources: Sources | None = None
) -> web.Application:
    """Build the application; its refresher starts with the app and stops with it."""
    app = web.Application()
    refresher = Refresher(config, publish=render_pages, identity=identity, sources=sources)
    app[REFRESHER] = refresher
    app[PROCESS_METRICS] = ProcessMetrics()
    app.cleanup_ctx.append(_refresh_in_background)
    handlers = _Handlers(refresher, app[PROCESS_METRICS])
    app.router.add_get("/", handlers.landing)
    app.router.add_get("/metrics", handlers.metrics)
    app.router.add_get("/api/v1/status/", handlers.status)
    app.router.add_get("/api/v1/status", handlers.status)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    return app


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
        """``GET /api/v1/status/``: the original status JSON; ``?pretty`` indents it."""
        published = self._refresher.published
        if published is None:
            return web.Response(status=503, body=_NOT_READY_JSON, headers=_JSON_HEADERS)
        pretty = "pretty" in request.query
        body = published.product.status.body(request.host, pretty=pretty)
        return web.Response(body=body, headers=_JSON_HEADERS)

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
