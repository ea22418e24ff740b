"""One snapshot, one body, to standard output: ``status-exporter --print metrics|status|sbom``.

For CI pipelines (the SBOM of the environment just built) and for cron jobs
that feed node_exporter's textfile collector. The metrics leave out this
short-lived process's own process and GC metrics: they describe nothing worth
keeping, and node_exporter publishes ``process_*`` names of its own, which a
textfile must not repeat.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from exporter.config import Config
from exporter.host import take_host
from exporter.refresh import RefreshStats
from exporter.render.json import StatusDocument
from exporter.render.prometheus import Fragment, MetricsPages
from exporter.render.sbom import SbomDocument
from exporter.snapshot import Identity

Printable = Literal["metrics", "status", "sbom"]
PRINTABLE: tuple[Printable, ...] = ("metrics", "status", "sbom")


class Withheld(Exception):
    """The body asked for is withheld by the configuration (redact.modules)."""


class UnknownTarget(Exception):
    """``--print.target`` names no target, or one that cannot be read."""


@dataclass(frozen=True, slots=True)
class Printed:
    """A body, and what the caller must say of it: why its findings cannot be trusted
    (a configured advisory database that did not load), and notes (records skipped)."""

    body: bytes
    problem: str | None
    notes: tuple[str, ...]


def render_once(config: Config, what: Printable, target: str | None = None) -> Printed:
    """Take one snapshot of the host with ``config`` and render the body of ``what``.

    The metrics cover every target; the status and the SBOM are the exporter's own
    environment's, or ``target``'s (raise UnknownTarget when no target has that name).
    """
    started = time.perf_counter()
    host = take_host(config, Identity.new())
    snapshot = host.own
    if target is not None and what != "metrics":
        chosen = host.target(target)
        if chosen is None:
            names = ", ".join(t.name for t in host.targets) or "none configured"
            raise UnknownTarget(f"no target named {target!r} (targets: {names})")
        if chosen.snapshot is None:
            raise UnknownTarget(f"target {target!r} cannot be read: {chosen.last_error}")
        snapshot = chosen.snapshot
    db = snapshot.advisories
    notes: tuple[str, ...] = (
        (f"{db.skipped} advisory records skipped as unusable",) if db.skipped else ()
    )
    notes += tuple(f"target {t.name}: {t.last_error}" for t in host.targets if t.last_error)
    if what == "status":
        body = StatusDocument(snapshot).body("", pretty=True)
    elif what == "sbom":
        document = SbomDocument(snapshot)
        if document.withheld:
            raise Withheld("the SBOM is withheld: redact.modules hides the modules from JSON")
        body = document.body + b"\n"
    else:
        stats = RefreshStats(
            refreshes=1,
            last_duration_seconds=time.perf_counter() - started,
            last_success_timestamp=snapshot.taken_at,
        )
        body = MetricsPages(host, stats).body(Fragment(b"", b""), (False, False))
    return Printed(body, snapshot.advisories_problem, notes)
