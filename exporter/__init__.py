"""status-exporter: what a Python server runs, as status JSON and Prometheus metrics.

Library use, from inside an application:

- :class:`StatusCollector`: register in a prometheus_client registry;
- :func:`status_dict`: the status as a dict, for any framework's view;
- :func:`exporter.aiohttp.setup`: the status routes on an aiohttp app;
- :class:`Config` and :func:`load_config`: the same settings as ``config.yaml``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Config", "StatusCollector", "__version__", "load_config", "status_dict"]

if TYPE_CHECKING:
    from exporter.collector import StatusCollector
    from exporter.config import Config, load_config
    from exporter.status import status_dict

_LAZY = {
    "StatusCollector": "exporter.collector",
    "status_dict": "exporter.status",
    "Config": "exporter.config",
    "load_config": "exporter.config",
}


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `import exporter` (and the daemon's start-up) stays cheap.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'exporter' has no attribute {name!r}")
