"""What stands between the network and the handlers: limits, deadlines, authentication.

- ``Guard.middleware``: basic auth (all paths but the open ones) and the web
  config's extra headers; a reload swaps its rules whole.
- ``GuardedTCPSite``: a TCP site whose connections must send a complete
  request head within ``web.header_timeout_seconds`` (give or take a quarter
  of it: slow clients that trickle headers byte by byte are closed), and beyond
  ``web.max_connections`` open connections get a fast 503 and are closed,
  rather than queueing without bound.
"""

from __future__ import annotations

import asyncio
import time
import typing
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.web_runner import BaseSite

from exporter.auth import BasicAuth
from exporter.config import WebConfig
from exporter.webconfig import WebSecurity

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_UNAUTHORIZED = b"401 Unauthorized\n"
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n"
    b"Connection: close\r\nRetry-After: 1\r\n\r\ntoo many connections"
)
_HEAD_END = b"\r\n\r\n"
_REFUSED_GRACE = 1.0


class Guard:
    """Authentication and extra headers, replaced whole by ``update`` on reload."""

    def __init__(self, security: WebSecurity | None, web_config: WebConfig) -> None:
        self._auth: BasicAuth | None = None
        self._headers: Mapping[str, str] = {}
        self._open_paths: frozenset[str] = frozenset()
        self.update(security, web_config)

    def update(self, security: WebSecurity | None, web_config: WebConfig) -> None:
        """Apply a (new) web config and config.yaml's open paths."""
        old = self._auth
        self._auth = BasicAuth(security.users) if security and security.users else None
        self._headers = dict(security.headers) if security else {}
        self._open_paths = frozenset(web_config.open_paths)
        if old is not None:
            old.close()

    @staticmethod
    def needed(security: WebSecurity | None) -> bool:
        """Whether a web config has anything for the middleware to do (users or headers)."""
        return security is not None and bool(security.users or security.headers)

    @property
    def authenticating(self) -> bool:
        """Whether basic auth is on."""
        return self._auth is not None

    def close(self) -> None:
        """Stop the authentication worker."""
        if self._auth is not None:
            self._auth.close()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Check credentials unless the path is open; add the configured headers."""
        auth, headers = self._auth, self._headers
        if auth is None and not headers:
            return await handler(request)
        if (
            auth is not None
            and request.path not in self._open_paths
            and not await auth.check(request.headers.get("Authorization"))
        ):
            return web.Response(
                status=401,
                body=_UNAUTHORIZED,
                headers={
                    **headers,
                    "WWW-Authenticate": 'Basic realm="status-exporter", charset="UTF-8"',
                    "Content-Type": "text/plain; charset=utf-8",
                },
            )
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(headers)
            raise
        response.headers.update(headers)
        return response


class ConnectionLimits:
    """The open-connection count, the connections still reading a request head, and the rules.

    A connection is tracked only while its request head is incomplete: a head
    usually arrives in one packet, so a request costs a substring test, not a
    timer. One sweeper closes those that have taken longer than the timeout.
    """

    def __init__(self, web_config: WebConfig) -> None:
        self.open = 0
        self.now = time.monotonic()
        self.reading: dict[_GuardedConnection, float] = {}
        self.update(web_config)

    def update(self, web_config: WebConfig) -> None:
        """Apply new limits to connections made from now on."""
        self.max_connections = web_config.max_connections
        self.header_timeout = web_config.header_timeout_seconds

    async def sweep(self) -> None:
        """Close connections whose request head is overdue; runs until cancelled."""
        while True:
            await asyncio.sleep(min(1.0, self.header_timeout / 4))
            self.now = time.monotonic()
            overdue = [
                c for c, since in self.reading.items() if self.now - since >= self.header_timeout
            ]
            for connection in overdue:
                connection.close()


class _GuardedConnection(asyncio.Protocol):
    """Wraps aiohttp's protocol: a deadline for each request head, and the connection cap."""

    def __init__(self, inner: asyncio.Protocol, limits: ConnectionLimits) -> None:
        self._inner = inner
        self._limits = limits
        self._transport: asyncio.Transport | None = None
        self._tail = b""
        self._in_head = True
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but behave as one.
        self._transport = typing.cast(asyncio.Transport, transport)
        limits = self._limits
        limits.open += 1
        if limits.open > limits.max_connections:
            self._refused = True
            # Half-close after the 503 and drain what the client sends: closing with unread
            # input would make the kernel send a reset that can destroy the 503 in flight.
            self._transport.write(_BUSY)
            if self._transport.can_write_eof():
                self._transport.write_eof()
            asyncio.get_running_loop().call_later(_REFUSED_GRACE, self._transport.close)
            return
        limits.reading[self] = limits.now  # nothing sent yet: the head is due
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if not self._in_head:
            # The first byte after a complete head starts the next request.
            self._in_head = True
            self._tail = b""
        if _HEAD_END in data or (self._tail and _HEAD_END in self._tail + data[:3]):
            self._in_head = False
            self._limits.reading.pop(self, None)
        else:
            # Keep the last 3 bytes seen, not of this chunk alone: chunks may be 1 byte long.
            self._tail = (self._tail + data)[-3:]
            self._limits.reading.setdefault(self, self._limits.now)
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return None if self._refused else self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._limits.open -= 1
        self._limits.reading.pop(self, None)
        if not self._refused:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if not self._refused:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if not self._refused:
            self._inner.resume_writing()

    def close(self) -> None:
        """Close the connection (its request head is overdue)."""
        self._limits.reading.pop(self, None)
        if self._transport is not None:
            self._transport.close()


class GuardedTCPSite(web.TCPSite):
    """A TCPSite whose connections go through :class:`_GuardedConnection`."""

    def __init__(
        self, runner: web.BaseRunner, *args: Any, limits: ConnectionLimits, **kwargs: Any
    ) -> None:
        super().__init__(runner, *args, **kwargs)
        self._limits = limits
        self._sweeper: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        """Stop listening and the sweeper."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        await super().stop()

    async def start(self) -> None:
        """Listen, wrapping aiohttp's protocol factory, and start the deadline sweeper."""
        await BaseSite.start(self)
        self._sweeper = asyncio.create_task(self._limits.sweep(), name="header-deadlines")
        server = self._runner.server
        assert server is not None
        limits = self._limits
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _GuardedConnection(server(), limits),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
            ssl_handshake_timeout=limits.header_timeout if self._ssl_context else None,
        )
