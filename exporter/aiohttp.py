"""aiohttp integration: ``setup(app, config)`` adds the status routes to an existing app.

from aiohttp import web
from exporter.aiohttp import setup
app = web.Application()
setup(app)
"""

from exporter.web import setup

__all__ = ["setup"]
