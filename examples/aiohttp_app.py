"""An existing aiohttp application that adds the status routes.

python examples/aiohttp_app.py --port 8080
curl localhost:8080/api/v1/status/   and   curl localhost:8080/metrics
"""

from __future__ import annotations

import argparse

from aiohttp import web

from exporter.aiohttp import setup


async def hello(request: web.Request) -> web.Response:
    """The application's own page."""
    return web.Response(text="hello from the application\n")


def main() -> None:
    """Serve on 127.0.0.1 until interrupted."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_get("/", hello)
    setup(app)  # <- the status routes: /api/v1/status/, /api/v1/openapi.json, /metrics
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
