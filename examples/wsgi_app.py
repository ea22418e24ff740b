"""A WSGI application (any framework) with prometheus_client's /metrics and a status view.

Run it with the project's venv (.venv, made by `make test`), from the repository root:

    .venv/bin/python examples/wsgi_app.py --port 8080
    curl localhost:8080/metrics   and   curl localhost:8080/status
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, make_wsgi_app

from exporter import StatusCollector

status = StatusCollector(python_info=False)  # REGISTRY already has python_info
REGISTRY.register(status)  # the facts, refreshed in a background thread, on /metrics
metrics_app = make_wsgi_app()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Route /metrics to prometheus_client, /status to the status JSON."""
    if environ["PATH_INFO"] == "/metrics":
        return metrics_app(environ, start_response)
    if environ["PATH_INFO"] == "/status":
        body = json.dumps(status.status_dict(environ.get("HTTP_HOST", ""))).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


class QuietHandler(WSGIRequestHandler):
    """No access log on stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing."""


def main() -> None:
    """Serve on 127.0.0.1 until interrupted."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    with make_server("127.0.0.1", args.port, app, handler_class=QuietHandler) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
