"""The daemon itself, with one more route: /constant, serving a file's bytes as bench/floor.py does.

Usage: python bench/constant_route.py --body FILE [--plain-site] [--no-middlewares]
       [the daemon's arguments]

Against the daemon's own /metrics, it isolates the handler; against floor.py, what the
daemon's process costs a request without its handler: its site (GuardedTCPSite), its
middlewares, its heap, its threads. Nothing else differs: this is ``exporter.cli.main``.
``--plain-site`` listens with aiohttp's own TCPSite instead of GuardedTCPSite, and
``--no-middlewares`` drops the application's middlewares (the 404 listing, the guard), so
that each layer's cost can be told apart.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from aiohttp import web

import exporter.cli as cli
from exporter.render.prometheus import CONTENT_TYPE_TEXT


class _PlainSite(web.TCPSite):
    """aiohttp's TCPSite, taking (and ignoring) GuardedTCPSite's ``limits``."""

    def __init__(self, runner: web.BaseRunner, *args: Any, limits: Any, **kwargs: Any) -> None:
        super().__init__(runner, *args, **kwargs)


def _flag(args: list[str], name: str) -> bool:
    if name in args:
        args.remove(name)
        return True
    return False


def main() -> int:
    """Run the daemon with /constant added to its application."""
    args = sys.argv[1:]
    at = args.index("--body")
    body = Path(args[at + 1]).read_bytes()
    del args[at : at + 2]
    plain_site, no_middlewares = _flag(args, "--plain-site"), _flag(args, "--no-middlewares")
    headers = {"Content-Type": CONTENT_TYPE_TEXT}
    create_app = cli.create_app

    async def constant(request: web.Request) -> web.Response:
        return web.Response(body=body, headers=headers)

    def with_constant(*a: Any, **k: Any) -> web.Application:
        app = create_app(*a, **k)
        app.router.add_get("/constant", constant)
        if no_middlewares:
            app.middlewares.clear()  # not frozen until the runner starts
        return app

    cli.create_app = with_constant  # type: ignore[assignment]
    if plain_site:
        cli.GuardedTCPSite = _PlainSite  # type: ignore[assignment,misc]
    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main())
