"""Baseline: prometheus_client's own start_http_server publishing the same module series.

Usage: python bench/client_server.py --port P --site-packages DIR
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable

from prometheus_client import REGISTRY, start_http_server
from prometheus_client.metrics_core import InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.collectors.installed import scan_installed


class ModulesCollector(Collector):
    """module_info series of a directory, collected on every scrape as a naive exporter would."""

    def __init__(self, modules: dict[str, str]) -> None:
        self._modules = modules

    def collect(self) -> Iterable[Metric]:
        """One module_info family."""
        family = InfoMetricFamily("module", "Installed modules.", labels=("module", "version"))
        for name, version in self._modules.items():
            family.add_metric((name, version), {})
        yield family


def main() -> None:
    """Serve until killed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--site-packages", required=True)
    args = parser.parse_args()
    modules = scan_installed([args.site_packages]).distributions()
    REGISTRY.register(ModulesCollector(modules))
    start_http_server(args.port, addr="127.0.0.1")
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
