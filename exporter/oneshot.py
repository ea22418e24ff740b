"""One snapshot, one body, to standard output: ``status-exporter --print metrics|status|sbom``.

For CI pipelines (the SBOM of the environment just built) and for cron jobs
that feed node_exporter's textfile collector. The metrics leave out this
short-lived process's own process and GC metrics: they describe nothing worth
keeping, and node_exporter publishes ``process_*`` names of its own, which a
textfile must not repeat.
"""

from __future__ import annotations

import time
from typing import Literal

from exporter.config import Config
from exporter.refresh import RefreshStats
from exporter.render.json import StatusDocument
from exporter.render.prometheus import Fragment, MetricsPages
from exporter.render.sbom import SbomDocument
from exporter.snapshot import Identity, take_snapshot

Printable = Literal["metrics", "status", "sbom"]
PRINTABLE: tuple[Printable, ...] = ("metrics", "status", "sbom")


class Withheld(Exception):
    """The body asked for is withheld by the configuration (redact.modules)."""


def render_once(config: Config, what: Printable) -> bytes:
    """Take one snapshot with ``config`` and return the body of ``what``."""
    started = time.perf_counter()
    snapshot = take_snapshot(config, Identity.new())
    if what == "status":
        return StatusDocument(snapshot).body("", pretty=True)
    if what == "sbom":
        document = SbomDocument(snapshot)
        if document.withheld:
            raise Withheld("the SBOM is withheld: redact.modules hides the modules from JSON")
        return document.body + b"\n"
    stats = RefreshStats(
        refreshes=1,
        last_duration_seconds=time.perf_counter() - started,
        last_success_timestamp=snapshot.taken_at,
    )
    return MetricsPages(snapshot, stats).body(Fragment(b"", b""), (False, False))
