"""Everything served for one snapshot, rendered together once per refresh."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.refresh import RefreshStats
from exporter.render.html import render_landing, render_status_page
from exporter.render.json import StatusDocument
from exporter.render.prometheus import MetricsPages
from exporter.render.sbom import SbomDocument
from exporter.snapshot import Snapshot


@dataclass(frozen=True, slots=True)
class Pages:
    """The pre-rendered responses of one snapshot."""

    metrics: MetricsPages
    status: StatusDocument
    status_page: bytes
    landing: bytes
    sbom: SbomDocument


def render_pages(
    snapshot: Snapshot,
    stats: RefreshStats,
    previous: Pages | None,
    *,
    metrics_path: str | None = "/metrics",
) -> Pages:
    """Render every response body of ``snapshot``; called by the refresher, off the event loop.

    ``previous`` lets renderings of facts that did not change be reused;
    ``metrics_path`` is where the pages link to the metrics (None: nowhere).
    """
    return Pages(
        metrics=MetricsPages(snapshot, stats, previous.metrics if previous else None),
        status=StatusDocument(snapshot),
        status_page=render_status_page(snapshot, stats, metrics_path=metrics_path),
        landing=render_landing(snapshot, stats),
        sbom=SbomDocument(snapshot, previous.sbom if previous else None),
    )
