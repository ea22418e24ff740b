"""Everything served for one host, rendered together once per refresh."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from exporter.host import Host
from exporter.refresh import RefreshStats
from exporter.render.html import render_landing, render_status_page
from exporter.render.json import StatusDocument
from exporter.render.prometheus import MetricsPages
from exporter.render.sbom import SbomDocument
from exporter.render.targets import ModuleIndex, render_targets_index
from exporter.snapshot import Snapshot


class LazyPage:
    """A page rendered on its first request and kept: a target's status page. Its HTML for
    300 modules took 1.5 ms (median of 50, /tmp/pagecost.py-style, this 2-core VM), so 50
    targets would pay that fifty times a refresh for pages rarely opened; the JSON is eager."""

    __slots__ = ("_body", "_lock", "_sbom_path", "_snapshot", "_stats", "_title")

    def __init__(self, snapshot: Snapshot, stats: RefreshStats, sbom_path: str, title: str) -> None:
        self._snapshot = snapshot
        self._stats = stats
        self._sbom_path = sbom_path
        self._title = title
        self._body: bytes | None = None
        self._lock = threading.Lock()

    def body(self) -> bytes:
        """The page, rendered once."""
        if self._body is None:
            with self._lock:
                if self._body is None:
                    self._body = render_status_page(
                        self._snapshot,
                        self._stats,
                        metrics_path="/metrics",
                        sbom_path=self._sbom_path,
                        title=self._title,
                    )
        return self._body


@dataclass(frozen=True, slots=True)
class TargetPages:
    """One target's documents: the seed's status JSON, its status page and its SBOM."""

    status: StatusDocument
    status_page: LazyPage
    sbom: SbomDocument


@dataclass(frozen=True, slots=True)
class Pages:
    """The pre-rendered responses of one host."""

    metrics: MetricsPages
    status: StatusDocument
    status_page: bytes
    landing: bytes
    sbom: SbomDocument
    targets: Mapping[str, TargetPages] = field(default_factory=lambda: MappingProxyType({}))
    targets_index: bytes = b'{"targets":[]}'
    module_index_document: ModuleIndex | None = None

    @property
    def module_index(self) -> bytes:
        """The body of ``/api/v1/modules``."""
        doc = self.module_index_document
        return doc.body if doc is not None else b'{"modules":{}}'


def render_pages(
    host: Host | Snapshot,
    stats: RefreshStats,
    previous: Pages | None,
    *,
    metrics_path: str | None = "/metrics",
) -> Pages:
    """Render every response body of ``host``; called by the refresher, off the event loop.

    ``previous`` lets renderings of facts that did not change be reused;
    ``metrics_path`` is where the pages link to the metrics (None: nowhere).
    """
    host = host if isinstance(host, Host) else Host.of(host)
    snapshot = host.own
    targets: dict[str, TargetPages] = {}
    for target in host.targets:
        if target.snapshot is None:
            continue  # never read: its routes answer 503 with the target's error
        earlier = previous.targets.get(target.name) if previous else None
        sbom_path = f"/api/v1/targets/{target.name}/sbom"
        targets[target.name] = TargetPages(
            status=StatusDocument(target.snapshot, earlier.status if earlier else None),
            status_page=LazyPage(
                target.snapshot,
                stats,
                sbom_path,
                f"{target.name} on {snapshot.published_platform.node}",
            ),
            sbom=SbomDocument(target.snapshot, earlier.sbom if earlier else None),
        )
    return Pages(
        metrics=MetricsPages(host, stats, previous.metrics if previous else None),
        status=StatusDocument(snapshot, previous.status if previous else None),
        status_page=render_status_page(snapshot, stats, metrics_path=metrics_path),
        landing=render_landing(snapshot, stats, host),
        sbom=SbomDocument(snapshot, previous.sbom if previous else None),
        targets=MappingProxyType(targets),
        targets_index=render_targets_index(host),
        module_index_document=(
            ModuleIndex(host, previous.module_index_document if previous else None)
            if host.has_targets
            else None
        ),
    )
