"""StatusCollector: the status facts inside any application's own prometheus_client registry."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from exporter.config import Config
from exporter.render.json import status_fields
from exporter.render.prometheus import FactsCollector
from exporter.snapshot import Identity, Snapshot, Sources, take_snapshot

log = logging.getLogger(__name__)


class StatusCollector(Collector):
    """Publishes ``build_info``, ``python_info``, ``platform_info`` and ``module_info``.

    Register it in any registry::

        from prometheus_client import REGISTRY
        from exporter import StatusCollector
        REGISTRY.register(StatusCollector(python_info=False))

    prometheus_client's default ``REGISTRY`` already publishes this process's
    ``python_info`` (its platform collector), hence ``python_info=False``
    there; a registry of your own gets all four families by default.

    The first snapshot is taken when it is created; after that a daemon
    thread takes a new one every ``refresh.interval_seconds``, so ``collect()``
    only reads the latest snapshot and never blocks on the file system. With
    no ``config`` it uses the defaults of ``config.yaml``.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        background: bool = True,
        python_info: bool = True,
        identity: Identity | None = None,
        sources: Sources | None = None,
    ) -> None:
        self._config = config or Config()
        self._identity = identity or Identity.new()
        self._sources = sources or Sources()
        self._python_info = python_info
        self._snapshot = take_snapshot(self._config, self._identity, None, self._sources)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if background:
            self.start()

    @property
    def snapshot(self) -> Snapshot:
        """The latest snapshot."""
        return self._snapshot

    def collect(self) -> Iterable[Metric]:
        """The info families of the latest snapshot; never waits for a refresh."""
        return FactsCollector(self._snapshot, with_python=self._python_info).collect()

    def status_dict(self, server_address: str = "") -> dict[str, Any]:
        """The status JSON's fields as a dict, from the latest snapshot."""
        return status_fields(self._snapshot, server_address)

    def refresh(self) -> None:
        """Take a new snapshot now, in the calling thread."""
        self._snapshot = take_snapshot(self._config, self._identity, self._snapshot, self._sources)

    def start(self) -> None:
        """Start the background refresh thread (done on creation unless ``background=False``)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="status-exporter-refresh", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop the background thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._config.refresh.interval_seconds):
            try:
                self.refresh()
            except Exception:
                log.exception("status refresh failed; keeping the last snapshot")
