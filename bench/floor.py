"""Baseline: an aiohttp handler that returns constant bytes (the fastest a handler can be).

Usage: python bench/floor.py --port P --body FILE [--content-type T] [--content-encoding E]
       [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from aiohttp import web


def main() -> None:
    """Serve FILE's bytes at every path until killed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body", type=Path, required=True)
    parser.add_argument("--content-type", default="text/plain; version=0.0.4; charset=utf-8")
    parser.add_argument("--content-encoding", default=None)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    body = args.body.read_bytes()
    headers = {"Content-Type": args.content_type}
    if args.content_encoding:
        headers["Content-Encoding"] = args.content_encoding

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, headers=headers)

    app = web.Application()
    app.router.add_get("/metrics", handler)
    app.router.add_get("/healthz", handler)
    if args.uvloop:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
