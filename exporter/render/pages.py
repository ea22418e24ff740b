"""Everything served for one host, rendered together once per refresh."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
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

_NO_TARGETS = b'{"targets":[]}'


class LazyPage:
    """A body rendered on its first request and kept: the status pages, the landing page and
    ``/api/v1/targets``. A target's status page of 300 modules took 1.5 ms (median of 50,
    /tmp/pagecost.py-style, this 2-core VM), the landing page of 50 targets 0.55 ms and the
    targets index 0.31 ms (bench/targets.py's environments): paid on every refresh for pages
    rarely opened, they are paid here at most once per refresh, by the first request. The
    status and SBOM JSON are eager."""

    __slots__ = ("_body", "_lock", "_render")

    def __init__(self, render: Callable[[], bytes]) -> None:
        self._render: Callable[[], bytes] | None = render
        self._body: bytes | None = None
        self._lock = threading.Lock()

    def body(self) -> bytes:
        """The body, rendered once."""
        if self._body is None:
            with self._lock:
                if self._body is None:
                    assert self._render is not None
                    self._body = self._render()
                    self._render = None  # what it was rendered from may be freed
        return self._body


@dataclass(frozen=True, slots=True)
class TargetPages:
    """One target's documents: the seed's status JSON, its status page and its SBOM."""

    status: StatusDocument
    status_page: LazyPage
    sbom: SbomDocument


@dataclass(frozen=True, slots=True)
class Pages:
    """The pre-rendered responses of one host (the HTML and the targets index on first use)."""

    metrics: MetricsPages
    status: StatusDocument
    status_page_document: LazyPage
    landing_document: LazyPage
    sbom: SbomDocument
    targets: Mapping[str, TargetPages] = field(default_factory=lambda: MappingProxyType({}))
    targets_index_document: LazyPage = field(default_factory=lambda: LazyPage(lambda: _NO_TARGETS))
    module_index_document: ModuleIndex | None = None

    @property
    def status_page(self) -> bytes:
        """The own environment's status page (HTML)."""
        return self.status_page_document.body()

    @property
    def landing(self) -> bytes:
        """The landing page (HTML)."""
        return self.landing_document.body()

    @property
    def targets_index(self) -> bytes:
        """The body of ``/api/v1/targets``."""
        return self.targets_index_document.body()

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
    node = snapshot.published_platform.node if host.targets else ""
    for target in host.targets:
        if target.snapshot is None:
            continue  # never read: its routes answer 503 with the target's error
        earlier = previous.targets.get(target.name) if previous else None
        sbom_path = f"/api/v1/targets/{target.name}/sbom"
        targets[target.name] = TargetPages(
            status=StatusDocument(target.snapshot, earlier.status if earlier else None),
            status_page=LazyPage(
                functools.partial(
                    render_status_page,
                    target.snapshot,
                    stats,
                    metrics_path="/metrics",
                    sbom_path=sbom_path,
                    title=f"{target.name} on {node}",
                )
            ),
            sbom=SbomDocument(target.snapshot, earlier.sbom if earlier else None),
        )
    return Pages(
        metrics=MetricsPages(host, stats, previous.metrics if previous else None),
        status=StatusDocument(snapshot, previous.status if previous else None),
        status_page_document=LazyPage(
            functools.partial(render_status_page, snapshot, stats, metrics_path=metrics_path)
        ),
        landing_document=LazyPage(functools.partial(render_landing, snapshot, stats, host)),
        sbom=SbomDocument(snapshot, previous.sbom if previous else None),
        targets=MappingProxyType(targets),
        targets_index_document=LazyPage(functools.partial(render_targets_index, host)),
        module_index_document=(
            ModuleIndex(host, previous.module_index_document if previous else None)
            if host.has_targets
            else None
        ),
    )
