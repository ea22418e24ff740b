"""An existing aiohttp application that adds the status routes.

Run it with the project's venv (.venv, made by `make test`), from the repository root:

    .venv/bin/python examples/aiohttp_app.py --port 8080
    curl localhost:8080/api/v1/status/   and   curl localhost:8080/metrics

It logs the address it listens on (``--port 0`` takes any free port).
"""

from __future__ import annotations

import argparse
import logging
import socket

from aiohttp import web

from exporter.aiohttp import setup

log = logging.getLogger("aiohttp_app")


async def hello(request: web.Request) -> web.Response:
    """The application's own page."""
    return web.Response(text="hello from the application\n")


def main() -> None:
    """Serve on 127.0.0.1 until interrupted, logging where."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app = web.Application()
    app.router.add_get("/", hello)
    setup(app)  # <- the status routes: /api/v1/status/, /api/v1/openapi.json, /metrics
    # Bound before it is logged, so the address is the real one (a free port with --port 0).
    sock = socket.create_server(("127.0.0.1", args.port))
    host, port = sock.getsockname()[:2]
    log.info("listening on http://%s:%d/", host, port)
    web.run_app(app, sock=sock, print=None)


if __name__ == "__main__":
    main()
