"""The aiohttp application: typed app keys and thin handlers that serve pre-rendered bytes.

``setup(app, config)`` adds the status routes to any aiohttp application;
``create_app(config)`` is the daemon's application built on it.
"""

from __future__ import annotations

import asyncio
import functools
import html
import importlib.resources
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import suppress
from typing import Any

from aiohttp import hdrs, web
from multidict import CIMultiDict
from yarl import URL

from exporter.config import Config
from exporter.guard import Guard
from exporter.negotiate import accepts_gzip, metrics_variant, prefers_html, prefers_json
from exporter.refresh import Refresher
from exporter.render.html import LANDING_SCRIPT_CSP, STATUS_SCRIPT_CSP
from exporter.render.json import StatusDocument
from exporter.render.pages import Pages, TargetPages, render_pages
from exporter.render.prometheus import CONTENT_TYPE_OPENMETRICS, CONTENT_TYPE_TEXT, ProcessMetrics
from exporter.render.sbom import CONTENT_TYPE as CONTENT_TYPE_SBOM
from exporter.render.sbom import SbomDocument
from exporter.snapshot import Identity, Sources
from exporter.webconfig import WebSecurity

REFRESHER = web.AppKey("refresher", Refresher[Pages])
PROCESS_METRICS = web.AppKey("process_metrics", ProcessMetrics)
GUARD = web.AppKey("guard", Guard)

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTML_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
_LANDING_HEADERS = {**_HTML_HEADERS, "Content-Security-Policy": LANDING_SCRIPT_CSP}
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
_NOT_FOUND_TEXT_HEADERS = {
    "Content-Type": "text/plain; charset=utf-8",
    "X-Content-Type-Options": "nosniff",
    "Vary": "Accept",
}
_NOT_FOUND_HTML_HEADERS = {**_HTML_HEADERS, "Vary": "Accept"}
# Spellings of "off" for a flag such as ?pretty; any other value, or none (?pretty), is "on".
_FLAG_OFF = frozenset({"0", "false", "no", "off"})


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
    # The 404 that lists the endpoints is the daemon's alone: setup() may be embedded in an
    # app whose other routes it cannot speak for. Its handler runs inside the guard, so a
    # request that must authenticate and does not is told nothing of the routes.
    app.on_startup.append(_add_not_found)
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
    register :class:`exporter.StatusCollector` there instead). The status, the SBOM and the
    exposition answer with and without a trailing slash, unless the app already has a
    route at the other form. The refresher starts and stops with the application.
    """
    config = config or Config()
    publish = functools.partial(render_pages, metrics_path=metrics_path)
    refresher = Refresher(config, publish=publish, identity=identity, sources=sources)
    app[REFRESHER] = refresher
    app[PROCESS_METRICS] = ProcessMetrics()
    app.cleanup_ctx.append(_refresh_in_background)
    handlers = _Handlers(refresher, app[PROCESS_METRICS])
    _add_get_both_ways(app.router, "/api/v1/status/", handlers.status)
    app.router.add_get("/api/v1/openapi.json", handlers.openapi)
    _add_get_both_ways(app.router, "/api/v1/sbom", handlers.sbom)
    app.router.add_get("/api/v1/targets", handlers.targets)
    app.router.add_get("/api/v1/modules", handlers.modules)
    _add_get_both_ways(app.router, "/api/v1/targets/{name}/status/", handlers.target_status)
    _add_get_both_ways(app.router, "/api/v1/targets/{name}/sbom", handlers.target_sbom)
    if metrics_path:
        _add_get_both_ways(app.router, metrics_path, handlers.metrics)
    return refresher


def _add_get_both_ways(router: web.UrlDispatcher, path: str, handler: _Handler) -> None:
    """Route GET ``path`` and its twin with the trailing slash added or removed.

    Both forms answer the same body and headers, as /api/v1/status always has: a redirect
    would cost each scrape a round trip, fail a scrape job with follow_redirects: false,
    and an absolute Location would escape a path-prefixing proxy. The bodies have no
    relative links that the extra slash could break. A twin the app already routes is
    left to the app.
    """
    router.add_get(path, handler)
    twin = path.removesuffix("/") if path.endswith("/") else f"{path}/"
    if twin and all(r.canonical != twin for r in router.resources()):
        router.add_get(twin, handler)


def _not_ready(request: web.Request) -> web.Response:
    if _wants_page(request):
        return web.Response(status=503, body=_NOT_READY, headers=_TEXT_HEADERS)
    return web.Response(status=503, body=_NOT_READY_JSON, headers=_JSON_HEADERS)


def _wants_page(request: web.Request) -> bool:
    wanted = request.query.get("format")
    return wanted == "html" or (wanted is None and prefers_html(request.headers.get("Accept", "")))


def _status_response(
    request: web.Request, document: StatusDocument, page: Callable[[], bytes]
) -> web.Response:
    """The status JSON or its page, as ``?format`` or the Accept header asks."""
    query = request.query
    if query.get("format") not in (None, "json", "html"):
        return web.Response(status=400, body=_BAD_FORMAT, headers=_JSON_HEADERS)
    if _wants_page(request):
        return web.Response(body=page(), headers=_STATUS_PAGE_HEADERS)
    body = document.body(request.host, pretty=_query_flag(query.get("pretty")))
    return web.Response(body=body, headers=_JSON_HEADERS)


def _sbom_response(request: web.Request, document: SbomDocument) -> web.Response:
    if document.withheld:
        return web.Response(status=404, body=_SBOM_WITHHELD, headers=_JSON_HEADERS)
    gzip = accepts_gzip(request.headers.get("Accept-Encoding", ""))
    body = document.gzip if gzip else document.body
    return web.Response(body=body, headers=_SBOM_HEADERS[gzip])


def _json_bytes(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _query_flag(value: str | None) -> bool:
    """Whether a query flag such as ``?pretty`` is on, given its value (None: absent).

    Off when absent or ``0``, ``false``, ``no``, ``off`` (any case); on when present with
    no value or any other (``1``, ``true``, ``yes``, ``on``): a flag that only changes the
    presentation keeps every URL that worked before working, rather than failing a typo.
    """
    return value is not None and value.strip().lower() not in _FLAG_OFF


async def _add_not_found(app: web.Application) -> None:
    # At startup, after every route the app's maker added: the fallback must come last.
    app.router.register_resource(_NotFound(app.router))


class _NotFound(web.AbstractResource):
    """The last resource: what no route matches gets a 404 listing the app's endpoints.

    A resource, not a middleware: aiohttp runs a middleware on every request (2 to 4 us
    each in a micro-benchmark on this project's machine, against some 30 us of server CPU
    per /metrics request), a resource only once nothing before it matched. A path that
    other methods can reach is left to the router's 405. It holds no routes of its own, so
    ``router.routes()`` remains what the app serves.
    """

    def __init__(self, router: web.UrlDispatcher) -> None:
        super().__init__()
        self._router = router
        self._route = web.ResourceRoute(hdrs.METH_ANY, self._answer, self)
        self._endpoints: list[str] | None = None
        self._json = self._text = b""

    @property
    def canonical(self) -> str:
        """Every path (it is tried after all others)."""
        return "/{path:.*}"

    def url_for(self, **kwargs: str) -> URL:
        """There is no one URL for what is not there."""
        raise RuntimeError("the 404 fallback has no URL")

    async def resolve(
        self, request: web.Request
    ) -> tuple[web.UrlMappingMatchInfo | None, set[str]]:
        """Match a request no other resource of the router has for any method."""
        for resource in self._router.resources():
            if resource is not self:
                match, allowed = await resource.resolve(request)
                if match is not None or allowed:
                    return None, set()
        return web.UrlMappingMatchInfo({}, self._route), set()

    def add_prefix(self, prefix: str) -> None:
        """Nothing to do: the fallback matches whatever its router is asked."""

    def get_info(self) -> Any:
        """Nothing to introspect."""
        return {}

    def raw_match(self, path: str) -> bool:
        """Never: a route added by path is never merged into this resource."""
        return False

    def __len__(self) -> int:
        return 0

    def __iter__(self) -> Iterator[web.AbstractRoute]:
        return iter(())

    async def _answer(self, request: web.Request) -> web.Response:
        endpoints = self._endpoints
        if endpoints is None:  # the first 404: the router is frozen by now
            endpoints = self._endpoints = _endpoints(self._router)
            self._json = json.dumps(
                {"error": "not found", "endpoints": endpoints}, separators=(",", ":")
            ).encode()
            self._text = "".join(
                ["not found; the endpoints here are:\n", *(f"  {p}\n" for p in endpoints)]
            ).encode()
        accept = request.headers.get("Accept", "")
        if prefers_html(accept):
            body = _not_found_page(endpoints, request.rel_url.raw_path)
            return web.Response(status=404, body=body, headers=_NOT_FOUND_HTML_HEADERS)
        if prefers_json(accept):
            return web.Response(status=404, body=self._json, headers=_JSON_HEADERS)
        return web.Response(status=404, body=self._text, headers=_NOT_FOUND_TEXT_HEADERS)


def _endpoints(router: web.UrlDispatcher) -> list[str]:
    """The paths a GET can reach, sorted; of twins with and without a slash, the first routed."""
    paths: list[str] = []
    for resource in router.resources():
        if not any(route.method in (hdrs.METH_GET, hdrs.METH_ANY) for route in resource):
            continue
        path = resource.canonical
        twin = path.removesuffix("/") if path.endswith("/") else f"{path}/"
        if path not in paths and twin not in paths:
            paths.append(path)
    return sorted(paths)


def _not_found_page(endpoints: list[str], raw_path: str) -> bytes:
    """A small page linking the endpoints relative to ``raw_path`` (a proxy's prefix holds)."""
    base = "../" * (raw_path.count("/") - 1) or "./"
    items = "".join(
        f'<li><a href="{html.escape(p.removeprefix("/") or ".")}">{html.escape(p)}</a></li>'
        for p in endpoints
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<base href="{base}"><title>Not found</title></head>\n'
        f"<body><h1>Not found</h1><p>The endpoints here:</p><ul>{items}</ul></body></html>\n"
    ).encode()


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

        ``?format=json`` or ``?format=html`` chooses outright; ``?pretty`` indents the JSON
        (``?pretty=0``, ``false``, ``no`` or ``off`` does not: see :func:`_query_flag`).
        """
        published = self._refresher.published
        if published is None:
            return _not_ready(request)
        product = published.product
        return _status_response(request, product.status, lambda: product.status_page)

    async def sbom(self, request: web.Request) -> web.Response:
        """``GET /api/v1/sbom``: the CycloneDX 1.6 SBOM of what is installed now."""
        published = self._refresher.published
        if published is None:
            return web.Response(status=503, body=_NOT_READY_JSON, headers=_JSON_HEADERS)
        return _sbom_response(request, published.product.sbom)

    async def targets(self, request: web.Request) -> web.Response:
        """``GET /api/v1/targets``: every target with its Python, commit, modules, findings."""
        published = self._refresher.published
        if published is None:
            return web.Response(status=503, body=_NOT_READY_JSON, headers=_JSON_HEADERS)
        return web.Response(body=published.product.targets_index, headers=_JSON_HEADERS)

    async def modules(self, request: web.Request) -> web.Response:
        """``GET /api/v1/modules``: where each module runs, at which version (every target)."""
        published = self._refresher.published
        if published is None:
            return web.Response(status=503, body=_NOT_READY_JSON, headers=_JSON_HEADERS)
        return web.Response(body=published.product.module_index, headers=_JSON_HEADERS)

    async def target_status(self, request: web.Request) -> web.Response:
        """``GET /api/v1/targets/{name}/status/``: the original status document of a target."""
        found = self._target(request)
        if isinstance(found, web.Response):
            return found
        return _status_response(request, found.status, found.status_page.body)

    async def target_sbom(self, request: web.Request) -> web.Response:
        """``GET /api/v1/targets/{name}/sbom``: a target's CycloneDX 1.6 SBOM."""
        found = self._target(request)
        if isinstance(found, web.Response):
            return found
        return _sbom_response(request, found.sbom)

    def _target(self, request: web.Request) -> TargetPages | web.Response:
        """The target the path names, or the error response: 404 unknown, 503 never read."""
        published = self._refresher.published
        if published is None:
            return web.Response(status=503, body=_NOT_READY_JSON, headers=_JSON_HEADERS)
        name = request.match_info["name"]
        pages = published.product.targets.get(name)
        if pages is not None:
            return pages
        target = published.host.target(name)
        if target is None:
            error = {"error": f"no target named {name!r}", "targets": "/api/v1/targets"}
            return web.Response(status=404, body=_json_bytes(error), headers=_JSON_HEADERS)
        error = {"error": f"target {name!r} not read yet: {target.last_error}"}
        return web.Response(status=503, body=_json_bytes(error), headers=_JSON_HEADERS)

    async def openapi(self, request: web.Request) -> web.Response:
        """``GET /api/v1/openapi.json``: the OpenAPI 3.1 description of these endpoints."""
        return web.Response(body=OPENAPI_DOCUMENT, headers=_OPENAPI_HEADERS)

    async def landing(self, request: web.Request) -> web.Response:
        """``GET /``: the landing page for people."""
        published = self._refresher.published
        if published is None:
            return web.Response(status=503, body=_NOT_READY, headers=_TEXT_HEADERS)
        headers = _LANDING_HEADERS if published.host.has_targets else _HTML_HEADERS
        return web.Response(body=published.product.landing, headers=headers)

    async def healthz(self, request: web.Request) -> web.Response:
        """``GET /healthz``: 200 while the process serves requests."""
        return web.Response(body=b"ok\n", headers=_TEXT_HEADERS)

    async def readyz(self, request: web.Request) -> web.Response:
        """``GET /readyz``: 200 once the first snapshot is published, 503 before."""
        if self._refresher.published is None:
            return web.Response(status=503, body=_NOT_READY, headers=_TEXT_HEADERS)
        return web.Response(body=b"ready\n", headers=_TEXT_HEADERS)
